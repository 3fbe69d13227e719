"""Image files that explain themselves.

PNG: an AUTOMATIC1111-style ``parameters`` text chunk (so existing tools — A1111's PNG Info,
ComfyUI's loaders, civitai — show the prompt and settings) plus a ``zaoxiang`` iTXt chunk with the
full resolved request, the model's identity and revision, timings and the generation time.
JPEG/WebP: the same ``parameters`` text in EXIF UserComment, as A1111 writes it.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

from PIL import Image, PngImagePlugin

from zaoxiang import __version__
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationResult

JSON_KEY = "zaoxiang"
PARAMS_KEY = "parameters"
EXIF_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"
_SAMPLER_NAMES = {"default": "Default", "euler": "Euler"}


def a1111_parameters(result: GenerationResult, index: int) -> str:
    """The A1111 ``parameters`` text for image ``index`` of a result."""
    r = result.request
    lines = [r.prompt]
    if r.negative_prompt:
        lines.append(f"Negative prompt: {r.negative_prompt}")
    fields = [
        ("Steps", r.steps),
        ("Sampler", _SAMPLER_NAMES.get(r.sampler.name, r.sampler.name)),
        ("CFG scale", r.guidance),
        ("Seed", result.seeds[index]),
        ("Size", f"{r.width}x{r.height}"),
        ("Model hash", result.model.revision[:10]),
        ("Model", result.model.name),
    ]
    if r.loras:
        fields.append(("Lora hashes", ", ".join(f"{l.name}: {l.scale}" for l in r.loras)))
    fields.append(("Version", f"zaoxiang {__version__}"))
    lines.append(", ".join(f"{k}: {v}" for k, v in fields))
    return "\n".join(lines)


# What differs between two runs of the same request (wall times), left out of files that must be
# byte-identical per request (the service's content-addressed store).
RUN_TIMING_KEYS = ("timings", "timings_extra")


def metadata_json(result: GenerationResult, index: int, created: datetime | None = None,
                  timings: bool = True) -> dict[str, Any]:
    meta = result.metadata()
    if not timings:
        for k in RUN_TIMING_KEYS:
            meta.pop(k, None)
    meta["index"] = index
    meta["seed"] = result.seeds[index]
    meta["generator"] = f"zaoxiang {__version__}"
    meta["created"] = (created or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    return meta


def encode_image(image: Image.Image, result: GenerationResult, index: int, fmt: str = "png",
                 created: datetime | None = None, timings: bool = True) -> bytes:
    """Encode one generated image with its metadata embedded. ``created`` (default: now) and
    ``timings=False`` make the bytes a function of the request alone (see ``RUN_TIMING_KEYS``)."""
    params = a1111_parameters(result, index)
    meta = json.dumps(metadata_json(result, index, created, timings), ensure_ascii=False, separators=(",", ":"))
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text(PARAMS_KEY, params)
        info.add_itxt(JSON_KEY, meta)
        info.add_text("Software", f"zaoxiang {__version__}")
        image.save(buf, format="PNG", pnginfo=info)
    elif fmt in ("jpeg", "webp"):
        exif = Image.Exif()
        exif[EXIF_USER_COMMENT] = _UNICODE_PREFIX + params.encode("utf-16-be")
        image.convert("RGB").save(buf, format=fmt.upper(), quality=95, exif=exif.tobytes())
    else:
        raise InvalidRequest(f"unknown output format {fmt!r}; use png, jpeg or webp", field="output_format")
    return buf.getvalue()


def read_metadata(data: bytes) -> dict[str, Any]:
    """What an image file says about itself: ``parameters`` text and the ``zaoxiang`` JSON if present."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise InvalidRequest(f"not a readable image: {exc}", field="image") from None
    out: dict[str, Any] = {}
    text = getattr(image, "text", {}) or {}
    if PARAMS_KEY in text:
        out[PARAMS_KEY] = text[PARAMS_KEY]
    if JSON_KEY in text:
        out[JSON_KEY] = json.loads(text[JSON_KEY])
    if PARAMS_KEY not in out:
        raw = image.getexif().get(EXIF_USER_COMMENT)
        if isinstance(raw, bytes) and raw.startswith(_UNICODE_PREFIX):
            out[PARAMS_KEY] = raw[len(_UNICODE_PREFIX) :].decode("utf-16-be")
    return out
