"""Typed settings for every safety part. Everything is on by default; each part has a switch.

In a deployment these sit under ``Settings.safety`` and read from the environment with the
``ZAOXIANG_SAFETY__`` prefix, e.g. ``ZAOXIANG_SAFETY__IMAGE_CHECK__POLICY=blur`` or
``ZAOXIANG_SAFETY__ENABLED=false`` (the master switch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zaoxiang.paths import default_data_dir

ImagePolicy = Literal["block", "blur", "flag"]


class PromptFilterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # The packaged bilingual lists (safety/blocklist.txt, safety/allowlist.txt) are the base;
    # deployment files add to them. Turn the base off to use only your own files.
    use_default_lists: bool = True
    blocklist_paths: list[Path] = Field(default_factory=list)
    allowlist_paths: list[Path] = Field(default_factory=list)
    # Off by default: "nude, nsfw" in a negative prompt asks for *less* of it, and blocking that
    # would punish the most careful users.
    check_negative_prompt: bool = False


class ImageCheckSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # What happens at or above `threshold`: fail the job, blur the image, or only mark it.
    policy: ImagePolicy = "block"
    # open_nsfw guidance: below 0.2 safe, above 0.8 unsafe; the band between is uncertain.
    threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    # At or above this (and below `threshold`) an image is passed but marked "flag" for review.
    flag_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # ONNX Runtime intra-op threads. One keeps the check from competing with the GPU feeder thread.
    threads: int = Field(default=1, ge=1, le=64)
    blur_radius_fraction: float = Field(default=0.05, gt=0.0, le=0.5)

    @model_validator(mode="after")
    def _ordered(self) -> "ImageCheckSettings":
        if self.flag_threshold > self.threshold:
            raise ValueError(
                f"image_check.flag_threshold ({self.flag_threshold}) must be <= threshold ({self.threshold})"
            )
        return self


class WatermarkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Quantisation step of the DWT-DCT-SVD embedding on luma. 36 survives JPEG q80 on flat
    # emoji images at ~37 dB PSNR; lower is less visible and less robust (see docs/safety.md).
    scale: int = Field(default=36, ge=8, le=128)


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # None: <data_dir>/audit/audit.jsonl of the deployment (see `resolved`).
    path: Path | None = None
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Rotated files kept besides the live one (audit.jsonl.1 ... .N).
    backup_count: int = Field(default=5, ge=0, le=1000)


class SafetySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def resolved(self, data_dir: Path | None = None) -> "SafetySettings":
        """These settings with the audit log placed under ``data_dir`` unless a path was given."""
        if self.audit.path is not None:
            return self
        path = (data_dir or default_data_dir()) / "audit" / "audit.jsonl"
        return self.model_copy(update={"audit": self.audit.model_copy(update={"path": path})})

    # Master switch: False turns every part off regardless of the parts' own switches.
    enabled: bool = True
    prompt_filter: PromptFilterSettings = Field(default_factory=PromptFilterSettings)
    image_check: ImageCheckSettings = Field(default_factory=ImageCheckSettings)
    watermark: WatermarkSettings = Field(default_factory=WatermarkSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
