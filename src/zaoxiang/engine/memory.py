"""Memory modes for cards that cannot hold a whole pipeline plus a large decode.

``settings.memory_mode`` picks one:

- ``auto``: everything on the device; the VAE decodes in tiles when the output is larger than
  ``vae_tiling_pixels``, and a decode that runs out of memory is retried once in tiles.
- ``none``: everything on the device, never tiled (an out-of-memory error is the user's answer).
- ``vae_tiling``: always decode in tiles, and in slices when a batch has several images.
- ``model_offload``: each component (text encoders, denoiser, VAE) moves to the GPU only while it
  runs (diffusers ``enable_model_cpu_offload``): small speed cost, large memory saving.
- ``sequential_offload``: weights stream to the GPU layer by layer
  (``enable_sequential_cpu_offload``): slowest, smallest footprint.

Offload only means something with a GPU; on CPU it is logged and ignored. Every choice is logged
at INFO with its reason, so a user can see why a run was slower or used less memory.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import torch

log = logging.getLogger(__name__)

Offload = Literal["none", "model", "sequential"]
Tiling = Literal["never", "auto", "always"]

_OFFLOAD_OF_MODE: dict[str, Offload] = {"model_offload": "model", "sequential_offload": "sequential"}


@dataclass(frozen=True)
class MemoryPlan:
    mode: str
    offload: Offload
    tiling: Tiling
    tiling_pixels: int  # auto mode: tile above this many output pixels
    retry_tiled_on_oom: bool
    reason: str

    def tile_for(self, width: int, height: int) -> tuple[bool, str]:
        """Whether to decode a ``width`` x ``height`` image in tiles, and why."""
        if self.tiling == "always":
            return True, f"memory_mode={self.mode} always tiles"
        if self.tiling == "auto" and width * height > self.tiling_pixels:
            return True, f"{width}x{height} = {width * height} pixels is above the {self.tiling_pixels}-pixel threshold"
        return False, "below the tiling threshold" if self.tiling == "auto" else f"memory_mode={self.mode}"


def plan_memory(mode: str, device: torch.device, tiling_pixels: int) -> MemoryPlan:
    """Turn the ``memory_mode`` setting into a plan for this device (pure; logs nothing)."""
    if mode in _OFFLOAD_OF_MODE:
        if device.type != "cuda":
            return MemoryPlan(
                mode, "none", "auto", tiling_pixels, True,
                f"memory_mode={mode} ignored: offloading to CPU only helps when the model runs on a GPU "
                f"(device is {device}); using automatic VAE tiling instead",
            )
        # Offloaded weights leave room for the decode, but a huge image can still need tiles.
        return MemoryPlan(
            mode, _OFFLOAD_OF_MODE[mode], "auto", tiling_pixels, True,
            f"memory_mode={mode}: components move to {device} only while they run",
        )
    if mode == "vae_tiling":
        return MemoryPlan(mode, "none", "always", tiling_pixels, False, "memory_mode=vae_tiling: every decode is tiled and sliced")
    if mode == "none":
        return MemoryPlan(mode, "none", "never", tiling_pixels, False, "memory_mode=none: no tiling, no offload")
    if mode == "auto":
        return MemoryPlan(
            mode, "none", "auto", tiling_pixels, True,
            f"memory_mode=auto: whole pipeline on {device}; tiled decode above {tiling_pixels} pixels or after an out-of-memory error",
        )
    raise ValueError(f"unknown memory_mode {mode!r}")


def place_pipeline(pipe: Any, plan: MemoryPlan, device: torch.device) -> None:
    """Put a freshly loaded diffusers pipeline on ``device`` as the plan says."""
    log.info("memory plan: %s", plan.reason)
    if plan.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    if plan.tiling == "always" and hasattr(pipe.vae, "enable_slicing"):
        pipe.vae.enable_slicing()


@contextmanager
def vae_tiling(vae: Any, on: bool) -> Iterator[None]:
    """Tiled VAE decode inside the block; the VAE's previous setting is restored afterwards."""
    before = bool(getattr(vae, "use_tiling", False))
    if on != before:
        vae.enable_tiling() if on else vae.disable_tiling()
    try:
        yield
    finally:
        if on != before:
            vae.enable_tiling() if before else vae.disable_tiling()


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


def decode_with_memory_plan(
    decode: Callable[[], torch.Tensor],
    vae: Any,
    plan: MemoryPlan,
    width: int,
    height: int,
) -> torch.Tensor:
    """Run ``decode()`` tiled or not as the plan says, retrying once tiled on out-of-memory."""
    tiled, why = plan.tile_for(width, height)
    if tiled:
        log.info("VAE decode in tiles: %s", why)
    try:
        with vae_tiling(vae, tiled):
            return decode()
    except torch.OutOfMemoryError:
        if tiled or not plan.retry_tiled_on_oom:
            raise
        log.warning("VAE decode of %dx%d ran out of memory; retrying once in tiles (memory_mode=%s)", width, height, plan.mode)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        with vae_tiling(vae, True):
            return decode()
