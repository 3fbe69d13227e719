"""Two-stage trainer for the built-in model.

Stage ``ae``: the autoencoder on images (L1 + image-gradient L1 + a tiny KL). At the end it
measures per-channel latent statistics and stores them in the model.
Stage ``dit``: the MMDiT on the frozen autoencoder's normalised latents and the frozen text
encoder's token states: rectified-flow velocity loss, logit-normal t, caption dropout (empty
caption) for classifier-free guidance.

Both stages: AdamW with linear warm-up, bf16 autocast on CUDA (fp32 on CPU), EMA, gradient
clipping, ``torch.compile`` on CUDA, atomic resumable checkpoints, a tqdm bar, a JSON-lines
metrics log (``metrics.jsonl``) and periodic sample grids (``samples/step-N.png``).

This module must not import ``zaoxiang.protocol``/``settings``/diffusers: the GPU machine has
neither pydantic nor diffusers.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from zaoxiang.model.autoencoder import Autoencoder, kl_loss
from zaoxiang.model.config import ModelConfig, preset
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.sampler import denoise, pad_text
from zaoxiang.model.serialization import has_weights, load_weights
from zaoxiang.model.text_encoder import E5TextEncoder
from zaoxiang.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from zaoxiang.training.distributed import DistContext, average_gradients, barrier
from zaoxiang.training.ema import EMA
from zaoxiang.training.loop import STOP_FILE, LoopConfig, run_loop

log = logging.getLogger(__name__)

Stage = Literal["ae", "dit"]

# Fixed prompts for the periodic sample grids (both languages).
GRID_PROMPTS = (
    "a red apple", "一只红苹果", "a cat face, 3D style", "猫脸，3D风格",
    "a rocket on the left and a house on the right, blue background", "左边一个苹果，右边一只狗，黄色背景",
    "three stars, white background", '霓虹灯牌写着"营业"',
)


class TextEncoder(Protocol):
    feature_dim: int  # width of encode()'s per-token features

    def encode(self, texts: list[str], max_length: int = 64) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class TrainConfig:
    stage: Stage
    out: Path
    steps: int
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 500
    cooldown: int = 0  # steps of linear decay to zero at the end (lr_factor); 0: constant after warm-up
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    caption_dropout: float = 0.1  # dit: share of captions replaced by "" (the CFG unconditional)
    logit_mean: float = 0.0  # dit: t = sigmoid(N(mean, std))
    logit_std: float = 1.0
    kl_weight: float = 1e-6  # ae
    grad_weight: float = 0.5  # ae: L1 on image gradients keeps edges sharp (no LPIPS offline)
    log_every: int = 10
    ckpt_every: int = 1000
    sample_every: int = 1000
    keep_every: int = 0  # also keep step-N.pt every this many steps (0: only latest.pt)
    compile: bool | None = None  # None: on CUDA only
    stats_batches: int = 8  # ae: batches used to measure latent statistics at the end
    grid_steps: int = 28
    grid_guidance: float = 4.0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.stage not in ("ae", "dit"):
            raise ValueError(f"stage must be 'ae' or 'dit', got {self.stage!r}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be ≥ 0 and batch_size ≥ 1")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError("caption_dropout must be in [0, 1)")
        check_cooldown(self.cooldown, self.steps)


@dataclass(frozen=True)
class GpuDefaults:
    """Settings for the ``base`` preset on one H100 80 GB (measured with scripts/gpu/)."""

    batch_size: dict[str, int] = field(default_factory=lambda: {"ae": 64, "dit": 256})
    lr: dict[str, float] = field(default_factory=lambda: {"ae": 2e-4, "dit": 3e-4})


def suggested(stage: Stage, device: torch.device) -> dict[str, Any]:
    """Batch size and learning rate for a stage on a device kind."""
    if device.type == "cuda":
        d = GpuDefaults()
        return {"batch_size": d.batch_size[stage], "lr": d.lr[stage]}
    return {"batch_size": 8, "lr": 3e-4 if stage == "dit" else 2e-4}


def load_scheduler_state(optimizer, scheduler, state: dict) -> None:
    """Restore a LambdaLR's step count, then set each group's rate from *this* run's schedule.

    ``load_state_dict`` alone leaves the checkpoint's rate in the optimizer until the next
    ``scheduler.step()``, so a run resumed with a new ``cooldown`` would take its first step at
    the old rate.
    """
    scheduler.load_state_dict(state)
    for group, base_lr, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * fn(scheduler.last_epoch)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size); area filter when shrinking (the tiny preset)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="area" if images.shape[-1] > size else "bilinear")


def amp_dtype_for(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA; none (plain fp32) on CPU, where bf16 is slower."""
    return torch.bfloat16 if device.type == "cuda" else None


