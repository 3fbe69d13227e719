"""Shared inputs for the edit tests: a seeded noise image and masks, as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def noise_image(w: int = 64, h: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def box_mask(w: int, h: int, box: tuple[int, int, int, int]) -> Image.Image:
    """White (repaint) inside box = (left, top, right, bottom)."""
    m = np.zeros((h, w), np.uint8)
    left, top, right, bottom = box
    m[top:bottom, left:right] = 255
    return Image.fromarray(m, mode="L")
