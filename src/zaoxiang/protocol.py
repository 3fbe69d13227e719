"""The typed messages that cross every boundary: CLI/HTTP → engine → storage.

``GenerationRequest`` is what a user asks for, validated once at the boundary by
:func:`parse_request`; after that every layer trusts it. ``GenerationResult`` is what the engine
hands back: the images, the fully resolved request that made them, the model's identity and
per-phase timings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zaoxiang.errors import InvalidRequest

# Fixed, deployment-independent bounds. Deployment limits (pixel budget, n) live in `Limits`.
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
MAX_SEED = 2**63 - 1
SIZE_MULTIPLE = 16
MIN_SIDE = 64

OutputFormat = Literal["png", "jpeg", "webp"]


class SamplerOptions(BaseModel):
    """How to walk the noise schedule. ``default`` is the model's own scheduler."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["default", "euler"] = "default"
    # Flow-matching time shift (SD3/FLUX ``shift``); None keeps the model's configured value.
    shift: float | None = Field(default=None, gt=0.0, le=20.0)


class LoraRef(BaseModel):
    """One LoRA adapter applied for a single request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    scale: float = Field(default=1.0, ge=-4.0, le=4.0)
    # The file's content hash, filled in by the engine when it resolves the request (so the cache
    # key covers the adapter's bytes); a client may give it to pin one version of the file.
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


EditMode = Literal["img2img", "inpaint", "outpaint"]
UPSCALE_FACTORS = (2, 4)
# A content hash (sha256 hex) of bytes already in the image store: edit inputs travel by key, never
# as paths or raw bytes inside the request.
_CONTENT_KEY = r"^[0-9a-f]{64}$"
# Strength when a request leaves it out: img2img keeps the composition; inpaint/outpaint redraw fully.
DEFAULT_STRENGTH: dict[str, float] = {"img2img": 0.75, "inpaint": 1.0, "outpaint": 1.0}
MAX_MASK_BLUR = 64


class OutpaintPads(BaseModel):
    """Pixels added on each side of the input image (multiples of 16, so the canvas stays valid)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    left: int = Field(default=0, ge=0, le=4096)
    right: int = Field(default=0, ge=0, le=4096)
    top: int = Field(default=0, ge=0, le=4096)
    bottom: int = Field(default=0, ge=0, le=4096)

    @field_validator("left", "right", "top", "bottom")
    @classmethod
    def _multiple_of_16(cls, v: int) -> int:
        if v % SIZE_MULTIPLE:
            raise ValueError(f"must be a multiple of {SIZE_MULTIPLE} (got {v})")
        return v

    @model_validator(mode="after")
    def _grows(self) -> "OutpaintPads":
        if not (self.left or self.right or self.top or self.bottom):
            raise ValueError("outpaint needs at least one side to grow")
        return self


