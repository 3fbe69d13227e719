"""Per-family quirks of the diffusers pipelines we run, as one table of frozen dataclasses.

Each :class:`FamilySpec` answers, for one family, the questions the adapter asks:

- **size**: one rule, checked before the pipeline sees the request: sides must be a multiple of
  ``vae_scale_factor * patch`` pixels (FLUX, Qwen-Image, Z-Image: 16; SD3: 16 from its
  transformer's patch size; SDXL: 8), and SD3 has a maximum side of
  ``pos_embed_max_size * patch_size * vae_scale_factor`` pixels. (The pipelines themselves
  disagree: FLUX and Qwen-Image round down with a warning, SD3 and Z-Image raise.)
- **guidance**: how the user's single ``guidance`` number reaches the pipeline (see
  :func:`guidance_kwargs` and the table in docs/architecture.md).
- **text encoding** and **latent → VAE input**: the family's own ``encode_prompt`` and the exact
  unpack/unscale its ``__call__`` does before ``vae.decode`` (diffusers 0.42.1).
- **defaults** (size, steps, guidance) from each model card, with variants told apart by config.
- **scheduler overrides** for ``sampler.shift`` and the Qwen-Image one-step NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import torch

from zaoxiang.engine.pipelines.base import ModelDefaults
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationRequest

Embeds = dict[str, Any]  # keyword arguments for the pipeline's __call__ (prompt_embeds, ...)


@dataclass(frozen=True)
class GuidancePlan:
    """What a request's ``guidance`` becomes for one pipeline call."""

    call_kwargs: dict[str, Any]  # e.g. {"guidance_scale": 3.5} or {"true_cfg_scale": 4.0}
    uses_negative: bool  # whether a negative prompt is encoded and acts on the result
    negative_prompt: str | None  # the text to encode for the negative branch (None = family default)


@dataclass(frozen=True)
class FamilySpec:
    family: str
    # Latent pixels per transformer token side (FLUX/Qwen pack 2x2; None: read transformer.config.patch_size).
    patch: int | None
    max_side_from_pos_embed: bool
    flow_matching: bool  # the scheduler is a flow-matching one, so ``sampler.shift`` applies
    defaults: Callable[[Any, Path], ModelDefaults]
    guidance: Callable[[Any, GenerationRequest], GuidancePlan]
    encode: Callable[[Any, GenerationRequest, GuidancePlan, torch.device], Embeds]
    # latents from ``output_type="latent"`` (fp32) -> the tensor ``vae.decode`` takes
    to_vae_input: Callable[[Any, torch.Tensor, int, int], torch.Tensor]
    # ``vae.decode`` output -> images (B, C, H, W)
    from_vae_output: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    call_kwargs: Callable[[Any], dict[str, Any]] = lambda pipe: {}
    # diffusers' dedicated edit pipelines, built with ``from_pipe`` from the loaded modules. Every
    # family we run has both in diffusers 0.42.1, so none needs the generic latent blending of
    # ``zaoxiang.engine.editing`` (the built-in model uses that). Outpaint runs the inpaint one.
    edit_pipelines: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def size_rule(self, pipe: Any) -> tuple[int, int | None]:
        """(multiple, max_side or None) in pixels for this loaded pipeline."""
        patch = self.patch if self.patch is not None else int(pipe.transformer.config.patch_size)
        multiple = int(pipe.vae_scale_factor) * patch
        max_side = None
        if self.max_side_from_pos_embed:
            pos = pipe.transformer.config.pos_embed_max_size
            max_side = int(pos) * patch * int(pipe.vae_scale_factor) if pos else None
        return multiple, max_side

    def check_size(self, pipe: Any, request: GenerationRequest) -> None:
        multiple, max_side = self.size_rule(pipe)
        for name in ("width", "height"):
            side = getattr(request, name)
            if side % multiple:
                raise InvalidRequest(
                    f"{name} {side} is not a multiple of {multiple}, which {self.family} models need", field=name
                )
            if max_side is not None and side > max_side:
                raise InvalidRequest(
                    f"{name} {side} is over this {self.family} model's maximum of {max_side} pixels "
                    f"(its transformer's pos_embed_max_size)",
                    field=name,
                )