def autocast_for(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast(device.type, dtype=amp_dtype)


def lr_factor(step: int, warmup: int, steps: int, cooldown: int) -> float:
    """The learning rate at ``step`` (0-based) as a share of the peak: warm-up, stable, decay.

    A linear warm-up over ``warmup`` steps, then constant; with ``cooldown`` > 0 it falls linearly
    to zero over the last ``cooldown`` of ``steps`` (the "warmup-stable-decay" schedule). The decay
    is why: at a constant rate the evaluation flattened (run 7, bench/quality.md) while the loss
    still carried step-to-step noise that only a smaller rate averages out; a short final decay
    recovers most of what a cosine schedule gives without fixing the run length up front.
    """
    factor = min(1.0, (step + 1) / max(1, warmup))
    if cooldown > 0 and step >= steps - cooldown:
        factor *= max(0.0, (steps - step) / cooldown)
    return factor


def check_cooldown(cooldown: int, steps: int) -> None:
    """ValueError naming the field and its limit unless 0 ≤ cooldown ≤ steps."""
    if not 0 <= cooldown <= steps:
        raise ValueError(f"cooldown must be between 0 and steps ({steps}), got {cooldown}")


def adamw_with_warmup(params, lr: float, betas, weight_decay: float, warmup: int, device: torch.device,
                      steps: int = 0, cooldown: int = 0):
    """AdamW (fused on CUDA) and the ``lr_factor`` schedule: warm-up to ``lr``, constant, then
    (``cooldown`` > 0) a linear decay to zero at ``steps``."""
    check_cooldown(cooldown, steps)
    optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(
        lr_factor, warmup=warmup, steps=steps, cooldown=cooldown))
    return optimizer, scheduler


def batch_images(batch, device: torch.device, size: int) -> torch.Tensor:
    """A stream batch's images on ``device`` at ``size``: (B, 3, S, S) float in [-1, 1]."""
    return resize_images(batch.images.to(device, non_blocking=True).float(), size)


