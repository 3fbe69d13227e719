"""One adapter that runs any supported diffusers pipeline (FLUX, Qwen-Image, Z-Image, SD3, SDXL).

The pipeline's own ``__call__`` runs the denoising loop (so its scheduler handling, CFG and
position ids are exactly what the model authors ship), but the adapter owns the phases around it:

1. **text encode**: once per request, through the pipeline's own ``encode_prompt``;
2. **denoise**: ``__call__`` with the embeddings, ``output_type="latent"`` and a
   ``callback_on_step_end`` that calls ``ctx.step`` (progress + cancel, within one step);
3. **decode**: the family's exact unpack/unscale, then ``vae.decode`` under
   :func:`guarded_decode` (NaN/black guard, one fp32 retry) and the memory plan (tiling, OOM retry).

Images are generated one at a time, each from its own generator seeded ``seeds[i]``: image i is
then bit-identical whatever ``n`` is (a batch of two takes other kernel paths than a batch of one,
on GPUs especially), a request can be split or cached per image, and peak memory does not grow
with ``n``. Progress counts steps over the whole request: ``n * steps`` events.

Family differences (sizes, guidance, encoding, latent scaling, defaults) live in ``families.py``.
"""

from __future__ import annotations

import copy
import inspect
import logging
from typing import Any

import torch

from zaoxiang.engine.editing import EditPlan, plan_edit
from zaoxiang.engine.memory import MemoryPlan, decode_with_memory_plan, place_pipeline, plan_memory
from zaoxiang.engine.pipelines.base import LoadedPipeline, ModelDefaults, RunContext
from zaoxiang.engine.pipelines.families import FamilySpec, family_spec, scheduler_overrides
from zaoxiang.engine.pixels import postprocess_pil
from zaoxiang.engine.precision import PrecisionPolicy, check_latents, guarded_decode
from zaoxiang.engine.prompt_weighting import weighted_encode
from zaoxiang.engine.registry import ModelEntry, folder_revision
from zaoxiang.engine.speed import SpeedReport, apply_deferred_vae, apply_speed, options_for_profile, reset_step_caches
from zaoxiang.errors import GenerationFailed, InvalidRequest, ModelLoadError
from zaoxiang.protocol import GenerationRequest, ModelIdentity
from zaoxiang.settings import EngineSettings

log = logging.getLogger(__name__)


