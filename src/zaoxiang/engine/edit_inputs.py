"""Edit inputs at the boundary: uploaded bytes → checked, normalised PNGs in the store → a request.

Every front end (CLI, native API, OpenAI, A1111) hands the raw upload here. Nothing is decoded
further than needed before the size check, so a decompression bomb is refused from its header.
What reaches the store is a normalised PNG (RGB image; L mask, binarised: 255 = repaint), and
the request carries only its content key, so the cache key covers the pixels, not the encoding
the client happened to use.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image, UnidentifiedImageError

from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import MAX_MASK_BLUR, MIN_SIDE, SIZE_MULTIPLE, GenerationRequest, Limits, OutpaintPads, parse_request

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
MASK_THRESHOLD = 128  # mask pixels at or above this are repainted

Put = Callable[[bytes], str]  # store bytes, return their content key
Get = Callable[[str], bytes]


def decode_upload(data: bytes | None, field: str, limits: Limits) -> Image.Image:
    """Decode one uploaded image, or raise InvalidRequest naming ``field`` and the problem."""
    if not data:
        raise InvalidRequest(f"{field} is empty", field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(f"{field} has too many pixels (over the budget of {limits.max_pixels})", field=field) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidRequest(f"{field} is not an image file (PNG, JPEG or WebP expected)", field=field) from None
    if im.format not in ACCEPTED_FORMATS:
        raise InvalidRequest(f"{field} is a {im.format} file; PNG, JPEG or WebP expected", field=field)
    w, h = im.size  # from the header: checked before any pixel is decoded
    if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
        raise InvalidRequest(
            f"{field} is {w}x{h} = {w * h} pixels, over the budget of {limits.max_pixels} pixels "
            f"(and {limits.max_side} per side)",
            field=field,
        )
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequest(f"{field} is a corrupt or truncated {im.format} file ({exc})", field=field) from None
    return im


def _check_side(field: str, w: int, h: int) -> None:
    if w % SIZE_MULTIPLE or h % SIZE_MULTIPLE or min(w, h) < SIZE_MULTIPLE:
        raise InvalidRequest(
            f"{field} is {w}x{h}; edit inputs need both sides to be multiples of {SIZE_MULTIPLE} pixels "
            "(resize or crop it first)",
            field=field,
        )


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def has_transparency(im: Image.Image) -> bool:
    if im.mode == "P" and "transparency" in im.info:
        return True
    return im.mode in ("RGBA", "LA", "PA") and im.getchannel("A").getextrema()[0] < 255


def mask_from_alpha(im: Image.Image) -> Image.Image:
    """OpenAI semantics: fully transparent pixels are the area to edit (white in our masks)."""
    alpha = im.convert("RGBA").getchannel("A")
    return alpha.point(lambda a: 255 if a == 0 else 0)


def normalise_mask(im: Image.Image) -> Image.Image:
    """Grey levels → binary L mask (255 = repaint)."""
    return im.convert("L").point(lambda v: 255 if v >= MASK_THRESHOLD else 0)


@dataclass(frozen=True)
class EditUpload:
    """One edit as a front end received it, before it is stored."""

    mode: str  # img2img | inpaint | outpaint
    image: bytes
    mask: bytes | None = None
    strength: float | None = None
    outpaint: dict[str, int] | None = None  # left/right/top/bottom
    mask_blur: int | None = None
    mask_from_alpha: bool = False  # the mask's alpha channel marks the edit area (OpenAI)


def store_edit(upload: EditUpload, limits: Limits, put: Put) -> tuple[dict[str, Any], tuple[int, int]]:
    """Check and store the upload; return the request's ``edit`` part and the output (w, h)."""
    if upload.strength is not None and not 0.0 <= upload.strength <= 1.0:
        raise InvalidRequest(f"strength must be between 0 and 1 (got {upload.strength})", field="strength")
    if upload.mask_blur is not None and not 0 <= upload.mask_blur <= MAX_MASK_BLUR:
        raise InvalidRequest(f"mask_blur must be between 0 and {MAX_MASK_BLUR} pixels (got {upload.mask_blur})", field="mask_blur")
    image = decode_upload(upload.image, "image", limits)
    w, h = image.size
    _check_side("image", w, h)
    mask_key = None
    if upload.mask is not None:
        if upload.mode != "inpaint":
            raise InvalidRequest(f"{upload.mode} takes no mask", field="mask")
        mask = decode_upload(upload.mask, "mask", limits)
        if mask.size != image.size:
            raise InvalidRequest(
                f"mask is {mask.size[0]}x{mask.size[1]} but image is {w}x{h}; they must be the same size", field="mask"
            )
        mask = mask_from_alpha(mask) if upload.mask_from_alpha else normalise_mask(mask)
        if mask.getextrema()[1] == 0:
            raise InvalidRequest("mask marks no pixel to edit (white = repaint)", field="mask")
        mask_key = put(_png(mask))
    elif upload.mode == "inpaint":
        raise InvalidRequest("inpaint needs a mask", field="mask")
    out_w, out_h = w, h
    if upload.mode == "outpaint":
        try:
            pads = OutpaintPads.model_validate(upload.outpaint or {})
        except ValueError as exc:
            raise InvalidRequest(f"outpaint: {_first_error(exc)}", field="outpaint") from None
        out_w, out_h = w + pads.left + pads.right, h + pads.top + pads.bottom
        if out_w > limits.max_side or out_h > limits.max_side or out_w * out_h > limits.max_pixels:
            raise InvalidRequest(
                f"outpaint makes a {out_w}x{out_h} canvas = {out_w * out_h} pixels, over the budget of "
                f"{limits.max_pixels} pixels (and {limits.max_side} per side)",
                field="outpaint",
            )
    elif upload.outpaint:
        raise InvalidRequest(f"{upload.mode} takes no outpaint amounts", field="outpaint")
    if min(out_w, out_h) < MIN_SIDE:
        where = "outpaint" if upload.mode == "outpaint" else "image"
        raise InvalidRequest(f"the output would be {out_w}x{out_h}; both sides must be at least {MIN_SIDE} pixels", field=where)
    edit: dict[str, Any] = {"mode": upload.mode, "image": put(_png(image.convert("RGB")))}
    if mask_key is not None:
        edit["mask"] = mask_key
    if upload.strength is not None:
        edit["strength"] = upload.strength
    if upload.outpaint:
        edit["outpaint"] = upload.outpaint
    if upload.mask_blur is not None:
        edit["mask_blur"] = upload.mask_blur
    return edit, (out_w, out_h)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        err = errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        return f"{loc}: {msg}" if loc else msg
    return str(exc)