def encode_captions(text_encoder, captions: list[str], t_max: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """-> hidden (B, T, Dt) float, mask (B, T) bool, padded to ``t_max`` (static shapes for
    torch.compile)."""
    hidden, mask = text_encoder.encode(list(captions), max_length=t_max)
    # clone(): the encoder's states come from a no-grad context and must not alias its buffers.
    return pad_text(hidden.clone().to(device).float(), mask.clone().to(device), t_max)


def check_text_features(text_encoder: TextEncoder, model_config: ModelConfig) -> None:
    """ValueError unless the encoder gives the per-token features the transformer reads."""
    t = model_config.transformer
    if text_encoder.feature_dim != t.text_input_dim:
        raise ValueError(f"text encoder features are {text_encoder.feature_dim} wide, the transformer reads "
                         f"{t.text_input_dim} ({t.text_features})")


def image_grid(images: torch.Tensor, cols: int):
    """(N, 3, H, W) in [-1, 1] -> one PIL image, ``cols`` wide."""
    from PIL import Image

    n, _, h, w = images.shape
    rows = math.ceil(n / cols)
    pix = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()  # (N, 3, H, W)
    grid = torch.zeros(3, rows * h, cols * w, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, r * h : (r + 1) * h, c * w : (c + 1) * w] = pix[i]
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


class Trainer:
    """Runs one stage. ``stream`` yields batches with ``images`` (B, 3, H, W) in [-1, 1] and
    ``captions``; ``text_encoder`` and ``autoencoder`` are needed for the ``dit`` stage."""

    def __init__(
        self,
        cfg: TrainConfig,
        model_config: ModelConfig,
        stream: Iterable,
        device: torch.device | str = "cpu",
        text_encoder: TextEncoder | None = None,
        autoencoder: Autoencoder | None = None,
        dist: DistContext = DistContext(),
    ) -> None:
        self.cfg = cfg
        self.dist = dist
        self.model_config = model_config
        self.device = torch.device(device)
        self.stream: Iterator = iter(stream)
        self.amp_dtype = amp_dtype_for(self.device)
        torch.manual_seed(cfg.seed)

        if cfg.stage == "ae":
            self.model: nn.Module = Autoencoder(model_config.autoencoder).to(self.device)
            self.autoencoder = None
            self.text_encoder = None
        else:
            if autoencoder is None or text_encoder is None:
                raise ValueError("the dit stage needs a trained autoencoder and a text encoder")
            check_text_features(text_encoder, model_config)
            self.model = MMDiT(model_config.transformer).to(self.device)
            # channels_last: cuDNN's bf16 convolutions run NHWC; in NCHW each conv adds layout copies.
            self.autoencoder = (
                autoencoder.to(self.device, memory_format=torch.channels_last).eval().requires_grad_(False)
            )
            self.text_encoder = text_encoder
        self.ema = EMA(self.model, cfg.ema_decay)
        self.optimizer, self.scheduler = adamw_with_warmup(
            self.model.parameters(), cfg.lr, cfg.betas, cfg.weight_decay, cfg.warmup, self.device,
            steps=cfg.steps, cooldown=cfg.cooldown,
        )
        use_compile = cfg.compile if cfg.compile is not None else self.device.type == "cuda"
        self.forward_model = torch.compile(self.model) if use_compile else self.model
        # The frozen encoders run every step; compiled, the autoencoder's GroupNorm/SiLU chains fuse
        # (its encode was 56 of a 206 ms step on an H100, bench/train_profile.py) and the text
        # encoder's Python overhead goes (30-70 ms of host time per call at batch 512 / 256).
        self._encode_latents = None
        if self.autoencoder is not None:
            encode = functools.partial(self.autoencoder.encode_latents, sample=False)
            self._encode_latents = torch.compile(encode, dynamic=False) if use_compile else encode
        if use_compile and isinstance(self.text_encoder, E5TextEncoder):
            self.text_encoder.compile_forward()
        self.step = 0
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)  # noise, t, dropout
        self._empty: tuple[torch.Tensor, torch.Tensor] | None = None  # see _empty_text
        self.run_dir = Path(cfg.out)

    # -- losses ------------------------------------------------------------------------------------

    def _autocast(self):
        return autocast_for(self.device, self.amp_dtype)

    def _images(self, batch) -> torch.Tensor:
        return batch_images(batch, self.device, self.model_config.image_size)  # (B, 3, S, S)

    @torch.no_grad()
    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> the frozen autoencoder's normalised posterior means (B, C, h, w),
        fp32, contiguous."""
        with self._autocast():
            z = self._encode_latents(images.contiguous(memory_format=torch.channels_last))
        return z.float().contiguous()

    def _encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_captions(self.text_encoder, captions, self.model_config.transformer.max_text_tokens, self.device)

    def _empty_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty caption's (1, T, Dt) states and (1, T) mask, encoded once (the text encoder
        is frozen)."""
        if self._empty is None:
            self._empty = self._encode_text([""])
        return self._empty

    def ae_loss(self, images: torch.Tensor, generator: torch.Generator | None = None, model=None) -> torch.Tensor:
        model = model or self.forward_model
        with self._autocast():
            recon, mean, logvar = model(images, generator=generator)
        recon = recon.float()
        l1 = (recon - images).abs().mean()
        dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
        dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
        grad = (dx(recon) - dx(images)).abs().mean() + (dy(recon) - dy(images)).abs().mean()
        return l1 + self.cfg.grad_weight * grad + self.cfg.kl_weight * kl_loss(mean.float(), logvar.float())

    def dit_loss(
        self, images: torch.Tensor, captions: list[str], generator: torch.Generator, model=None, dropout: bool = True
    ) -> torch.Tensor:
        model = model or self.forward_model
        b = images.shape[0]
        x0 = self.latents(images)  # (B, C, h, w)
        text, mask = self._encode_text(captions)  # (B, T, Dt), (B, T)
        if dropout and self.cfg.caption_dropout > 0:
            # Dropped captions take the empty caption's states, chosen on the device: reading the
            # mask back to pick strings on the host would stall the host once per step.
            drop = torch.rand(b, generator=generator, device=self.device) < self.cfg.caption_dropout  # (B,)
            empty, empty_mask = self._empty_text()  # (1, T, Dt), (1, T)
            text = torch.where(drop.view(b, 1, 1), empty, text)
            mask = torch.where(drop.view(b, 1), empty_mask, mask)
        u = torch.randn(b, generator=generator, device=self.device) * self.cfg.logit_std + self.cfg.logit_mean
        t = torch.sigmoid(u)  # (B,) logit-normal
        noise = torch.randn(x0.shape, generator=generator, device=self.device)
        tb = t.view(b, 1, 1, 1)
        xt = (1.0 - tb) * x0 + tb * noise  # t = 0 data, t = 1 noise
        target = noise - x0  # velocity
        with self._autocast():
            v = model(xt, t, text, mask)
        return F.mse_loss(v.float(), target)

    def loss(self, batch, generator: torch.Generator, model=None) -> torch.Tensor:
        images = self._images(batch)
        if self.cfg.stage == "ae":
            return self.ae_loss(images, generator, model)
        return self.dit_loss(images, batch.captions, generator, model)

    @torch.no_grad()
    def eval_loss(self, batch, seed: int = 1234, use_ema: bool = False) -> float:
        """Loss on ``batch`` with fixed noise/t (no caption dropout): comparable across steps."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        model = self.ema.module if use_ema else self.model
        images = self._images(batch)
        if self.cfg.stage == "ae":
            return float(self.ae_loss(images, gen, model))
        return float(self.dit_loss(images, batch.captions, gen, model, dropout=False))

    # -- loop ----------------------------------------------------------------------------------

    def train_step(self, batch) -> torch.Tensor:
        """One optimiser step; the loss as a detached 0-dim device tensor (reading it here would
        stall the host every step; the loop reads it once per log window)."""
        self.model.train()
        loss = self.loss(batch, self.gen)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.model.parameters(), self.dist)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return loss.detach()

    def train(self) -> list[dict[str, Any]]:
        """Train up to ``cfg.steps`` total steps (resumed steps count); returns the metric records."""
        cfg = self.cfg
        loop = LoopConfig(cfg.stage, self.run_dir, cfg.steps, cfg.batch_size, cfg.log_every, cfg.sample_every,
                          cfg.ckpt_every, cfg.progress, self.dist, stop_file=self.run_dir / STOP_FILE)  # fmt: skip
        records = run_loop(self, loop, on_grid=self.save_grid)
        if self.dist.is_main:
            if cfg.stage == "ae" and self.step > 0:  # also when a STOP file ended the run early
                self.measure_latent_stats()
            self.save()
        barrier(self.dist)  # the others wait until the main process has written the checkpoint
        return records

    # -- stage ends, grids, checkpoints ---------------------------------------------------------

    @torch.no_grad()
    def measure_latent_stats(self) -> None:
        """ae: per-channel mean/std of posterior means over a few batches, into model and EMA."""
        model = self.ema.module
        latents = []
        for _ in range(self.cfg.stats_batches):
            images = self._images(next(self.stream))
            with self._autocast():
                mean, _ = model.encode(images)
            latents.append(mean.float())
        raw = torch.cat(latents)
        model.set_latent_stats(raw)
        self.model.set_latent_stats(raw)

    @torch.no_grad()
    def save_grid(self, batch) -> Path:
        out = self.run_dir / "samples" / f"step-{self.step:07d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        model = self.ema.module.eval()
        if self.cfg.stage == "ae":
            images = self._images(batch)[:8]
            with self._autocast():
                recon = model(images)[0].float().clamp(-1, 1)
            grid = image_grid(torch.cat([images, recon]), cols=images.shape[0])
        else:
            grid = image_grid(self.sample(list(GRID_PROMPTS)), cols=4)
        grid.save(out)
        return out

    @torch.no_grad()
    def sample(self, prompts: list[str], seed: int = 0, steps: int | None = None, guidance: float | None = None):
        """dit: images (N, 3, S, S) in [-1, 1] from the EMA model."""
        mc = self.model_config
        n = len(prompts)
        noise_gen = torch.Generator().manual_seed(seed)
        size = mc.autoencoder.latent_size
        noise = torch.randn(n, mc.transformer.in_channels, size, size, generator=noise_gen).to(self.device)
        text, mask = self._encode_text(prompts)
        neg, neg_mask = self._encode_text([""] * n)
        with self._autocast():
            z = denoise(
                self.ema.module.eval(), noise, text, mask, steps or self.cfg.grid_steps, mc.sampler.shift,
                guidance if guidance is not None else self.cfg.grid_guidance, neg, neg_mask,
            )
            images = self.autoencoder.decode_latents(z)
        return images.float()

    def checkpoint_payload(self) -> dict[str, Any]:
        payload = {
            "stage": self.cfg.stage,
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.gen.get_state(),
            "rng": rng_state(),
            "model_config": self.model_config.to_dict(),
            "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.cfg).items()},
        }
        if self.autoencoder is not None:
            payload["autoencoder"] = self.autoencoder.state_dict()
        return payload

    def save(self) -> Path:
        keep = bool(self.cfg.keep_every) and self.step % self.cfg.keep_every == 0
        return save_checkpoint(self.run_dir, self.checkpoint_payload(), keep_step_copy=keep)

    def init_from_weights(self, folder: Path | str) -> None:
        """dit: start model and EMA from an exported weights folder (optimizer state starts fresh)."""
        if self.cfg.stage != "dit":
            raise ValueError("init_from_weights is for the dit stage")
        config, t_sd, _ = load_weights(folder)
        ours = self.model_config.transformer
        # Weights trained without the input word rows may start a run that has them: the new
        # projection is zero-initialised, so the model starts as exactly the loaded one.
        old = config.transformer
        widening = old.text_embed_dim == 0 and ours.text_embed_dim > 0
        if replace(old, text_embed_dim=ours.text_embed_dim) != ours or old.text_embed_dim not in (0, ours.text_embed_dim):
            raise ValueError(f"{folder}: transformer config differs from the preset's")
        missing, unexpected = self.model.load_state_dict({k: v.float() for k, v in t_sd.items()}, strict=False)
        allowed = {k for k in self.model.state_dict() if k.startswith("txt_embed_in.")} if widening else set()
        if unexpected or set(missing) - allowed:
            raise ValueError(f"{folder}: weights do not fit the transformer: missing={missing} unexpected={unexpected}")
        self.ema.module.load_state_dict(self.model.state_dict())

    def resume(self, path: Path | str | None = None) -> bool:
        """Load the run's latest checkpoint (or ``path``); False if there is none yet."""
        path = Path(path) if path is not None else self.run_dir
        try:
            ckpt = load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
        except FileNotFoundError:
            return False
        if ckpt["stage"] != self.cfg.stage:
            raise ValueError(f"{path} holds a {ckpt['stage']!r} checkpoint, not {self.cfg.stage!r}")
        if ckpt["model_config"] != self.model_config.to_dict():
            raise ValueError(f"{path} was trained with a different model config")
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        load_scheduler_state(self.optimizer, self.scheduler, ckpt["scheduler"])
        self.gen.set_state(ckpt["generator"])
        set_rng_state(ckpt["rng"])
        self.step = int(ckpt["step"])
        log.info("resumed %s at step %d from %s", self.cfg.stage, self.step, path)
        return True