def load_diffusers_pipeline(entry: ModelEntry, policy: PrecisionPolicy, settings: EngineSettings) -> "DiffusersPipeline":
    """Load a diffusers folder on the policy's device and dtype, offline, placed per the memory plan."""
    import diffusers  # heavy import, only when a model is actually loaded

    spec = family_spec(entry.family)
    cls = getattr(diffusers, entry.pipeline_class, None)
    if cls is None:
        raise ModelLoadError(f"diffusers {diffusers.__version__} has no {entry.pipeline_class}", field="model")
    kwargs: dict[str, Any] = {"dtype": policy.dtype, "local_files_only": True}
    if entry.family == "sdxl":
        # The invisible watermark would change outputs silently when its package is installed.
        kwargs["add_watermarker"] = False
    try:
        pipe = cls.from_pretrained(entry.path, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load {entry.pipeline_class} from {entry.path}: {exc}", field="model") from exc
    pipe.set_progress_bar_config(disable=True)
    plan = plan_memory(settings.memory_mode, policy.device, settings.vae_tiling_pixels)
    place_pipeline(pipe, plan, policy.device)
    # After placement: compiled graphs and fp8 buffers must be built on the device they run on.
    speed = apply_speed(pipe, entry.family, options_for_profile(settings.speed), policy.device,
                        defer_vae=settings.compile_vae_at == "idle")
    log.info("speed profile %s for %s: %s", settings.speed, entry.name, speed.summary())
    identity = ModelIdentity(name=entry.name, family=entry.family, revision=folder_revision(entry.path), source=str(entry.path))
    return DiffusersPipeline(pipe, spec, identity, policy, plan, spec.defaults(pipe, entry.path), speed=speed)


class DiffusersPipeline(LoadedPipeline):
    edit_modes = frozenset({"img2img", "inpaint", "outpaint"})

    def __init__(
        self,
        pipe: Any,
        spec: FamilySpec,
        identity: ModelIdentity,
        policy: PrecisionPolicy,
        memory: MemoryPlan,
        defaults: ModelDefaults,
        speed: SpeedReport | None = None,
    ) -> None:
        self.pipe = pipe
        self.speed = speed  # what apply_speed did at load (None: nothing was applied)
        self.spec = spec
        self.identity = identity
        self.defaults = defaults
        self.policy = policy
        self.memory = memory
        # Each run gets a fresh scheduler from this config: schedulers keep per-run state, and
        # a cancelled run must leave nothing behind.
        self._scheduler = pipe.scheduler
        self._scheduler_config = copy.deepcopy(dict(pipe.scheduler.config))
        self._size: tuple[int, int] | None = None  # (height, width) of the run in progress, for previews
        self._edit_pipes: dict[str, Any] = {}  # "img2img" / "inpaint" -> pipeline sharing self.pipe's modules

    # -- checks -----------------------------------------------------------------------------------

    @property
    def compiled(self) -> bool:  # type: ignore[override]
        return self.speed is not None and (self.speed.applied("compile_blocks") or self.speed.applied("compile_vae"))

    @property
    def deferred_speed(self) -> bool:  # type: ignore[override]
        return self.speed is not None and self.speed.deferred_vae is not None

    def apply_deferred_speed(self) -> bool:
        if self.speed is None or not apply_deferred_vae(self.pipe, self.policy.device, self.speed):
            return False
        log.info("speed for %s after deferral: %s", self.identity.name, self.speed.summary())
        return True

    def validate(self, request: GenerationRequest) -> None:
        self.spec.check_size(self.pipe, request)
        if request.edit is not None and request.edit.mode != "img2img" and self.spec.family == "sd3":
            channels = int(self.pipe.transformer.config.in_channels)
            if channels not in (16, 33):  # what StableDiffusion3InpaintPipeline accepts
                raise InvalidRequest(
                    f"{request.edit.mode} needs an SD3 transformer with 16 latent channels (this one has {channels})",
                    field="edit.mode",
                )
        if request.edit is not None and request.steps is not None and not self.spec.flow_matching:
            strength = request.edit.effective_strength
            # SDXL's get_timesteps rounds steps * strength down; 0 steps would fail inside diffusers.
            if strength > 0 and int(int(request.steps) * strength) < 1:
                raise InvalidRequest(
                    f"strength {strength} with {request.steps} steps runs no denoising step on {self.spec.family}; "
                    "raise steps or strength (strength 0 returns the input)",
                    field="edit.strength",
                )
        self.spec.guidance(self.pipe, request)  # raises on a guidance/negative prompt that would do nothing
        scheduler_overrides(self.spec, self._scheduler_config, request)

    def lora_target(self) -> Any:
        from zaoxiang.engine.lora import DiffusersLoraTarget

        return DiffusersLoraTarget(self.pipe, self.spec.family)

    # -- run --------------------------------------------------------------------------------------

    def generate(self, ctx: RunContext) -> list[Any]:
        req = ctx.request
        self.validate(req)
        width, height, steps = int(req.width), int(req.height), int(req.steps)
        plan = self.spec.guidance(self.pipe, req)
        self._size = (height, width)
        device = self.pipe._execution_device
        memory = plan_memory(ctx.memory_mode, self.policy.device, ctx.vae_tiling_pixels)
        edit = plan_edit(req, ctx.inputs) if req.edit is not None else None
        if edit is not None and edit.strength == 0.0:
            return edit.unchanged(len(ctx.seeds))  # no step to run: the input, exactly
        try:
            with ctx.timer.phase("text_encode"), torch.inference_mode():
                embeds = self._encode(req, device)
            images = []
            for index, seed in enumerate(ctx.seeds):
                with ctx.timer.phase("denoise"):
                    latents = self._denoise(ctx, embeds, plan.call_kwargs, seed, index, width, height, steps, edit)
                with ctx.timer.phase("decode"):
                    decoded = self._decode(latents, width, height, memory)
                if edit is not None:
                    decoded = [edit.finish(im) for im in decoded]  # composite over the canvas
                images.extend(decoded)
            return images
        except torch.OutOfMemoryError as exc:
            raise GenerationFailed(
                f"out of device memory at {width}x{height} (memory_mode={ctx.memory_mode}); try a smaller size, "
                "memory_mode=model_offload or memory_mode=sequential_offload",
                code="out_of_memory",
            ) from exc
        except (ValueError, RuntimeError) as exc:
            # A pipeline that rejects or breaks on a validated request is our bug or a broken model
            # folder; either way the caller gets a coded error, not a stack trace.
            raise GenerationFailed(f"the {self.spec.family} pipeline failed: {exc}", code="pipeline_failed") from exc
        finally:
            self.pipe.scheduler = self._scheduler
            for edit_pipe in self._edit_pipes.values():
                edit_pipe.scheduler = self._scheduler

    def _encode(self, req: GenerationRequest, device: torch.device) -> dict[str, Any]:
        """The family's own encode, with A1111 weights applied to the token states when the prompt
        (or negative prompt) uses the syntax; otherwise exactly the family's encode."""

        def encode(prompt: str, negative: str) -> dict[str, Any]:
            r = req.model_copy(update={"prompt": prompt, "negative_prompt": negative})
            return self.spec.encode(self.pipe, r, self.spec.guidance(self.pipe, r), device)

        return weighted_encode(self.spec.family, self.pipe, encode, req.prompt, req.negative_prompt)

    def _denoise(
        self,
        ctx: RunContext,
        embeds: dict[str, Any],
        guidance_kwargs: dict[str, Any],
        seed: int,
        index: int,
        width: int,
        height: int,
        steps: int,
        edit: EditPlan | None = None,
    ) -> torch.Tensor:
        pipe = self.pipe if edit is None else self._edit_pipe(edit.mode)
        pipe.scheduler = self._fresh_scheduler(ctx.request)
        # A cancelled run leaves First Block Cache residuals / a CFG pair behind: never reuse them.
        reset_step_caches(pipe)
        n = len(ctx.seeds)

        def on_step_end(pipe: Any, i: int, t: torch.Tensor, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            # An edit runs only the tail of the schedule: the pipeline knows how many steps that is.
            run = int(getattr(pipe, "num_timesteps", None) or steps)
            # Raises Cancelled, which unwinds out of the pipeline's loop: nothing else runs.
            ctx.step(run * index + i + 1, run * n, tensors.get("latents"))
            return {}

        edit_kwargs: dict[str, Any] = {}
        if edit is not None:
            edit_kwargs = {"image": edit.canvas, "strength": edit.strength}
            if edit.repaint is not None:
                edit_kwargs["mask_image"] = edit.repaint
        # Generators live on the CPU so a seed gives the same noise on every device kind.
        generator = torch.Generator("cpu").manual_seed(seed)
        call_kwargs = {
            **embeds,
            **guidance_kwargs,
            **self.spec.call_kwargs(self.pipe),
            **edit_kwargs,
            "height": height,
            "width": width,
        }
        if edit is not None:
            # SDXL's img2img takes its size from the image; keep only what this __call__ accepts.
            accepted = inspect.signature(pipe.__call__).parameters
            call_kwargs = {k: v for k, v in call_kwargs.items() if k in accepted}
        with torch.inference_mode():
            out = pipe(
                **call_kwargs,
                num_inference_steps=steps,
                generator=generator,
                output_type="latent",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
                return_dict=False,
            )
        return out[0]

    def _edit_pipe(self, mode: str) -> Any:
        """The family's dedicated img2img or inpaint pipeline (outpaint = inpaint on the padded
        canvas), built once from the loaded modules with ``from_pipe``: no weights are reloaded."""
        kind = "img2img" if mode == "img2img" else "inpaint"
        if kind not in self._edit_pipes:
            import diffusers

            name = self.spec.edit_pipelines[kind]
            cls = getattr(diffusers, name)
            extra = {"add_watermarker": False} if self.spec.family == "sdxl" else {}
            edit_pipe = cls.from_pipe(self.pipe, **extra)
            edit_pipe.set_progress_bar_config(disable=True)
            self._edit_pipes[kind] = edit_pipe
        return self._edit_pipes[kind]

    def _fresh_scheduler(self, request: GenerationRequest) -> Any:
        overrides = scheduler_overrides(self.spec, self._scheduler_config, request)
        cls = type(self._scheduler)
        if request.sampler.name == "euler":
            from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

            cls = FlowMatchEulerDiscreteScheduler if self.spec.flow_matching else EulerDiscreteScheduler
        if overrides:
            log.info("scheduler overrides for this request: %s", overrides)
        return cls.from_config({**self._scheduler_config, **overrides})

    def _decode(self, latents: torch.Tensor, width: int, height: int, memory: MemoryPlan) -> list[Any]:
        check_latents(latents)  # fail on NaN before spending a decode
        vae = self.pipe.vae
        # Unpack/unscale in fp32: these are the exact steps the family's __call__ takes before decoding.
        vae_input = self.spec.to_vae_input(self.pipe, latents.float(), height, width)

        def decode(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            restore = vae.dtype
            if restore != dtype:
                vae.to(dtype)
            try:
                with torch.inference_mode():
                    out = decode_with_memory_plan(
                        lambda: vae.decode(x.to(dtype), return_dict=False)[0], vae, memory, width, height
                    )
                return self.spec.from_vae_output(out).float()  # (B, 3, H, W) in [-1, 1]
            finally:
                if restore != dtype:
                    vae.to(restore)

        images = guarded_decode(decode, vae_input, self.policy)
        return postprocess_pil(self.pipe.image_processor, images)

    def preview(self, latents: torch.Tensor) -> Any:
        """False-colour view of in-progress latents at latent resolution (1/8 of the image side).

        The first three latent channels, each stretched to 0..255: no decode, so it costs
        microseconds, and it shows composition, not colour. Per-channel stretching makes it the same
        for every family's latent scaling.
        """
        from PIL import Image

        if self._size is None or latents is None:
            return None
        with torch.no_grad():
            x = self.spec.to_vae_input(self.pipe, latents[:1].float(), *self._size)
            if x.ndim == 5:
                x = x[:, :, 0]  # (1, C, T=1, h, w) -> (1, C, h, w)
            rgb = x[0, :3].cpu()  # (3, h, w)
            lo = rgb.amin(dim=(1, 2), keepdim=True)
            hi = rgb.amax(dim=(1, 2), keepdim=True)
            rgb = ((rgb - lo) / (hi - lo).clamp_min(1e-6) * 255).round().to(torch.uint8)
        return Image.fromarray(rgb.permute(1, 2, 0).numpy())  # (h, w, 3) uint8 -> RGB

    # -- lifecycle -----------------------------------------------------------------------------------

    def unload(self) -> None:
        if hasattr(self.pipe, "remove_all_hooks"):
            self.pipe.remove_all_hooks()
        self.pipe.to("cpu")
        self.pipe = None
        self._edit_pipes.clear()
