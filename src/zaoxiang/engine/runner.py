"""The runner: the one object that owns a device.

It loads a pipeline once and keeps it warm (LRU of ``warm_models``), resolves a request's
defaults against the model, runs it with one per-step hook that reports progress and honours
cancellation, and returns a typed ``GenerationResult`` with per-phase timings.

Only one thread may drive a runner at a time; ``run`` holds a lock so a second caller waits
rather than sharing the GPU.
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
import time
from collections import OrderedDict
from typing import Callable

import torch

from zaoxiang.engine.lora import LoraLibrary, applied_loras
from zaoxiang.engine.pipelines.base import LoadedPipeline, PhaseTimer, RunContext
from zaoxiang.engine.precision import PrecisionPolicy, resolve_device
from zaoxiang.engine.previews import PreviewThrottle
from zaoxiang.engine.registry import ModelEntry, ModelRegistry
from zaoxiang.engine.speed import profile_cache_suffix, use_compile_cache, warm_up
from zaoxiang.errors import Cancelled, InvalidRequest, ModelLoadError, ZaoxiangError
from zaoxiang.protocol import GenerationRequest, GenerationResult, Limits, ModelIdentity, ProgressEvent
from zaoxiang.settings import EngineSettings

log = logging.getLogger(__name__)

Loader = Callable[[ModelEntry, PrecisionPolicy, EngineSettings], LoadedPipeline]
ProgressFn = Callable[[ProgressEvent], None]
InputsFn = Callable[[str], bytes]  # content key of a stored edit input -> its bytes

# Random seeds stay below 2**32 so every client (JavaScript included) can show them exactly.
RANDOM_SEED_LIMIT = 2**32
# Warm-up runs this many steps per size: the compiled graphs do not depend on the step count.
WARM_UP_STEPS = 2


def default_loader(entry: ModelEntry, policy: PrecisionPolicy, settings: EngineSettings) -> LoadedPipeline:
    # Imported here: loading diffusers/transformers costs seconds and only matters once a model runs.
    if entry.kind == "builtin":
        from zaoxiang.model.pipeline import load_builtin

        return load_builtin(entry, policy, settings)
    from zaoxiang.engine.pipelines.diffusers_adapter import load_diffusers_pipeline

    return load_diffusers_pipeline(entry, policy, settings)


class Runner:
    def __init__(
        self,
        registry: ModelRegistry,
        settings: EngineSettings | None = None,
        limits: Limits | None = None,
        loader: Loader = default_loader,
        loras: LoraLibrary | None = None,
    ) -> None:
        self.registry = registry
        # Named LoRA adapters requests may use; always knows each model's own turbo adapter.
        self.loras = loras or LoraLibrary()
        self.settings = settings or EngineSettings()
        self.limits = limits or Limits()
        self.policy = PrecisionPolicy.for_device(resolve_device(self.settings.device))
        self._loader = loader
        self._warm: OrderedDict[str, tuple[LoadedPipeline, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._upscalers: dict[int, object] = {}  # factor -> warm Real-ESRGAN upscaler

    # -- models ---------------------------------------------------------------------------------

    def warm_models(self) -> list[str]:
        return list(self._warm)

    def load(self, name: str | None) -> tuple[LoadedPipeline, float]:
        """The warm pipeline for ``name`` and the seconds spent loading it now (0 if warm)."""
        entry = self.registry.get(name)
        if entry.name in self._warm:
            self._warm.move_to_end(entry.name)
            return self._warm[entry.name][0], 0.0
        while len(self._warm) >= self.settings.warm_models:
            old_name, (old, _) = self._warm.popitem(last=False)
            log.info("unloading %s to make room for %s", old_name, entry.name)
            old.unload()
            if self.policy.device.type == "cuda":
                torch.cuda.empty_cache()
        start = time.perf_counter()
        if self.settings.speed != "stock":  # the profiles that compile: cache it where restarts find it
            use_compile_cache(self.settings.compile_cache_dir)
        try:
            pipe = self._loader(entry, self.policy, self.settings)
        except ZaoxiangError:
            raise
        except Exception as exc:  # a broken folder must not take the process down
            raise ModelLoadError(f"could not load model {entry.name!r} from {entry.path}: {exc}", field="model") from exc
        if pipe.compiled and self.settings.warm_up_sizes:
            self._warm_up(entry, pipe)
        load_s = time.perf_counter() - start
        log.info("loaded %s (%s) on %s in %.2fs", entry.name, entry.family, self.policy.device, load_s)
        self._warm[entry.name] = (pipe, load_s)
        return pipe, load_s

    def _warm_up(self, entry: ModelEntry, pipe: LoadedPipeline) -> None:
        """One short run per ``engine.warm_up_sizes`` entry, so compiling a size happens now.

        A size the model refuses (e.g. not a multiple of its patch) is logged and skipped: the
        model still serves, and a request at that size gets the model's own error.
        """
        sizes = [(pipe.defaults.width, pipe.defaults.height) if size == "default" else
                 tuple(int(v) for v in size.split("x")) for size in self.settings.warm_up_sizes]

        def run_once(width: int, height: int) -> None:
            request = GenerationRequest(prompt="warm-up", model=entry.name, width=width, height=height,
                                        steps=WARM_UP_STEPS, seed=0)
            try:
                resolved = self.resolve(request, pipe)
                pipe.generate(self._context(resolved, lambda i, total, latents: None))
            except ZaoxiangError as exc:
                log.warning("warm-up of %s at %dx%d skipped: %s", entry.name, width, height, exc)

        warm_up(run_once, dict.fromkeys(sizes))  # each size once, in order; logs the seconds per size

    def idle(self) -> bool:
        """Finish deferred speed work of the warm pipelines (engine.compile_vae_at = "idle"): apply
        it, then warm up again so the compile happens now rather than in the next request. The
        worker calls this when it finds no job; a job that arrives meanwhile waits for it. True
        when anything was done."""
        with self._lock:
            pending = [(name, pipe) for name, (pipe, _) in self._warm.items() if pipe.deferred_speed]
            for name, pipe in pending:
                start = time.perf_counter()
                if pipe.apply_deferred_speed():
                    if self.settings.warm_up_sizes:
                        self._warm_up(self.registry.get(name), pipe)
                    log.info("deferred speed work for %s done in %.1f s", name, time.perf_counter() - start)
            return bool(pending)

    def _context(self, resolved: GenerationRequest, step, inputs: InputsFn | None = None) -> RunContext:
        return RunContext(
            request=resolved,
            seeds=[resolved.seed + i for i in range(resolved.n)],
            step=step,
            precision=self.policy,
            timer=PhaseTimer(self.policy.device),
            memory_mode=self.settings.memory_mode,
            vae_tiling_pixels=self.settings.vae_tiling_pixels,
            inputs=inputs,
        )

    @property
    def cache_dtype(self) -> str:
        """The dtype string of the cache key: compute dtype, plus the speed profile when it changes pixels."""
        return self.policy.dtype_name + profile_cache_suffix(self.settings.speed)

    def identity(self, entry: ModelEntry) -> ModelIdentity:
        source = "builtin" if entry.kind == "builtin" else str(entry.path)
        return ModelIdentity(name=entry.name, family=entry.family, revision=self.registry.revision(entry), source=source)

    # -- requests -------------------------------------------------------------------------------

    def resolve(self, request: GenerationRequest, pipe: LoadedPipeline | None = None) -> GenerationRequest:
        """Fill the model's defaults and a random seed; validate family rules. Loads the model."""
        self.limits.check(request)
        entry = self.registry.get(request.model)
        pipe = pipe or self.load(entry.name)[0]
        d = pipe.defaults
        # LoRA names -> content hashes (in the cache key); turbo adds its adapter, steps and guidance.
        loras, turbo = self.loras.resolve(request, entry.path, entry.name)
        steps = turbo.steps if turbo is not None else d.steps
        guidance = turbo.guidance if turbo is not None else d.guidance
        resolved = request.model_copy(
            update={
                "model": entry.name,
                "loras": loras,
                "width": request.width or d.width,
                "height": request.height or d.height,
                "steps": request.steps or steps,
                "guidance": guidance if request.guidance is None else request.guidance,
                "seed": secrets.randbelow(RANDOM_SEED_LIMIT) if request.seed is None else request.seed,
            }
        )
        self.limits.check(resolved)
        if resolved.upscale:
            from zaoxiang.engine.upscale import check_upscale  # torch-only module, loaded when used

            check_upscale(int(resolved.width), int(resolved.height), resolved.upscale)
        if resolved.edit is not None:
            from zaoxiang.engine.editing import check_edit

            if resolved.edit.mode not in pipe.edit_modes:
                raise InvalidRequest(f"model {entry.name!r} cannot run {resolved.edit.mode} edits", field="edit.mode")
            check_edit(resolved)
        pipe.validate(resolved)
        return resolved

    def run(
        self,
        request: GenerationRequest,
        on_progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        previews: bool = False,
        inputs: InputsFn | None = None,
    ) -> GenerationResult:
        """Run one request to completion, or raise Cancelled / a ZaoxiangError. ``inputs`` reads
        the stored image/mask of an edit request by content key."""
        with self._lock:
            start = time.perf_counter()
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled before it started")
            entry = self.registry.get(request.model)
            pipe, load_s = self.load(entry.name)
            resolved = self.resolve(request, pipe)
            seeds = [resolved.seed + i for i in range(resolved.n)]

            throttle = PreviewThrottle()

            def step(i: int, total: int, latents: torch.Tensor | None) -> None:
                # The single per-step hook: cancel is checked here, so it acts within one step.
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"cancelled at step {i} of {total}")
                if on_progress is not None:
                    preview = None
                    if previews and latents is not None and throttle.due(i, total):
                        preview = throttle.timed(lambda: _png(pipe.preview(latents)))
                    on_progress(ProgressEvent(step=i, total=total, preview=preview))

            ctx = self._context(resolved, step, inputs)
            timer = ctx.timer
            adapters = self.loras.activate(resolved.loras, entry.path, entry.name)
            with applied_loras(pipe, adapters):  # the base model is restored however the run ends
                images = pipe.generate(ctx)
            extras: dict[str, float] = {}
            if resolved.upscale:
                up_start = time.perf_counter()
                images = self.upscaler(resolved.upscale).upscale_images(images)
                extras["upscale_s"] = round(time.perf_counter() - up_start, 4)
            total_s = time.perf_counter() - start
            return GenerationResult(
                images=images,
                seeds=seeds,
                request=resolved,
                model=self.identity(entry),
                timings=timer.timings(load_s=load_s, total_s=total_s),
                dtype=self.policy.dtype_name,
                device=str(self.policy.device),
                extras={"timings_extra": extras} if extras else {},
            )

    def upscaler(self, factor: int):
        """The warm Real-ESRGAN upscaler for ``factor`` (loaded on first use, on this device)."""
        if factor not in self._upscalers:
            from zaoxiang.engine.upscale import load_upscaler

            self._upscalers[factor] = load_upscaler(factor, self.policy)
        return self._upscalers[factor]


def _png(image: object | None) -> bytes | None:
    if image is None:
        return None
    buf = io.BytesIO()
    image.save(buf, format="PNG")  # type: ignore[attr-defined]
    return buf.getvalue()