def edit_request(fields: dict[str, Any], upload: EditUpload, limits: Limits, put: Put) -> GenerationRequest:
    """A full, validated edit request: ``fields`` are the usual request fields (prompt, seed, ...).

    Edits keep the canvas size the input (plus outpaint) gives; a width/height that disagrees
    is refused rather than silently replaced.
    """
    edit, (w, h) = store_edit(upload, limits, put)
    for name, value in (("width", w), ("height", h)):
        given = fields.get(name)
        if given is not None and given != value:
            raise InvalidRequest(f"{name} {given} does not match the edit's output size {w}x{h}", field=name)
    return parse_request({**fields, "width": w, "height": h, "edit": edit}, limits)


def load_stored(get: Get | None, key: str, field: str, mode: str) -> Image.Image:
    """A stored, normalised input back as a PIL image (the engine side)."""
    if get is None:
        raise InvalidRequest("this runner has no store for edit inputs", field=field)
    try:
        data = get(key)
    except (KeyError, FileNotFoundError, LookupError):
        raise InvalidRequest(f"no stored input {key[:12]}… for {field}", field=field) from None
    except Exception as exc:  # the store's own not-found error (ImageNotFound) and friends
        raise InvalidRequest(f"no stored input {key[:12]}… for {field} ({type(exc).__name__})", field=field) from None
    im = Image.open(io.BytesIO(data))
    im.load()
    return im.convert(mode)


class MemoryInputs:
    """A dict-backed input store, for the CLI and tests (the service uses its image store)."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        import hashlib

        key = hashlib.sha256(data).hexdigest()
        self._blobs[key] = data
        return key

    def get(self, key: str) -> bytes:
        return self._blobs[key]
