"""What every pipeline (built-in or diffusers-backed) offers the runner.

A pipeline is loaded once and kept warm by the runner. ``generate`` runs one resolved request,
reading top to bottom as: encode text → prepare latents → denoise (one ``ctx.step`` call per step)
→ guarded decode. ``ctx.step`` is the single per-step hook: it reports progress and raises
``Cancelled`` when the job has been cancelled, so cancel takes effect within one step.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.protocol import GenerationRequest, ModelIdentity, PhaseTimings

# (step, total, latents or None) -> None; raises Cancelled to stop the run.
StepCallback = Callable[[int, int, "torch.Tensor | None"], None]


@dataclass(frozen=True)
class ModelDefaults:
    """What a request's ``None`` fields resolve to for this model."""

    width: int
    height: int
    steps: int
    guidance: float


@dataclass
class PhaseTimer:
    """Wall time per phase. Synchronises the device at phase ends only (never inside the loop)."""

    device: torch.device
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def timings(self, load_s: float, total_s: float) -> PhaseTimings:
        return PhaseTimings(
            load_s=load_s,
            text_encode_s=self.seconds.get("text_encode", 0.0),
            denoise_s=self.seconds.get("denoise", 0.0),
            decode_s=self.seconds.get("decode", 0.0),
            total_s=total_s,
        )


@dataclass
class RunContext:
    request: GenerationRequest  # resolved: no None in size/steps/guidance/seed/model
    seeds: list[int]  # one per image: seed, seed+1, ...
    step: StepCallback
    precision: PrecisionPolicy
    timer: PhaseTimer
    memory_mode: str = "auto"
    vae_tiling_pixels: int = 1536 * 1536
    # Reads a stored edit input (image/mask) by content key; None where the caller has no store.
    inputs: Callable[[str], bytes] | None = None


class LoadedPipeline(ABC):
    """A warm pipeline on its device."""

    identity: ModelIdentity
    defaults: ModelDefaults
    # Edit modes (img2img / inpaint / outpaint) this pipeline runs; the runner refuses the others.
    edit_modes: frozenset[str] = frozenset()
    # True when loading compiled graphs that a new image size recompiles (the runner then warms
    # the pipeline up at engine.warm_up_sizes).
    compiled: bool = False
    # True while part of the speed profile waits for the worker's first idle moment
    # (engine.compile_vae_at = "idle"); Runner.idle then calls apply_deferred_speed.
    deferred_speed: bool = False

    def apply_deferred_speed(self) -> bool:
        """Apply what the speed profile left for later; False when nothing was waiting."""
        return False

    def validate(self, request: GenerationRequest) -> None:
        """Family-specific checks beyond the global ones (raise InvalidRequest naming the field)."""

    @abstractmethod
    def generate(self, ctx: RunContext) -> list["object"]:
        """Run the request; return one PIL image per seed."""

    def lora_target(self) -> "object | None":
        """How this pipeline takes LoRA adapters (a ``zaoxiang.engine.lora.LoraTarget``), or None."""
        return None

    def preview(self, latents: torch.Tensor) -> "object | None":
        """A small, cheap RGB preview (PIL image) of in-progress latents, or None if unsupported."""
        return None

    def unload(self) -> None:
        """Release device memory. The runner drops its reference afterwards."""