class EditSpec(BaseModel):
    """What to edit: an input image (and mask) by content key, and how.

    ``image`` and ``mask`` are keys of normalised PNGs in the image store (see
    ``zaoxiang.engine.edit_inputs``); the mask is white where the model repaints. ``strength`` None
    takes the mode's default (:data:`DEFAULT_STRENGTH`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: EditMode
    image: str = Field(pattern=_CONTENT_KEY)
    mask: str | None = Field(default=None, pattern=_CONTENT_KEY)
    strength: float | None = Field(default=None, ge=0.0, le=1.0)
    outpaint: OutpaintPads | None = None
    mask_blur: int = Field(default=8, ge=0, le=MAX_MASK_BLUR)

    @model_validator(mode="after")
    def _mode_fields(self) -> "EditSpec":
        if self.mode == "inpaint" and self.mask is None:
            raise ValueError("inpaint needs a mask")
        if self.mode != "inpaint" and self.mask is not None:
            raise ValueError(f"{self.mode} takes no mask")
        if self.mode == "outpaint" and self.outpaint is None:
            raise ValueError("outpaint needs outpaint amounts (left, right, top, bottom)")
        if self.mode != "outpaint" and self.outpaint is not None:
            raise ValueError(f"{self.mode} takes no outpaint amounts")
        return self

    @property
    def effective_strength(self) -> float:
        return DEFAULT_STRENGTH[self.mode] if self.strength is None else self.strength


class GenerationRequest(BaseModel):
    """One text-to-image request. ``None`` fields take the model's defaults when resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    negative_prompt: str = ""
    width: int | None = Field(default=None, ge=MIN_SIDE)
    height: int | None = Field(default=None, ge=MIN_SIDE)
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(default=None, ge=0.0, le=MAX_GUIDANCE)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    n: int = Field(default=1, ge=1)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    sampler: SamplerOptions = SamplerOptions()
    output_format: OutputFormat = "png"
    loras: tuple[LoraRef, ...] = ()
    turbo: bool = False
    # An image edit instead of plain text-to-image; width/height are then the output canvas size.
    edit: EditSpec | None = None
    # Real-ESRGAN upscale factor applied to every output image (None: no upscaling).
    upscale: int | None = None

    @field_validator("upscale")
    @classmethod
    def _upscale_factor(cls, v: int | None) -> int | None:
        if v is not None and v not in UPSCALE_FACTORS:
            raise ValueError(f"must be one of {', '.join(map(str, UPSCALE_FACTORS))} (got {v})")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must not be empty")
        return v

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_16(cls, v: int | None) -> int | None:
        if v is not None and v % SIZE_MULTIPLE:
            raise ValueError(f"must be a multiple of {SIZE_MULTIPLE} (got {v})")
        return v

    def is_resolved(self) -> bool:
        return None not in (self.width, self.height, self.steps, self.guidance, self.seed, self.model)

    def cache_key(self, model_revision: str, dtype: str) -> str:
        """Canonical hash of every output-affecting field. Only meaningful once resolved:
        a request without a seed has no reproducible output and must not be cached."""
        if not self.is_resolved():
            raise ValueError("cache_key needs a resolved request (seed, size, steps, guidance, model)")
        payload = self.model_dump(exclude={"output_format"})
        # Fields added later are left out while unset, so keys of older requests stay valid. The
        # edit part carries the input image/mask content hashes, so the key covers their pixels.
        for name in ("edit", "upscale"):
            if payload[name] is None:
                del payload[name]
        payload["model_revision"] = model_revision
        payload["dtype"] = dtype
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Limits:
    """Deployment limits, checked after the fixed bounds. Settings provide the values."""

    max_pixels: int = 2048 * 2048
    max_side: int = 4096
    max_images: int = 8
    max_prompt_chars: int = 2000

    def check(self, req: GenerationRequest) -> None:
        for name in ("prompt", "negative_prompt"):
            text = getattr(req, name)
            if len(text) > self.max_prompt_chars:
                raise InvalidRequest(
                    f"{name} is {len(text)} characters; the limit is {self.max_prompt_chars}", field=name
                )
        for name in ("width", "height"):
            side = getattr(req, name)
            if side is not None and side > self.max_side:
                raise InvalidRequest(f"{name} {side} is over the limit of {self.max_side} pixels", field=name)
        if req.width is not None and req.height is not None and req.width * req.height > self.max_pixels:
            raise InvalidRequest(
                f"size {req.width}x{req.height} = {req.width * req.height} pixels is over the budget of "
                f"{self.max_pixels} pixels",
                field="width",
            )
        if req.n > self.max_images:
            raise InvalidRequest(f"n={req.n} is over the limit of {self.max_images} images per request", field="n")


def parse_request(data: dict[str, Any], limits: Limits | None = None) -> GenerationRequest:
    """Validate untrusted input into a request, or raise InvalidRequest naming the field."""
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        req = GenerationRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None
    (limits or Limits()).check(req)
    return req


def invalid_from_pydantic(exc: ValidationError) -> InvalidRequest:
    """The first pydantic error as one InvalidRequest with a dotted field path."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or None
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    return InvalidRequest(f"{loc}: {msg}" if loc else msg, field=loc)


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights made an image: enough to reproduce it and to key a cache."""

    name: str
    family: str
    revision: str  # content fingerprint of the model folder / built-in weights
    source: str  # folder path or "builtin"


@dataclass(frozen=True)
class PhaseTimings:
    load_s: float = 0.0
    text_encode_s: float = 0.0
    denoise_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ProgressEvent:
    """Sent once per denoising step. ``preview`` is an optional small PNG of the current latent."""

    step: int
    total: int
    preview: bytes | None = None


@dataclass
class GenerationResult:
    """Images plus everything needed to explain and reproduce them."""

    images: list[Any]  # PIL.Image.Image, one per requested image, in seed order
    seeds: list[int]
    request: GenerationRequest  # fully resolved
    model: ModelIdentity
    timings: PhaseTimings
    dtype: str
    device: str
    extras: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {
            "request": self.request.model_dump(mode="json"),
            "seeds": self.seeds,
            "model": self.model.__dict__,
            "timings": self.timings.as_dict(),
            "dtype": self.dtype,
            "device": self.device,
            **self.extras,
        }