def _no_negative_unless(active: bool, request: GenerationRequest, family: str, why: str) -> None:
    # A negative prompt that would silently do nothing is refused rather than ignored.
    if request.negative_prompt.strip() and not active:
        raise InvalidRequest(f"negative_prompt has no effect with {family} {why}", field="negative_prompt")


# -- FLUX.1 ------------------------------------------------------------------------------------------
# dev is guidance-distilled: ``guidance_scale`` is an embedding fed to the transformer, not CFG,
# so one forward per step. True CFG (``true_cfg_scale`` + negative prompt, two forwards) is not
# used. schnell has no guidance embedding at all and runs 4 steps at guidance 0.


def _flux_distilled(pipe: Any) -> bool:
    return bool(pipe.transformer.config.guidance_embeds)


def _flux_defaults(pipe: Any, path: Path) -> ModelDefaults:
    if _flux_distilled(pipe):
        return ModelDefaults(1024, 1024, 28, 3.5)  # FLUX.1-dev model card
    return ModelDefaults(1024, 1024, 4, 0.0)  # FLUX.1-schnell model card


def _flux_guidance(pipe: Any, request: GenerationRequest) -> GuidancePlan:
    _no_negative_unless(False, request, "FLUX", "(guidance-distilled: zaoxiang does not run true CFG for FLUX)")
    if not _flux_distilled(pipe) and request.guidance:
        raise InvalidRequest(
            f"guidance {request.guidance} has no effect: this FLUX model has no guidance embedding (schnell); use 0",
            field="guidance",
        )
    return GuidancePlan({"guidance_scale": float(request.guidance)}, uses_negative=False, negative_prompt=None)


def _flux_max_len(pipe: Any) -> int:
    return 512 if _flux_distilled(pipe) else 256  # dev / schnell, as their model cards use


def _flux_encode(pipe: Any, request: GenerationRequest, plan: GuidancePlan, device: torch.device) -> Embeds:
    embeds, pooled, _text_ids = pipe.encode_prompt(
        prompt=request.prompt, prompt_2=None, device=device, num_images_per_prompt=1, max_sequence_length=_flux_max_len(pipe)
    )
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}  # (1, L, D), (1, D_pool)


def _flux_to_vae(pipe: Any, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)  # (B, L, C*4) -> (B, C, h, w)
    return latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor


# -- Qwen-Image ----------------------------------------------------------------------------------------
# Real CFG through ``true_cfg_scale``; it only acts with a negative prompt, so " " stands in when
# the user gives none (the model card's own advice). guidance <= 1 runs one forward per step.


def _qwen_guidance(pipe: Any, request: GenerationRequest) -> GuidancePlan:
    cfg = request.guidance > 1.0
    _no_negative_unless(cfg, request, "Qwen-Image", f"at guidance {request.guidance} (CFG needs guidance > 1)")
    kwargs: dict[str, Any] = {"true_cfg_scale": float(request.guidance) if cfg else 1.0}
    return GuidancePlan(kwargs, uses_negative=cfg, negative_prompt=(request.negative_prompt or " ") if cfg else None)


def _qwen_encode(pipe: Any, request: GenerationRequest, plan: GuidancePlan, device: torch.device) -> Embeds:
    embeds, mask = pipe.encode_prompt(prompt=request.prompt, device=device, num_images_per_prompt=1)
    out: Embeds = {"prompt_embeds": embeds, "prompt_embeds_mask": mask}  # (1, L, D), (1, L) or None
    if plan.uses_negative:
        neg, neg_mask = pipe.encode_prompt(prompt=plan.negative_prompt, device=device, num_images_per_prompt=1)
        out |= {"negative_prompt_embeds": neg, "negative_prompt_embeds_mask": neg_mask}
    return out


def _qwen_to_vae(pipe: Any, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)  # (B, C, 1, h, w)
    cfg = pipe.vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    std = torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    return latents * std + mean


# -- Z-Image -------------------------------------------------------------------------------------------
# ``guidance_scale`` g gives pred = cond + g * (cond - uncond): 0 turns CFG off (Turbo), and g
# equals the usual CFG scale minus one. Turbo is told apart from base Z-Image by its name: the
# folder name or its model card (README.md) mentions "turbo".


