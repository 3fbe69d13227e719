"""Contact sheets render Chinese captions with the shipped font, on machines without CJK fonts.

Coverage is read with Pillow alone (no fontTools at test time): a character is in the font when it
does not render as the font's missing-glyph box, the bitmap every absent character shares.
"""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageFont

from zaoxiang.training.data import COMMON_VOCAB, SceneSampler, SignKey, SpritePack, caption, heldout_eval_set
from zaoxiang.training.data.captions import ZH_NUMBERS
from zaoxiang.training.data.concepts import Concept
from zaoxiang.training.data.lexicon import (
    BACKGROUND_SCENES, COLOURS, POSITIONS, SIGN_STYLES, SIGN_WORDS_EN, SIGN_WORDS_ZH, SIZES, STYLES,
)
from zaoxiang.training.eval import harness

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "zaoxiang" / "training" / "eval" / "fonts" / "NotoSansCJKsc-Regular-captions.otf"
ABSENT = ("\u0e01", "\u05d0")  # Thai ko kai, Hebrew alef: in no caption, so not in the subset
SIZE = 24


@pytest.fixture(scope="module")
def font() -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(SHIPPED), SIZE)


def _mask(font, ch: str) -> bytes:
    m = font.getmask(ch)
    return bytes(m.size) + bytes(m)


@pytest.fixture(scope="module")
def missing(font):
    """Characters of ``text`` the font draws as its missing-glyph box."""
    box = _mask(font, ABSENT[0])
    assert box == _mask(font, ABSENT[1]) and any(_mask(font, ABSENT[0])[8:]), "the missing-glyph box must be drawn"

    def check(text: str) -> list[str]:
        return sorted({ch for ch in text if _mask(font, ch) == box})

    return check


def _catalogue_pack(concepts: tuple[Concept, ...], sprite_keys, sign_keys, common_vocab) -> SpritePack:
    # 1×1 placeholder sprites: captions and the eval set only read which sprites and signs exist.
    sprite_keys = tuple(tuple(k) for k in sprite_keys)  # JSON gives lists
    return SpritePack(concepts=concepts, sprite_keys=sprite_keys,
                      sprites=torch.zeros((len(sprite_keys), 4, 1, 1), dtype=torch.uint8),
                      sign_keys=tuple(sign_keys), signs=torch.zeros((len(sign_keys), 4, 1, 1), dtype=torch.uint8),
                      common_vocab=tuple(common_vocab))


@pytest.fixture(scope="module")
def pack() -> SpritePack:
    """The real sprite pack's catalogue where it is built; else the catalogue as the pack builder
    would keep it (concepts with a Fluent 3D or Twemoji file), each drawable in every style; else skip."""
    path = REPO / "assets" / "sprite_pack.zip"
    if path.is_file():
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("catalog.json"))
        return _catalogue_pack(tuple(Concept.from_dict(d) for d in meta["concepts"]), meta["sprites"],
                               [SignKey(*k) for k in meta["signs"]], meta["common_vocab"])
    from zaoxiang.training.data.assets import AssetsNotFound, find_assets
    from zaoxiang.training.data.concepts import load_catalogue

    try:
        paths = find_assets()
    except AssetsNotFound as exc:
        pytest.skip(f"neither a sprite pack nor the assets are installed: {exc.message}")

    def drawable(c: Concept) -> bool:
        stems = {c.id, "-".join(f"{ord(ch):x}" for ch in c.char), f"{c.id}-fe0f"}
        return any((paths.fluent_3d / f"{s}.webp").exists() or (paths.twemoji_svg / f"{s}.svg").exists() for s in stems)

    concepts = tuple(c for c in load_catalogue(paths) if drawable(c))
    ids = {c.id for c in concepts}
    signs = [SignKey(w, lang, s.id) for lang, words in (("en", SIGN_WORDS_EN), ("zh", SIGN_WORDS_ZH))
             for w in words for s in SIGN_STYLES]
    return _catalogue_pack(concepts, [(c.id, s.id) for c in concepts for s in STYLES], signs,
                           [cid for cid in COMMON_VOCAB if cid in ids])


def test_harness_picks_the_shipped_font_first():
    assert SHIPPED.is_file() and SHIPPED.stat().st_size < 1_000_000
    assert Path(harness.caption_font(13).path) == SHIPPED


def test_every_heldout_caption_character_is_in_the_font(pack, missing):
    items = heldout_eval_set(pack, 10**6)
    assert len(items) > 300 and {i.category for i in items} == {"identity", "position", "count", "background", "sign"}
    for lang in ("en", "zh"):
        text = "".join(i.caption_en if lang == "en" else i.caption_zh for i in items)
        assert missing(text) == [], f"{lang} held-out captions"


def test_every_word_a_training_caption_is_built_from_is_in_the_font(pack, missing):
    words = [w for c in pack.concepts for w in (c.name_en, c.name_zh, c.classifier_zh, *c.synonyms_en, *c.synonyms_zh)]
    assert missing("".join(words)) == []
    sampler, rng = SceneSampler(pack, "train", seed=0), random.Random(0)
    captions = [caption(sampler.sample(), lang, rng, pack) for _ in range(400) for lang in ("en", "zh")]
    assert missing("".join(captions)) == []


def test_word_lists_and_ascii_are_in_the_font(missing):
    # Needs no assets: the fixed word lists every Chinese caption is assembled from.
    named = [*STYLES, *COLOURS, *BACKGROUND_SCENES, *SIZES, *POSITIONS, *SIGN_STYLES]
    text = "".join(n.zh + n.en for n in named) + "".join(SIGN_WORDS_ZH + SIGN_WORDS_EN)
    text += "".join(ZH_NUMBERS.values()) + "个只辆座株颗条匹头朵棵艘架枚杯串件本支"  # numbers, measure words
    text += "背景从到的渐变是有写着上一块张图，：“”\""  # the caption templates' own words and punctuation
    text += "".join(chr(c) for c in range(0x20, 0x7F))
    assert missing(text) == []
    assert missing("".join(ABSENT)) == sorted(ABSENT)  # the check tells absent characters apart


def _caption_strip(tmp_path: Path, caption_text: str) -> bytes:
    """The caption area of a one-tile contact sheet, as raw pixels."""
    path = tmp_path / f"sheet-{ord(caption_text[0]):x}.png"
    harness.contact_sheet([(Image.new("RGB", (32, 32), "gray"), caption_text, True)], path, cols=1)
    with Image.open(path) as sheet:
        return sheet.crop((0, 192, sheet.width, sheet.height)).convert("L").tobytes()


def test_contact_sheet_draws_chinese_glyphs_not_boxes(tmp_path):
    cat, dog, absent_a, absent_b = (_caption_strip(tmp_path, t) for t in ("猫", "狗", *ABSENT))
    assert absent_a == absent_b  # every absent character draws the same box...
    assert cat != dog  # ...so two Chinese characters drawn differently are real glyphs
    assert cat != absent_a and dog != absent_a


def test_contact_sheet_without_any_caption_font_still_draws(tmp_path, monkeypatch):
    # No shipped font, no system font: Pillow's default font, Chinese as boxes, no crash. This is
    # the failure the shipped font exists to prevent, so the glyph test above must see it.
    broken = tmp_path / "broken.otf"
    broken.write_bytes(b"not a font")
    monkeypatch.setattr(harness, "CAPTION_FONTS", ((tmp_path / "absent.otf", 0), (broken, 0)))
    assert not isinstance(getattr(harness.caption_font(13), "path", None), str)  # Pillow's built-in font
    assert _caption_strip(tmp_path, "猫") == _caption_strip(tmp_path, "狗")
