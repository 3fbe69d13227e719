"""Rasterise one concept in one style, or one word on one sign style, to a PIL RGBA image.

Only pack building calls this (on a machine with the assets and fonts); training reads the pack.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from zaoxiang.training.data.assets import AssetPaths
from zaoxiang.training.data.concepts import Concept

SPRITE_SIZE = 128
SIGN_W, SIGN_H = 192, 96
_MARGIN = 4  # px of transparent border, so bilinear resizing never clips the edge


def _fit(image: Image.Image) -> Image.Image | None:
    """Crop to the alpha bounding box and centre in a SPRITE_SIZE² canvas (same scale in every style)."""
    image = image.convert("RGBA")
    box = image.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    if box is None:
        return None
    image = image.crop(box)
    inner = SPRITE_SIZE - 2 * _MARGIN
    scale = inner / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.LANCZOS)
    out = Image.new("RGBA", (SPRITE_SIZE, SPRITE_SIZE), (0, 0, 0, 0))
    out.paste(image, ((SPRITE_SIZE - size[0]) // 2, (SPRITE_SIZE - size[1]) // 2))
    return out


def _file_stems(concept: Concept) -> list[str]:
    bare = concept.id
    with_vs = "-".join(f"{ord(c):x}" for c in concept.char)
    return list(dict.fromkeys([bare, with_vs, f"{bare}-fe0f"]))


def render_fluent_3d(concept: Concept, paths: AssetPaths) -> Image.Image | None:
    for stem in _file_stems(concept):
        path = paths.fluent_3d / f"{stem}.webp"
        if path.exists():
            return _fit(Image.open(path))
    return None


def render_flat(concept: Concept, paths: AssetPaths) -> Image.Image | None:
    import resvg_py  # only pack building needs the SVG rasteriser

    for stem in _file_stems(concept):
        path = paths.twemoji_svg / f"{stem}.svg"
        if path.exists():
            png = resvg_py.svg_to_bytes(svg_path=str(path), width=256, height=256)
            return _fit(Image.open(io.BytesIO(bytes(png))))
    return None


@lru_cache(maxsize=4)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def render_noto(concept: Concept, paths: AssetPaths) -> Image.Image | None:
    # Noto Color Emoji is a bitmap font whose only strike is 109 px.
    font = _font(paths.noto_emoji_font, 109)
    text = concept.char if len(concept.char) > 1 else concept.char + "\ufe0f"
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), text, font=font, embedded_color=True)
    return _fit(canvas)


STYLE_RENDERERS = {"3d": render_fluent_3d, "emoji": render_noto, "flat": render_flat}


def _word_colour(word: str, palette: tuple[tuple[int, int, int], ...]) -> tuple[int, int, int]:
    # Stable across processes (unlike hash()), so a rebuilt pack is identical.
    return palette[hashlib.md5(word.encode()).digest()[0] % len(palette)]


def _fit_font(draw: ImageDraw.ImageDraw, text: str, font_path: Path, max_w: int, max_h: int) -> ImageFont.FreeTypeFont:
    size = max_h
    while size > 8:
        font = ImageFont.truetype(str(font_path), size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= max_w and bottom - top <= max_h:
            return font
        size -= 2
    return ImageFont.truetype(str(font_path), 8)


def render_sign(word: str, style: str, paths: AssetPaths) -> Image.Image:
    """A SIGN_W×SIGN_H RGBA sign with ``word`` on it. Styles: neon, wood, paper, chalk."""
    board = Image.new("RGBA", (SIGN_W, SIGN_H), (0, 0, 0, 0))
    draw = ImageDraw.Draw(board)
    box = (4, 4, SIGN_W - 5, SIGN_H - 5)
    if style == "neon":
        draw.rounded_rectangle(box, radius=12, fill=(25, 18, 40, 255), outline=(60, 50, 80, 255), width=3)
        ink = _word_colour(word, ((255, 60, 170), (60, 230, 255), (255, 230, 60), (120, 255, 120)))
    elif style == "wood":
        draw.rounded_rectangle(box, radius=6, fill=(160, 110, 60, 255), outline=(100, 65, 30, 255), width=4)
        for y in range(20, SIGN_H - 8, 22):  # plank seams
            draw.line((8, y, SIGN_W - 9, y), fill=(135, 90, 48, 255), width=2)
        ink = (60, 35, 15)
    elif style == "paper":
        draw.rectangle(box, fill=(250, 246, 225, 255), outline=(215, 205, 170, 255), width=2)
        draw.polygon([(SIGN_W - 24, SIGN_H - 5), (SIGN_W - 5, SIGN_H - 24), (SIGN_W - 5, SIGN_H - 5)], fill=(0, 0, 0, 0))
        ink = (25, 25, 35)
    elif style == "chalk":
        draw.rectangle(box, fill=(110, 70, 35, 255))
        draw.rectangle((10, 10, SIGN_W - 11, SIGN_H - 11), fill=(35, 70, 50, 255))
        ink = (240, 240, 235)
    else:
        raise ValueError(f"unknown sign style {style!r}")

    font = _fit_font(draw, word, paths.cjk_bold_font, SIGN_W - 40, SIGN_H - 40)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    xy = ((SIGN_W - (right - left)) / 2 - left, (SIGN_H - (bottom - top)) / 2 - top)
    if style == "neon":
        glow = Image.new("RGBA", board.size, (0, 0, 0, 0))
        ImageDraw.Draw(glow).text(xy, word, font=font, fill=ink + (255,))
        glow = glow.filter(ImageFilter.GaussianBlur(4))
        board = Image.alpha_composite(board, glow)
        draw = ImageDraw.Draw(board)
        ink = tuple(min(255, c + 90) for c in ink)
    draw.text(xy, word, font=font, fill=ink + (255,))
    return board