def _named_turbo(path: Path) -> bool:
    """Distilled "Turbo" checkpoints share their base model's configs; only the name tells them apart."""
    if "turbo" in path.name.lower():
        return True
    card = path / "README.md"
    if card.is_file():
        with card.open(encoding="utf-8", errors="replace") as fh:
            return "turbo" in fh.read(8192).lower()
    return False


def _z_image_defaults(pipe: Any, path: Path) -> ModelDefaults:
    if _named_turbo(path):
        return ModelDefaults(1024, 1024, 9, 0.0)  # Z-Image-Turbo model card
    return ModelDefaults(1024, 1024, 50, 4.0)  # base Z-Image: 50 steps, CFG on


def _z_image_guidance(pipe: Any, request: GenerationRequest) -> GuidancePlan:
    cfg = request.guidance > 0.0
    _no_negative_unless(cfg, request, "Z-Image", "at guidance 0 (CFG is off)")
    return GuidancePlan({"guidance_scale": float(request.guidance)}, uses_negative=cfg, negative_prompt=request.negative_prompt)


def _z_image_encode(pipe: Any, request: GenerationRequest, plan: GuidancePlan, device: torch.device) -> Embeds:
    embeds, neg = pipe.encode_prompt(
        prompt=request.prompt, device=device, do_classifier_free_guidance=plan.uses_negative,
        negative_prompt=plan.negative_prompt if plan.uses_negative else None,
    )
    # Lists of (L_i, D) tensors: Z-Image keeps each prompt at its own unpadded length.
    return {"prompt_embeds": embeds, "negative_prompt_embeds": neg if plan.uses_negative else None}


