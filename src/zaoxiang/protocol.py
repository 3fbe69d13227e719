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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