def load_autoencoder(path: Path | str, model_config: ModelConfig, device: torch.device | str = "cpu") -> Autoencoder:
    """The EMA autoencoder of an ``ae`` run (directory or checkpoint file), or the autoencoder of an
    exported weights folder (how a later GPU session continues without the 300 MB checkpoint)."""
    if has_weights(path):
        config, _, a_sd = load_weights(path)
        if config.autoencoder != model_config.autoencoder:
            raise ValueError(f"{path}: autoencoder config {config.autoencoder} != preset's {model_config.autoencoder}")
        ae = Autoencoder(config.autoencoder)
        ae.load_state_dict({k: v.float() for k, v in a_sd.items()})
        return ae.to(device)
    ckpt = load_checkpoint(path)
    if ckpt["stage"] != "ae":
        raise ValueError(f"{path} is a {ckpt['stage']!r} checkpoint; the dit stage needs an 'ae' one")
    ae_cfg = ModelConfig.from_dict(ckpt["model_config"]).autoencoder
    if ae_cfg != model_config.autoencoder:
        raise ValueError(f"{path}: autoencoder config {ae_cfg} != preset's {model_config.autoencoder}")
    ae = Autoencoder(ae_cfg)
    ae.load_state_dict(ckpt["ema"]["module"])
    return ae.to(device)


def make_config(stage: Stage, preset_name: str, out: Path | str, steps: int, device: torch.device, **overrides) -> tuple[TrainConfig, ModelConfig]:
    """A TrainConfig with device-appropriate defaults, ``overrides`` (None values ignored) on top."""
    base = TrainConfig(stage=stage, out=Path(out), steps=steps, **suggested(stage, device))
    return replace(base, **{k: v for k, v in overrides.items() if v is not None}), preset(preset_name)
