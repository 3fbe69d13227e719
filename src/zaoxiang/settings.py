"""One typed Settings object, read from ``ZAOXIANG_*`` environment variables and CLI flags.

Nothing is read at import time: call :meth:`Settings.load` where a program starts and pass the
object down. Nested groups use ``__`` in the environment, e.g. ``ZAOXIANG_LIMITS__MAX_IMAGES=4``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from zaoxiang.protocol import Limits

MemoryMode = Literal["auto", "none", "vae_tiling", "model_offload", "sequential_offload"]


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


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "zaoxiang"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZAOXIANG_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # Extra model folders: NAME=PATH or PATH (NAME defaults to the folder name).
    models: list[str] = Field(default_factory=list)
    models_dir: Path | None = None
    default_model: str | None = None
    engine: EngineSettings = Field(default_factory=EngineSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    @classmethod
    def load(cls, **overrides: object) -> "Settings":
        """Environment first, then explicit overrides (CLI flags) on top."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})
