"""Regenerate the caption font the evaluation contact sheets draw with (deterministic).

    .venv/bin/python scripts/make_caption_font.py [--pack assets/sprite_pack.zip] [--source NotoSansCJK-Regular.ttc]

The GPU machines that run evaluations have no CJK fonts, so the harness ships its own: the Simplified
Chinese face of Noto Sans CJK, cut down to the characters an evaluation caption can hold. Those are

  * every character of every held-out caption, English and Chinese (``heldout_eval_set`` of the pack);
  * every concept's English and Chinese name, caption synonyms and measure word (any training caption);
  * every string literal of the caption builder and its word lists (templates, colours, positions,
    sizes, styles, sign styles, sign words, numbers);
  * printable ASCII and the common full-width punctuation.

Needs fontTools (the generator only: the harness reads the result with Pillow) and the sprite pack
(``zaoxiang data pack``). Same inputs give the same bytes: code points are sorted and the font's
timestamps are kept from the source.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import zipfile
from pathlib import Path

import torch
from fontTools import subset
from fontTools.ttLib import TTCollection

from zaoxiang.training.data import captions, lexicon
from zaoxiang.training.data.concepts import Concept
from zaoxiang.training.data.evalset import heldout_eval_set
from zaoxiang.training.data.pack import SignKey, SpritePack

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
SOURCE_FAMILY = "Noto Sans CJK SC"  # the face of the collection to keep
OUT = REPO / "src" / "zaoxiang" / "training" / "eval" / "fonts" / "NotoSansCJKsc-Regular-captions.otf"
# Punctuation a Chinese caption may carry beyond what the templates use today.
EXTRA = "，。、：；！？“”‘’（）《》【】…—·～"


def catalogue_pack(pack_path: Path) -> SpritePack:
    """The pack's catalogue with 1×1 placeholder sprites: enough for ``heldout_eval_set`` (which only
    reads which (concept, style) and sign exist), without decoding 28 MB of WebP."""
    if not pack_path.is_file():
        raise SystemExit(f"sprite pack not found: {pack_path} (build it with `zaoxiang data pack`)")
    with zipfile.ZipFile(pack_path) as zf:
        meta = json.loads(zf.read("catalog.json"))
    sprite_keys = tuple((cid, style) for cid, style in meta["sprites"])
    sign_keys = tuple(SignKey(*k) for k in meta["signs"])
    return SpritePack(
        concepts=tuple(Concept.from_dict(d) for d in meta["concepts"]),
        sprite_keys=sprite_keys, sprites=torch.zeros((len(sprite_keys), 4, 1, 1), dtype=torch.uint8),
        sign_keys=sign_keys, signs=torch.zeros((len(sign_keys), 4, 1, 1), dtype=torch.uint8),
        common_vocab=tuple(meta["common_vocab"]),
    )


def module_literals(module) -> str:
    """Every string constant in a module's source, f-string pieces included: the caption templates."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    return "".join(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def heldout_characters(pack: SpritePack) -> set[str]:
    return {ch for item in heldout_eval_set(pack, 10**6) for ch in item.caption_en + item.caption_zh}


def caption_characters(pack: SpritePack) -> set[str]:
    """Held-out captions plus everything a training caption is assembled from."""
    text = [chr(c) for c in range(0x20, 0x7F)] + [EXTRA]
    for c in pack.concepts:
        text += [c.name_en, c.name_zh, c.classifier_zh, *c.synonyms_en, *c.synonyms_zh]
    text += [module_literals(m) for m in (captions, lexicon)]
    return heldout_characters(pack) | {ch for ch in "".join(text) if ch.isprintable()}


def source_face(path: Path):
    collection = TTCollection(str(path), recalcTimestamp=False)
    for font in collection.fonts:
        if font["name"].getDebugName(1) == SOURCE_FAMILY:
            return font
    raise SystemExit(f"{path} has no {SOURCE_FAMILY!r} face")


def make_font(chars: set[str], source: Path, out: Path) -> list[str]:
    """Subset ``source``'s SC face to ``chars``; returns the characters the face lacks."""
    font = source_face(source)
    cmap = font.getBestCmap()
    missing = sorted(ch for ch in chars if ord(ch) not in cmap)
    options = subset.Options()
    options.name_IDs = ["*"]  # keep the copyright (0), trademark (7) and licence (13, 14) records
    options.name_languages = ["*"]
    options.notdef_outline = True  # a character the font lacks draws as a visible box, not nothing
    options.recalc_timestamp = False
    # Captions are horizontal Simplified Chinese: the other languages' forms (locl) and vertical
    # forms (vert, vrt2, vhal, vpal) would pull in ~1,000 glyphs no caption draws.
    options.layout_features = ["ccmp", "liga", "kern", "halt", "palt"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(ord(ch) for ch in chars if ord(ch) in cmap))
    subsetter.subset(font)
    out.parent.mkdir(parents=True, exist_ok=True)
    font.save(str(out))
    return missing


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pack", type=Path, default=REPO / "assets" / "sprite_pack.zip")
    p.add_argument("--source", type=Path, default=SOURCE)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    pack = catalogue_pack(args.pack)
    chars = caption_characters(pack)
    missing = make_font(chars, args.source, args.out)
    if lost := set(missing) & heldout_characters(pack):
        raise SystemExit(f"held-out captions use characters {SOURCE_FAMILY} lacks: {sorted(lost)}")
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()[:16]
    kib = args.out.stat().st_size / 1024
    print(f"{args.out}: {len(chars) - len(missing)} characters, {kib:.0f} KiB, sha256 {digest}")
    if missing:
        print(f"not in {SOURCE_FAMILY} (drawn as the font's box): {' '.join(f'U+{ord(c):04X}' for c in missing)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
