"""The sprite pack: every sprite and sign the dataset draws, in ONE zip file small enough to travel.

Layout of the zip (entries stored, not deflated: WebP is already compressed):
    catalog.json          {"format", "sprite_size", "sign_size", "concepts", "sprites", "signs", "common_vocab"}
    sprites/000123.webp   row 123 of SpritePack.sprites, lossless RGBA
    signs/000045.webp     row 45 of SpritePack.signs, lossless RGBA
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zaoxiang.errors import ZaoxiangError
from zaoxiang.training.data.assets import find_assets
from zaoxiang.training.data.concepts import Concept, load_catalogue
from zaoxiang.training.data.lexicon import SIGN_STYLES, SIGN_WORDS_EN, SIGN_WORDS_ZH, STYLES
from zaoxiang.training.data.sprites import SIGN_H, SIGN_W, SPRITE_SIZE, STYLE_RENDERERS, render_sign
from zaoxiang.training.data.vocab import COMMON_VOCAB

log = logging.getLogger(__name__)

PACK_FORMAT = 1


class PackError(ZaoxiangError):
    """The sprite pack file is missing, corrupt, or from another format version."""

    code = "bad_sprite_pack"


@dataclass(frozen=True)
class SignKey:
    text: str
    lang: str  # "en" | "zh"
    style: str  # a SIGN_STYLES id


@dataclass(eq=False)
class SpritePack:
    """Decoded sprites on one device plus the maps from (concept, style) / sign to tensor row."""

    concepts: tuple[Concept, ...]
    sprite_keys: tuple[tuple[str, str], ...]  # row -> (concept_id, style)
    sprites: torch.Tensor  # (N, 4, S, S) uint8 RGBA
    sign_keys: tuple[SignKey, ...]  # row -> sign
    signs: torch.Tensor  # (M, 4, SIGN_H, SIGN_W) uint8 RGBA
    common_vocab: tuple[str, ...]  # the COMMON_VOCAB ids present in this pack
    sprite_index: dict[tuple[str, str], int] = field(init=False)
    sign_index: dict[SignKey, int] = field(init=False)
    concept_by_id: dict[str, Concept] = field(init=False)

    def __post_init__(self) -> None:
        if self.sprites.shape[0] != len(self.sprite_keys) or self.signs.shape[0] != len(self.sign_keys):
            raise PackError("sprite pack: tensor rows do not match the catalogue")
        self.sprite_index = {key: row for row, key in enumerate(self.sprite_keys)}
        self.sign_index = {key: row for row, key in enumerate(self.sign_keys)}
        self.concept_by_id = {c.id: c for c in self.concepts}

    @property
    def device(self) -> torch.device:
        return self.sprites.device

    def styles_for(self, concept_id: str) -> tuple[str, ...]:
        return tuple(s.id for s in STYLES if (concept_id, s.id) in self.sprite_index)

    def catalog_only(self) -> SpritePack:
        """This pack's catalogue with no pixels (zero-channel tensors, rows kept): what sampling and
        captioning read, cheap to hand to another process."""
        empty = torch.empty((self.sprites.shape[0], 0, 0, 0), dtype=torch.uint8)  # (N, 0, 0, 0)
        no_signs = torch.empty((self.signs.shape[0], 0, 0, 0), dtype=torch.uint8)  # (M, 0, 0, 0)
        return SpritePack(self.concepts, self.sprite_keys, empty, self.sign_keys, no_signs, self.common_vocab)

    def to(self, device: str | torch.device) -> SpritePack:
        return SpritePack(
            self.concepts, self.sprite_keys, self.sprites.to(device), self.sign_keys, self.signs.to(device),
            self.common_vocab,
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> SpritePack:
        path = Path(path)
        if not path.is_file():
            raise PackError(f"sprite pack not found: {path} (build it with `zaoxiang data pack`)", field="pack")
        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read("catalog.json"))
                if meta.get("format") != PACK_FORMAT:
                    raise PackError(f"sprite pack {path} has format {meta.get('format')}, expected {PACK_FORMAT}")
                sprites = _decode_all(zf, "sprites", len(meta["sprites"]), (SPRITE_SIZE, SPRITE_SIZE))
                signs = _decode_all(zf, "signs", len(meta["signs"]), (SIGN_H, SIGN_W))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
            raise PackError(f"sprite pack {path} is corrupt: {exc}", field="pack") from exc
        return cls(
            concepts=tuple(Concept.from_dict(d) for d in meta["concepts"]),
            sprite_keys=tuple((cid, style) for cid, style in meta["sprites"]),
            sprites=torch.from_numpy(sprites).to(device),
            sign_keys=tuple(SignKey(*k) for k in meta["signs"]),
            signs=torch.from_numpy(signs).to(device),
            common_vocab=tuple(meta["common_vocab"]),
        )


def _decode_all(zf: zipfile.ZipFile, folder: str, n: int, hw: tuple[int, int]) -> np.ndarray:
    out = np.zeros((n, 4, *hw), dtype=np.uint8)  # (N, 4, H, W)
    for row in range(n):
        with Image.open(io.BytesIO(zf.read(f"{folder}/{row:06d}.webp"))) as im:
            arr = np.asarray(im.convert("RGBA"))  # (H, W, 4)
        if arr.shape[:2] != hw:
            raise PackError(f"sprite pack entry {folder}/{row} is {arr.shape[:2]}, expected {hw}")
        out[row] = arr.transpose(2, 0, 1)
    return out


def _encode(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "WEBP", lossless=True, quality=100, method=4)
    return buf.getvalue()


def build_pack(
    assets_dir: str | Path | None,
    out_path: str | Path,
    *,
    concept_ids: Iterable[str] | None = None,
    sign_words: Iterable[str] | None = None,
) -> dict:
    """Render every concept in every style it exists in, and every sign, into one zip.

    ``concept_ids`` / ``sign_words`` restrict the pack (tests build small ones). Returns a summary
    (counts and file size) for the CLI to print.
    """
    paths = find_assets(assets_dir)
    concepts = load_catalogue(paths)
    if concept_ids is not None:
        wanted = set(concept_ids)
        concepts = tuple(c for c in concepts if c.id in wanted)
    words_en = [w for w in SIGN_WORDS_EN if sign_words is None or w in set(sign_words)]
    words_zh = [w for w in SIGN_WORDS_ZH if sign_words is None or w in set(sign_words)]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")

    sprite_keys: list[tuple[str, str]] = []
    sign_keys: list[tuple[str, str, str]] = []
    kept: list[Concept] = []
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for concept in concepts:
            rendered = False
            for style in STYLES:
                image = STYLE_RENDERERS[style.id](concept, paths)
                if image is None:
                    continue
                zf.writestr(f"sprites/{len(sprite_keys):06d}.webp", _encode(image))
                sprite_keys.append((concept.id, style.id))
                rendered = True
            if rendered:
                kept.append(concept)
        for lang, words in (("en", words_en), ("zh", words_zh)):
            for word in words:
                for sign_style in SIGN_STYLES:
                    zf.writestr(f"signs/{len(sign_keys):06d}.webp", _encode(render_sign(word, sign_style.id, paths)))
                    sign_keys.append((word, lang, sign_style.id))
        kept_ids = {c.id for c in kept}
        meta = {
            "format": PACK_FORMAT,
            "sprite_size": SPRITE_SIZE,
            "sign_size": [SIGN_H, SIGN_W],
            "concepts": [c.to_dict() for c in kept],
            "sprites": sprite_keys,
            "signs": sign_keys,
            "common_vocab": [cid for cid in COMMON_VOCAB if cid in kept_ids],
        }
        zf.writestr("catalog.json", json.dumps(meta, ensure_ascii=False))
    tmp.replace(out_path)
    summary = {
        "path": str(out_path),
        "concepts": len(kept),
        "sprites": len(sprite_keys),
        "signs": len(sign_keys),
        "common_vocab": len(meta["common_vocab"]),
        "size_mb": round(out_path.stat().st_size / 1e6, 2),
    }
    log.info("built sprite pack %s", summary)
    return summary
