"""Invisible provenance watermark: DWT-DCT-SVD from the ``invisible-watermark`` package.

Payload: ``b"zaoxiang"`` (magic) + a 4-byte short id = 96 bits, repeated over every 8×8-pixel
block of the luma channel. :func:`read_watermark` returns the payload when the magic reads back
exactly, else ``None`` (a 64-bit exact match makes false positives on unmarked images negligible).

Why not the package's ``WatermarkEncoder(...).encode(img, "dwtDct")`` as-is (measured on flat
emoji-on-colour images, the built-in model's typical output; numbers in docs/safety.md):
  * its ``dwtDct`` mode picks the largest raw LL coefficient per block, which on flat colour
    regions is arbitrary, and read back 42-60 % of bits after JPEG q90;
  * it embeds in chroma (U), which JPEG subsamples 2×, and it truncates floats into uint8 and
    swaps the H/V detail bands on reconstruction.
So we reuse the package's per-block DWT-DCT-SVD maths (``EmbedDwtDctSvd.encode_frame`` /
``decode_frame``) and drive it ourselves: float YUV, luma only (JPEG keeps luma at full
resolution and 8×8 blocks line up with ours), correct band order, rounding, and a small range
margin so shifts on pure white/black/saturated colours are not clipped away.

Images under 256×256 pixels of area (the package's own minimum, ~1,000 blocks for 96 bits) are
not marked: :func:`embed_watermark` raises :class:`WatermarkError`, and the gate returns such
images unmarked and logs it.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image

from zaoxiang.safety.errors import WatermarkError

MAGIC = b"zaoxiang"
ID_BYTES = 4
PAYLOAD_BYTES = len(MAGIC) + ID_BYTES
PAYLOAD_BITS = PAYLOAD_BYTES * 8
MIN_PIXELS = 256 * 256
DEFAULT_SCALE = 36


def short_id(text: str) -> bytes:
    """A 4-byte id for a job or request, stable across processes."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:ID_BYTES]


def make_payload(ident: bytes) -> bytes:
    if len(ident) != ID_BYTES:
        raise WatermarkError(f"watermark id must be {ID_BYTES} bytes, got {len(ident)}", field="short_id")
    return MAGIC + ident


def can_mark(image: Image.Image) -> bool:
    return image.width * image.height >= MIN_PIXELS


def _margin(scale: int) -> int:
    # A flat 4×4 LL block moves by at most 0.75·scale in its top singular value, i.e.
    # 0.75·scale/8 grey levels per pixel; keeping pixels that far from 0 and 255 avoids clipping.
    return math.ceil(0.75 * scale / 8)


def _embedder(bits: list[int], scale: int):  # -> EmbedDwtDctSvd
    # Imported lazily: imwatermark imports torch and cv2 at module import.
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    return EmbedDwtDctSvd(watermarks=bits, wmLen=PAYLOAD_BITS, scales=[scale, 0, 0], block=4)


def _rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2YUV) * 255.0  # (H, W, 3)


def _yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(yuv / 255.0, cv2.COLOR_YUV2RGB) * 255.0  # (H, W, 3)


def embed_watermark(image: Image.Image, payload: bytes, *, scale: int = DEFAULT_SCALE) -> Image.Image:
    """Return a marked copy of `image` (RGB, or RGBA with alpha kept)."""
    import pywt

    if len(payload) != PAYLOAD_BYTES:
        raise WatermarkError(f"watermark payload must be {PAYLOAD_BYTES} bytes, got {len(payload)}", field="payload")
    if not can_mark(image):
        raise WatermarkError(
            f"image {image.width}x{image.height} is below the watermark minimum of {MIN_PIXELS} pixels (256x256)",
            field="image",
        )
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    m = _margin(scale)
    rgb = m + rgb * ((255.0 - 2 * m) / 255.0)
    yuv = _rgb_to_yuv(rgb)
    h4, w4 = image.height // 4 * 4, image.width // 4 * 4
    bits = [int(b) for b in np.unpackbits(np.frombuffer(payload, dtype=np.uint8))]
    ll, (lh, hl, hh) = pywt.dwt2(yuv[:h4, :w4, 0], "haar")  # each (H/2, W/2)
    _embedder(bits, scale).encode_frame(ll, scale)  # in place, one bit per 4×4 LL block
    yuv[:h4, :w4, 0] = pywt.idwt2((ll, (lh, hl, hh)), "haar")
    out = Image.fromarray(np.clip(np.rint(_yuv_to_rgb(yuv)), 0, 255).astype(np.uint8))
    if alpha is not None:
        out.putalpha(alpha)
    return out


def decode_bits(image: Image.Image, *, scale: int = DEFAULT_SCALE) -> np.ndarray:
    """The 96 raw bits read from `image` (majority over all blocks carrying each bit)."""
    import pywt

    if not can_mark(image):
        raise WatermarkError(
            f"image {image.width}x{image.height} is below the watermark minimum of {MIN_PIXELS} pixels", field="image"
        )
    yuv = _rgb_to_yuv(np.asarray(image.convert("RGB")))
    h4, w4 = image.height // 4 * 4, image.width // 4 * 4
    ll, _ = pywt.dwt2(yuv[:h4, :w4, 0], "haar")
    votes = _embedder([], scale).decode_frame(ll, scale, [[] for _ in range(PAYLOAD_BITS)])
    return np.array([np.mean(v) > 0.5 for v in votes], dtype=np.uint8)  # (96,)


def read_watermark(image: Image.Image, *, scale: int = DEFAULT_SCALE) -> bytes | None:
    """The 12-byte payload if a zaoxiang watermark is present, else None (also for small images)."""
    if not can_mark(image):
        return None
    payload = np.packbits(decode_bits(image, scale=scale)).tobytes()
    return payload if payload.startswith(MAGIC) else None