def _shift_scale_to_vae(pipe: Any, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor  # (B, C, h, w)


# -- SD3 / SDXL ----------------------------------------------------------------------------------------
# Plain CFG through ``guidance_scale``; active above 1, where the pipeline doubles the batch.
# SD3 variants differ in their model cards' settings and are told apart by transformer config.


def _sd3_defaults(pipe: Any, path: Path) -> ModelDefaults:
    cfg = pipe.transformer.config
    if _named_turbo(path):
        return ModelDefaults(1024, 1024, 4, 0.0)  # SD3.5 Large Turbo
    if cfg.dual_attention_layers:
        return ModelDefaults(1024, 1024, 40, 4.5)  # SD3.5 Medium (MMDiT-X)
    if cfg.num_layers >= 38:
        return ModelDefaults(1024, 1024, 28, 3.5)  # SD3.5 Large
    return ModelDefaults(1024, 1024, 28, 7.0)  # SD3 Medium


def _cfg_guidance(family: str) -> Callable[[Any, GenerationRequest], GuidancePlan]:
    def plan(pipe: Any, request: GenerationRequest) -> GuidancePlan:
        cfg = request.guidance > 1.0
        _no_negative_unless(cfg, request, family, f"at guidance {request.guidance} (CFG needs guidance > 1)")
        return GuidancePlan({"guidance_scale": float(request.guidance)}, uses_negative=cfg, negative_prompt=request.negative_prompt or None)

    return plan


def _sd3_encode(pipe: Any, request: GenerationRequest, plan: GuidancePlan, device: torch.device) -> Embeds:
    pe, npe, pooled, npooled = pipe.encode_prompt(
        prompt=request.prompt, prompt_2=None, prompt_3=None, device=device, num_images_per_prompt=1,
        do_classifier_free_guidance=plan.uses_negative, negative_prompt=plan.negative_prompt or "",
    )
    return {"prompt_embeds": pe, "negative_prompt_embeds": npe, "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": npooled}


def _sdxl_encode(pipe: Any, request: GenerationRequest, plan: GuidancePlan, device: torch.device) -> Embeds:
    # negative_prompt None lets SDXL use zero embeddings (force_zeros_for_empty_prompt), as it would itself.
    pe, npe, pooled, npooled = pipe.encode_prompt(
        prompt=request.prompt, device=device, num_images_per_prompt=1,
        do_classifier_free_guidance=plan.uses_negative, negative_prompt=plan.negative_prompt,
    )
    return {"prompt_embeds": pe, "negative_prompt_embeds": npe, "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": npooled}


def _sdxl_to_vae(pipe: Any, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    cfg = pipe.vae.config
    if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None) is not None:
        mean = torch.tensor(cfg.latents_mean).view(1, 4, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(cfg.latents_std).view(1, 4, 1, 1).to(latents.device, latents.dtype)
        return latents * std / cfg.scaling_factor + mean
    return latents / cfg.scaling_factor


def _edits(img2img: str, inpaint: str) -> MappingProxyType[str, str]:
    return MappingProxyType({"img2img": img2img, "inpaint": inpaint})


FAMILIES: MappingProxyType[str, FamilySpec] = MappingProxyType(
    {
        "flux": FamilySpec(
            "flux",
            edit_pipelines=_edits("FluxImg2ImgPipeline", "FluxInpaintPipeline"),
            patch=2, max_side_from_pos_embed=False, flow_matching=True, defaults=_flux_defaults,
            guidance=_flux_guidance, encode=_flux_encode, to_vae_input=_flux_to_vae,
            call_kwargs=lambda pipe: {"max_sequence_length": _flux_max_len(pipe)},
        ),
        "qwen-image": FamilySpec(
            "qwen-image",
            edit_pipelines=_edits("QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"),
            patch=2, max_side_from_pos_embed=False, flow_matching=True,
            # Model card: 50 steps, true CFG 4, and 1328x1328 as the recommended 1:1 size.
            defaults=lambda pipe, path: ModelDefaults(1328, 1328, 50, 4.0),
            guidance=_qwen_guidance, encode=_qwen_encode, to_vae_input=_qwen_to_vae,
            from_vae_output=lambda x: x[:, :, 0],  # (B, C, T=1, H, W) -> (B, C, H, W)
        ),
        "z-image": FamilySpec(
            "z-image",
            edit_pipelines=_edits("ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
            patch=2, max_side_from_pos_embed=False, flow_matching=True, defaults=_z_image_defaults,
            guidance=_z_image_guidance, encode=_z_image_encode, to_vae_input=_shift_scale_to_vae,
        ),
        "sd3": FamilySpec(
            "sd3",
            edit_pipelines=_edits("StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"),
            patch=None, max_side_from_pos_embed=True, flow_matching=True,
            defaults=_sd3_defaults,
            guidance=_cfg_guidance("SD3"), encode=_sd3_encode, to_vae_input=_shift_scale_to_vae,
        ),
        "sdxl": FamilySpec(
            "sdxl",
            edit_pipelines=_edits("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
            patch=1, max_side_from_pos_embed=False, flow_matching=False,
            defaults=lambda pipe, path: ModelDefaults(1024, 1024, 30, 5.0),
            guidance=_cfg_guidance("SDXL"), encode=_sdxl_encode, to_vae_input=_sdxl_to_vae,
        ),
    }
)


def family_spec(family: str) -> FamilySpec:
    try:
        return FAMILIES[family]
    except KeyError:
        raise InvalidRequest(f"no diffusers adapter for model family {family!r}", field="model") from None


def scheduler_overrides(spec: FamilySpec, scheduler_config: Any, request: GenerationRequest) -> dict[str, Any]:
    """Config changes for this request's scheduler (applied to a fresh copy, never the original)."""
    overrides: dict[str, Any] = {}
    shift = request.sampler.shift
    if shift is not None:
        if not spec.flow_matching:
            raise InvalidRequest(
                f"sampler.shift applies to flow-matching models; {spec.family} uses a noise-prediction scheduler",
                field="sampler.shift",
            )
        # A user's shift replaces the resolution-dependent (dynamic) shift, as in SD3.
        overrides |= {"shift": float(shift), "use_dynamic_shifting": False}
    if request.steps == 1 and scheduler_config.get("shift_terminal"):
        # With one step, stretch_shift_to_terminal divides 0 by 0 (NaN sigmas: Qwen-Image's real
        # config). A single step always goes from sigma 1 to 0, so the stretch has nothing to do.
        overrides["shift_terminal"] = None
    return overrides
