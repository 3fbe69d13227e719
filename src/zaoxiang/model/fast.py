"""Lossy speed for the built-in MMDiT: a first-block step cache and fp8 matmuls.

    speed = apply_builtin_speed(pipe_or_transformer, options, device)   -> BuiltinSpeed (report + handles)
    reset_builtin_caches(pipe_or_transformer)                           before every run (the pipeline does it)
    undo_builtin_speed(pipe_or_transformer)                             the model is bit-identical again

First block cache (``options.first_block_cache`` = threshold): the rule of diffusers'
``FirstBlockCache`` (diffusers/hooks/first_block_cache.py), on our block layout. Every step runs the
first block; its residual on the image tokens, r = out - in (B, N, D), is compared with the residual
of the last step that ran every block::

    diff = mean|r - r_prev| / mean|r_prev|

If diff < threshold the other blocks are skipped and the image tokens after the last block are the
first block's output plus the residual the remaining blocks added at that last full step. (diffusers
skips when diff <= threshold; strict ``<`` makes threshold 0 mean "never skip", so it is
bit-identical to no cache.) diff is computed in fp32 over the whole batch (a CFG batch of 2B is
one decision). diffusers' hooks need its block registry, which knows nothing of our blocks, so the
rule is re-implemented here (≈ 60 lines) as instance ``forward`` overrides on the blocks: module
paths stay the same, so LoRA (peft) and state dicts see the unchanged model.

fp8 (``options.fp8``): every fitting ``nn.Linear`` inside the blocks runs its matmul through
``engine.speed.Fp8Linear`` (e4m3, per-tensor scales; CUDA capability 8.9+, else reported as skipped).
``fp8_cpu_reference=True`` also runs it on a CPU through ``torch._scaled_mm``'s CPU kernel: the same
quantisation of both operands and the same scales, so the *quality* of fp8 can be measured on the
built-in model without a Hopper GPU (bench/lossy_quality.py); it is slower than fp32 there, so
only a benchmark asks for it.
The Linear module stays in place and only its ``forward`` is replaced, because the engine stacks
LoRA adapters per request by module path and type (``nn.Linear``); a swapped-in module would hide
those layers from it. The bf16 weights are kept (for LoRA and undo; +50 % of the Linear weights).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zaoxiang.engine.speed import Fp8Linear, SpeedOptions, SpeedReport
from zaoxiang.model.mmdit import MMDiT, DualStreamBlock

log = logging.getLogger(__name__)

_HANDLE = "_zaoxiang_builtin_speed"  # instance attribute on the MMDiT (via __dict__: not a submodule)
_FP8 = "_zaoxiang_fp8"  # instance attribute on each fp8 Linear: its Fp8Linear


@dataclass
class CacheStats:
    """Counters since the last ``take_stats``: transformer forwards (steps, CFG batch = one) and blocks."""

    forwards: int = 0
    skipped_forwards: int = 0
    blocks_total: int = 0
    blocks_skipped: int = 0

    @property
    def skipped_fraction(self) -> float:
        return self.blocks_skipped / self.blocks_total if self.blocks_total else 0.0


# At 4 steps (turbo) the first block's residual moves far more than any useful threshold between
# steps, so nothing is skipped and the comparison only costs time (bench/lossy-quality-cpu.md:
# 0 % skipped, 4-9 % slower). Runs of at most this many steps leave the cache off (4: the only
# few-step count measured; 28 steps skipped 15-42 %).
CACHE_MIN_STEPS_EXCLUSIVE = 4


class FirstBlockCache:
    """The step cache on one MMDiT. ``install`` / ``uninstall``; ``reset`` forgets the last run."""

    def __init__(self, model: MMDiT, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"first_block_cache threshold must be in [0, 1], got {threshold}")
        self.model = model
        self.threshold = float(threshold)
        self.blocks: list[nn.Module] = [*model.dual, *model.single]
        if len(self.blocks) < 2:
            raise ValueError("the first block cache needs at least 2 blocks")
        self.stats = CacheStats()
        self._hook: Any = None
        self.reset()

    # -- state ----------------------------------------------------------------------------------

    def reset(self, steps: int | None = None) -> None:
        """Forget the previous run (residuals, the text it was for). Counters are kept. ``steps``:
        the coming run's step count; runs of ≤ CACHE_MIN_STEPS_EXCLUSIVE steps never skip."""
        self.active = steps is None or steps > CACHE_MIN_STEPS_EXCLUSIVE
        self._forget()

    def _forget(self) -> None:
        """Drop the previous run's residuals; ``active`` (set by ``reset``) stays."""
        self._n_txt = 0
        self._text: torch.Tensor | None = None  # the run's text states (identity marks the run)
        self._shape: tuple[int, ...] | None = None
        self._head_residual: torch.Tensor | None = None  # (B, N, D) at the last full step
        self._head_out: torch.Tensor | None = None  # (B, N, D) image tokens after the first block
        self._tail_residual: torch.Tensor | None = None  # (B, N, D) what the other blocks added
        self._skip = False

    def take_stats(self) -> CacheStats:
        stats, self.stats = self.stats, CacheStats()
        return stats

    # -- install ----------------------------------------------------------------------------------

    def install(self) -> None:
        self._hook = self.model.register_forward_pre_hook(self._on_model_forward, with_kwargs=True)
        head, *middle, tail = self.blocks
        # Dual blocks take and return (img, txt); single blocks take and return seq = [txt, img].
        head.forward = self._head_forward(head.forward, isinstance(head, DualStreamBlock))
        for block in middle:
            block.forward = self._middle_forward(block.forward, isinstance(block, DualStreamBlock))
        tail.forward = self._tail_forward(tail.forward, isinstance(tail, DualStreamBlock))

    def uninstall(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for block in self.blocks:
            block.__dict__.pop("forward", None)
        self.reset()

    # -- the rule ---------------------------------------------------------------------------------

    def _on_model_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        named = dict(zip(("x", "t", "text"), args)) | kwargs  # MMDiT.forward(x, t, text, text_mask)
        x, text = named["x"], named["text"]  # (B, C, h, w), (B, T, Dt)
        # Another run: new text states (every run encodes its own), or another batch/latent shape.
        if text is not self._text or tuple(x.shape) != self._shape:
            self._forget()
            self._text, self._shape = text, tuple(x.shape)
        self._n_txt = text.shape[1]
        self.stats.forwards += 1
        self.stats.blocks_total += len(self.blocks)

    def _image(self, out: Any, dual: bool) -> torch.Tensor:
        """The image tokens (B, N, D) of a block's output."""
        return out[0] if dual else out[:, self._n_txt:]

    @torch.compiler.disable
    def _decide(self, residual: torch.Tensor) -> bool:
        """True to skip the remaining blocks. One host sync per step (inherent to the rule)."""
        prev = self._head_residual
        if (not self.active or prev is None or self._tail_residual is None or prev.shape != residual.shape
                or self.threshold == 0.0):
            return False
        prev32 = prev.float()
        diff = (residual.float() - prev32).abs().mean() / prev32.abs().mean().clamp_min(1e-12)
        return bool(diff.item() < self.threshold)

    def _head_forward(self, forward, dual: bool):
        def head(*args, **kw):
            out = forward(*args, **kw)
            img_in = args[0] if dual else args[0][:, self._n_txt:]  # (B, N, D)
            img_out = self._image(out, dual)
            residual = img_out - img_in  # (B, N, D)
            self._skip = self._decide(residual)
            if self._skip:
                self.stats.skipped_forwards += 1
                self.stats.blocks_skipped += len(self.blocks) - 1
            else:
                self._head_residual, self._head_out = residual, img_out
            return out

        return head

    def _middle_forward(self, forward, dual: bool):
        def middle(*args, **kw):
            if self._skip:  # inputs pass through
                return (args[0], args[1]) if dual else args[0]
            return forward(*args, **kw)

        return middle

    def _tail_forward(self, forward, dual: bool):
        def tail(*args, **kw):
            if self._skip:
                assert self._tail_residual is not None
                if dual:
                    return args[0] + self._tail_residual, args[1]
                seq = args[0]  # (B, T+N, D): the first block's output, passed through
                return torch.cat([seq[:, : self._n_txt], seq[:, self._n_txt:] + self._tail_residual], dim=1)
            out = forward(*args, **kw)
            self._tail_residual = self._image(out, dual) - self._head_out  # (B, N, D)
            return out

        return tail


# -- fp8 ------------------------------------------------------------------------------------------


def enable_fp8(model: MMDiT) -> int:
    """Run every fitting Linear inside the blocks as an fp8 matmul; returns how many. Embedders and
    the output projection stay as they are (their precision matters most, their cost is small)."""
    n = 0
    for block in [*model.dual, *model.single]:
        for module in block.modules():
            if type(module) is nn.Linear and Fp8Linear.fits(module) and _FP8 not in module.__dict__:
                fp8 = Fp8Linear(module)
                module.__dict__[_FP8] = fp8  # not registered: no new state-dict keys
                module.forward = fp8.forward
                n += 1
    return n


def disable_fp8(model: nn.Module) -> int:
    n = 0
    for module in model.modules():
        if module.__dict__.pop(_FP8, None) is not None:
            module.__dict__.pop("forward", None)
            n += 1
    return n


CPU_FP8_NOTE = "CPU reference: torch._scaled_mm's CPU kernel, the GPU path's e4m3 quantisation and scales; speed not meaningful"


def _cpu_scaled_mm_works() -> bool:
    """Whether this torch build has an fp8 ``_scaled_mm`` for CPU tensors (2.6+ has)."""
    try:
        a = torch.ones(16, 16).to(torch.float8_e4m3fn)  # (M, K)
        one = torch.tensor(1.0)
        out = torch._scaled_mm(a, a.t(), scale_a=one, scale_b=one, out_dtype=torch.float32)  # (M, M)
    except (RuntimeError, NotImplementedError, AttributeError, TypeError):
        return False
    return bool(out[0, 0].item() == 16.0)


def fp8_supported(device: torch.device | str, cpu_reference: bool = False) -> tuple[bool, str]:
    """(usable, why not). ``cpu_reference``: accept a CPU whose torch has an fp8 ``_scaled_mm``, for
    measuring fp8's effect on images (not its speed)."""
    device = torch.device(device)
    if device.type == "cpu" and cpu_reference:
        if _cpu_scaled_mm_works():
            return True, CPU_FP8_NOTE
        return False, f"skipped: this torch ({torch.__version__}) has no fp8 _scaled_mm for CPU tensors"
    if device.type != "cuda":
        return False, f"skipped: fp8 matmuls need a CUDA GPU of compute capability 8.9+ (device is {device})"
    cap = torch.cuda.get_device_capability(device)
    if cap < (8, 9):
        return False, f"skipped: fp8 matmuls need compute capability 8.9+ (this GPU is {cap[0]}.{cap[1]})"
    return True, ""


# -- one entry point ---------------------------------------------------------------------------------


@dataclass
class BuiltinSpeed:
    """What :func:`apply_builtin_speed` did, and the handles to reset or undo it."""

    model: MMDiT
    report: SpeedReport
    cache: FirstBlockCache | None = None
    fp8_layers: int = 0
    notes: dict[str, str] = field(default_factory=dict)

    def reset(self, steps: int | None = None) -> None:
        if self.cache is not None:
            self.cache.reset(steps)

    def take_stats(self) -> CacheStats:
        return self.cache.take_stats() if self.cache is not None else CacheStats()

    def undo(self) -> None:
        if self.cache is not None:
            self.cache.uninstall()
            self.cache = None
        if self.fp8_layers:
            disable_fp8(self.model)
            self.fp8_layers = 0
        self.model.__dict__.pop(_HANDLE, None)


def _transformer(target: Any) -> MMDiT:
    model = getattr(target, "transformer", target)
    if not isinstance(model, MMDiT):
        raise TypeError(f"expected the built-in MMDiT or a pipeline holding one, got {type(model).__name__}")
    return model


def apply_builtin_speed(target: Any, options: SpeedOptions, device: torch.device | str | None = None,
                        fp8_cpu_reference: bool = False) -> BuiltinSpeed:
    """Apply the lossy options (first block cache, fp8) of ``options`` to the built-in transformer of
    ``target`` (a BuiltinPipeline or the MMDiT itself), after it is on its device. Replaces whatever
    was applied before. The lossless options (compile, VAE) are for diffusers pipelines and are
    reported as not applied here. ``fp8_cpu_reference``: run fp8 on a CPU too (see the module doc)."""
    model = _transformer(target)
    undo_builtin_speed(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    speed = BuiltinSpeed(model=model, report=SpeedReport("builtin"))

    if options.fp8:
        ok, why = fp8_supported(device, cpu_reference=fp8_cpu_reference)
        if ok:
            speed.fp8_layers = enable_fp8(model)
            where = f"; {why}" if why else ""
            speed.report.add("fp8", True, f"{speed.fp8_layers} Linear layers of the blocks as fp8 e4m3 (lossy){where}")
        else:
            speed.report.add("fp8", False, why)
    else:
        speed.report.add("fp8", False, "not asked for (lossy)")

    fbc = options.first_block_cache
    if fbc is None:
        speed.report.add("first_block_cache", False, "not asked for (lossy)")
    elif len(model.dual) + len(model.single) < 2:
        speed.report.add("first_block_cache", False, "skipped: the model has fewer than 2 blocks")
    else:
        speed.cache = FirstBlockCache(model, float(fbc))
        speed.cache.install()
        speed.report.add("first_block_cache", True, f"threshold {fbc} (lossy; one host sync per step)")
    model.__dict__[_HANDLE] = speed
    return speed


def builtin_speed_of(target: Any) -> BuiltinSpeed | None:
    return _transformer(target).__dict__.get(_HANDLE)


def reset_builtin_caches(target: Any) -> None:
    """Forget per-run cache state; call before each run (a cancelled run leaves residuals behind)."""
    speed = builtin_speed_of(target)
    if speed is not None:
        speed.reset()


def undo_builtin_speed(target: Any) -> None:
    speed = builtin_speed_of(target)
    if speed is not None:
        speed.undo()
