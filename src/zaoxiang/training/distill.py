"""Stage ``turbo``: distil a 4-step, guidance-1 LoRA from the built-in base model.

Method: trajectory distillation of the CFG teacher onto the student's few-step schedule (rectified
flow / progressive-distillation style, guidance distillation folded in).

- Teacher: the frozen base with classifier-free guidance at ``teacher_guidance`` (default: the
  base's own ``sampler.guidance``; a fixed value, because the student has no guidance input and
  a sampled range would teach it the average of several targets).
- Student: the base plus a LoRA (peft, rank ``rank``, on every Linear of the dual- and
  single-stream blocks: attention qkv/proj and the MLPs), run without CFG.
- Per sample: pick one segment t_i -> t_{i+1} of the student's ``student_steps``-step shifted
  schedule (the schedule the engine samples with), make x_{t_i} by noising a real latent (the
  frozen autoencoder on TrainStream images) and run the teacher's CFG Euler ODE over the segment
  in ``teacher_substeps`` sub-steps (the same shifted grid the teacher would use at
  student_steps × teacher_substeps steps). The student's single Euler step must land where the
  teacher did: MSE between the student's velocity and (x_teacher - x_{t_i}) / (t_{i+1} - t_i),
  i.e. the endpoint error divided by the step, so the four segments weigh alike.

Why this one: it needs no discriminator, no second trainable network and no reflow data set
(distribution matching needs both; reflow needs a pass over generated pairs first), and every
training step costs ``teacher_substeps`` batched CFG forwards plus one student step, so a few
GPU-minutes give thousands of steps. Starting points from noised real data rather than from the
student's own rollouts follow consistency distillation; if the 4-step images drift from the
teacher's, the next lever is a consistency-style self-target (student rollout for x_{t_i}).

Shared with the ``dit`` stage: bf16 autocast on CUDA, EMA (here of the LoRA), gradient clipping,
atomic resumable checkpoints (only LoRA tensors: the base is read again from ``base``, checked by
its content revision), ``metrics.jsonl`` and sample grids: row 1 the student at 4 steps and
guidance 1, row 2 the base at the same 4 steps and guidance 1, row 3 the teacher at its best
(``grid_teacher_steps`` with CFG).

Must not import ``zaoxiang.protocol``/``settings``/diffusers, nor ``zaoxiang.model.lora`` (which
imports the engine and so pydantic): the GPU machine has neither. peft is there.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import ModelConfig
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.sampler import apply_guidance, denoise, shift_time
from zaoxiang.model.serialization import load_weights, weights_revision
from zaoxiang.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from zaoxiang.training.distributed import DistContext, average_gradients, barrier
from zaoxiang.training.ema import EMA
from zaoxiang.training.loop import STOP_FILE, LoopConfig, run_loop
from zaoxiang.training.trainer import (
    GRID_PROMPTS,
    TextEncoder,
    adamw_with_warmup,
    amp_dtype_for,
    autocast_for,
    batch_images,
    check_cooldown,
    check_text_features,
    encode_captions,
    image_grid,
    load_scheduler_state,
)

log = logging.getLogger(__name__)

STAGE = "turbo"
ADAPTER = "default"  # peft's adapter name inside the student
# The zaoxiang LoRA file format (see zaoxiang.model.lora, not imported here: it pulls in pydantic).
LORA_FORMAT = "zaoxiang-lora"
LORA_BASE = "zaoxiang-mmdit"
TURBO_FILE = "turbo_lora.safetensors"  # the name zaoxiang.engine.lora.turbo_plan looks for
_PEFT_KEY = re.compile(r"^(.+)\.lora_([AB])\." + ADAPTER + r"\.weight$")


@dataclass(frozen=True)
class DistillConfig:
    out: Path
    base: Path  # the base weights folder (config.json + shards)
    steps: int
    batch_size: int = 8
    lr: float = 2e-4
    warmup: int = 100
    cooldown: int = 0  # steps of linear decay to zero at the end (trainer.lr_factor)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    seed: int = 0
    rank: int = 32
    alpha: float | None = None  # None: = rank (LoRA scale 1)
    student_steps: int = 4
    teacher_guidance: float | None = None  # None: the base's sampler.guidance
    teacher_substeps: int = 8
    log_every: int = 10
    ckpt_every: int = 500
    sample_every: int = 500
    keep_every: int = 0
    compile: bool | None = None  # None: the teacher only, on CUDA (the student is peft-wrapped)
    grid_teacher_steps: int | None = None  # None: the base's sampler.steps
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"steps must be ≥ 0 and batch_size ≥ 1, got {self.steps} and {self.batch_size}")
        if self.rank < 1:
            raise ValueError(f"rank must be ≥ 1, got {self.rank}")
        check_cooldown(self.cooldown, self.steps)
        if not 1 <= self.student_steps <= 64:
            raise ValueError(f"student_steps must be in [1, 64], got {self.student_steps}")
        if not 1 <= self.teacher_substeps <= 64:
            raise ValueError(f"teacher_substeps must be in [1, 64], got {self.teacher_substeps}")
        if self.teacher_guidance is not None and not 1.0 <= self.teacher_guidance <= 20.0:
            raise ValueError(f"teacher_guidance must be in [1, 20], got {self.teacher_guidance}")


def suggested(device: torch.device) -> dict[str, Any]:
    """Batch size and learning rate for the turbo stage on a device kind (H100: the base preset's
    teacher runs 8 CFG forwards per step, so half the dit stage's batch)."""
    if device.type == "cuda":
        return {"batch_size": 128, "lr": 2e-4}
    return {"batch_size": 8, "lr": 2e-4}


def lora_targets(model: nn.Module) -> list[str]:
    """Paths of the Linear layers the turbo LoRA adapts: every one inside the transformer blocks."""
    return sorted(p for p, m in model.named_modules() if isinstance(m, nn.Linear) and p.startswith(("dual.", "single.")))


def add_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Inject a zero-initialised (B = 0) peft LoRA into ``model`` in place; only it is trainable."""
    from peft import LoraConfig
    from peft.functional import inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=lora_targets(model), lora_dropout=0.0)
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name)
    return model


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA tensors of a peft-wrapped model (``<path>.lora_A.default.weight`` ...)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" in k}


def load_lora_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    lora_missing = [k for k in missing if ".lora_" in k]
    if unexpected or lora_missing:
        raise ValueError(f"LoRA state does not fit the student: missing {lora_missing[:3]}, unexpected {unexpected[:3]}")


def set_lora_scale(model: nn.Module, scale: float) -> None:
    """Scale every LoRA update of the student (0: exactly the base)."""
    for m in model.modules():
        if hasattr(m, "set_scale") and hasattr(m, "lora_A") and ADAPTER in m.lora_A:
            m.set_scale(ADAPTER, scale)


def write_turbo_lora(path: Path | str, state: dict[str, torch.Tensor], rank: int, alpha: float,
                     steps: int, extra: dict[str, str] | None = None) -> Path:
    """Write peft LoRA tensors as a zaoxiang LoRA file (bf16) with ``recommended_steps`` and
    ``recommended_guidance = 1`` (what ``turbo_plan`` reads). Hand-written rather than
    ``zaoxiang.model.lora.save_lora`` only because that module imports pydantic (see above)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _PEFT_KEY.match(key)
        if m is None:
            raise ValueError(f"unexpected LoRA tensor {key!r}")
        module, ab = m.groups()
        tensors[f"transformer.{module}.lora_{ab}.weight"] = value.detach().to("cpu", torch.bfloat16).contiguous()
    meta = {"format": LORA_FORMAT, "version": "1", "base": LORA_BASE, "rank": str(rank), "alpha": repr(float(alpha)),
            "recommended_steps": str(steps), "recommended_guidance": "1.0"}
    meta.update(extra or {})
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / TURBO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


_FILE_KEY = re.compile(r"^transformer\.(.+)\.lora_([AB])\.weight$")


def read_turbo_lora(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A zaoxiang LoRA file (as :func:`write_turbo_lora` writes it) as peft tensors (fp32) and
    its metadata; the inverse of the key mapping there. ``zaoxiang.model.lora.load_lora`` reads
    the same files for the engine, but imports pydantic, which the GPU machine lacks (see above)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no LoRA file at {path}")
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != LORA_FORMAT or meta.get("base") != LORA_BASE:
            raise ValueError(f"{path} is not a {LORA_FORMAT} file for {LORA_BASE} (metadata {meta})")
        for key in f.keys():
            m = _FILE_KEY.match(key)
            if m is None:
                raise ValueError(f"{path}: unexpected tensor {key!r}")
            module, ab = m.groups()
            state[f"{module}.lora_{ab}.{ADAPTER}.weight"] = f.get_tensor(key).float()
    return state, meta


def export_turbo(ckpt_path: Path | str, out: Path | str) -> Path:
    """The EMA LoRA of a turbo checkpoint as ``turbo_lora.safetensors`` (``out``: a folder, e.g. the
    weights folder, or a ``.safetensors`` path)."""
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("stage") != STAGE:
        raise ValueError(f"{ckpt_path} is a {ckpt.get('stage')!r} checkpoint; export needs a {STAGE!r} one")
    tc = ckpt["train_config"]
    extra = {"base_revision": ckpt["base_revision"], "distill_step": str(ckpt["step"]),
             "teacher_guidance": repr(float(ckpt["teacher_guidance"])), "teacher_substeps": str(tc["teacher_substeps"])}
    return write_turbo_lora(out, ckpt["ema"]["lora"], tc["rank"], ckpt["alpha"], tc["student_steps"], extra)


def load_base(folder: Path | str) -> tuple[ModelConfig, MMDiT, Autoencoder]:
    """The base weights folder's config, transformer and autoencoder (fp32, CPU)."""
    config, t_sd, a_sd = load_weights(folder)
    transformer, autoencoder = MMDiT(config.transformer), Autoencoder(config.autoencoder)
    transformer.load_state_dict({k: v.float() for k, v in t_sd.items()})
    autoencoder.load_state_dict({k: v.float() for k, v in a_sd.items()})
    return config, transformer, autoencoder


class TurboDistiller:
    """Runs the turbo stage. ``stream`` yields batches with ``images`` (B, 3, H, W) in [-1, 1] and
    ``captions`` (as for the dit stage); ``base`` is the frozen teacher and the student's start."""

    def __init__(
        self,
        cfg: DistillConfig,
        model_config: ModelConfig,
        base: MMDiT,
        autoencoder: Autoencoder,
        text_encoder: TextEncoder,
        stream: Iterable,
        device: torch.device | str = "cpu",
        base_revision: str = "",
        dist: DistContext = DistContext(),
    ) -> None:
        check_text_features(text_encoder, model_config)
        self.cfg = cfg
        self.dist = dist
        self.model_config = model_config
        self.device = torch.device(device)
        self.stream: Iterator = iter(stream)
        self.amp_dtype = amp_dtype_for(self.device)
        self.base_revision = base_revision
        self.guidance = float(cfg.teacher_guidance if cfg.teacher_guidance is not None else model_config.sampler.guidance)
        self.alpha = float(cfg.alpha if cfg.alpha is not None else cfg.rank)
        torch.manual_seed(cfg.seed)

        self.teacher = base.to(self.device).float().eval().requires_grad_(False)
        self.model = add_lora(copy.deepcopy(self.teacher), cfg.rank, self.alpha)  # the student
        self.autoencoder = autoencoder.to(self.device).eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self.ema = EMA(self.model, cfg.ema_decay)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer, self.scheduler = adamw_with_warmup(
            params, cfg.lr, cfg.betas, cfg.weight_decay, cfg.warmup, self.device,
            steps=cfg.steps, cooldown=cfg.cooldown,
        )
        on_cuda = self.device.type == "cuda"
        self.forward_teacher = torch.compile(self.teacher) if (cfg.compile or (cfg.compile is None and on_cuda)) else self.teacher
        self.forward_student = torch.compile(self.model) if cfg.compile else self.model
        self.step = 0
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)  # noise, segment choice
        self._empty: tuple[torch.Tensor, torch.Tensor] | None = None  # see _empty_text
        self.run_dir = Path(cfg.out)

    # -- loss ----------------------------------------------------------------------------------------

    def _autocast(self):
        return autocast_for(self.device, self.amp_dtype)

    def _encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_captions(self.text_encoder, captions, self.model_config.transformer.max_text_tokens, self.device)

    def _empty_text(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty caption's states (n, T, Dt) and mask (n, T) for the teacher's unconditional
        branch: one row encoded on first use (the text encoder is frozen), expanded without a copy
        (every user only reads them, through torch.cat)."""
        if self._empty is None:
            self._empty = self._encode_text([""])  # (1, T, Dt), (1, T)
        neg, neg_mask = self._empty
        return neg.expand(n, -1, -1), neg_mask.expand(n, -1)

    def segment_times(self, index: torch.Tensor) -> torch.Tensor:
        """(B,) segment indices -> (B, k+1) shifted times from t_i to t_{i+1}: the teacher's
        sub-grid, uniform before the shift like the student's own schedule."""
        s, k = self.cfg.student_steps, self.cfg.teacher_substeps
        u = torch.linspace(1.0, 0.0, s + 1, device=self.device)  # (S+1,) unshifted
        frac = torch.arange(k + 1, device=self.device, dtype=torch.float32) / k  # (k+1,)
        u_sub = u[index, None] + (u[index + 1] - u[index])[:, None] * frac  # (B, k+1)
        return shift_time(u_sub, self.model_config.sampler.shift)

    @torch.no_grad()
    def teacher_solve(self, x: torch.Tensor, times: torch.Tensor, text, mask, neg, neg_mask) -> torch.Tensor:
        """CFG Euler from times[:, 0] to times[:, -1]; x (B, C, h, w) -> (B, C, h, w) fp32."""
        b = x.shape[0]
        both_text, both_mask = torch.cat([text, neg]), torch.cat([mask, neg_mask])  # (2B, T, Dt), (2B, T)
        x = x.float()
        for j in range(times.shape[1] - 1):
            t = times[:, j]  # (B,)
            with self._autocast():
                v = self.forward_teacher(torch.cat([x, x]), torch.cat([t, t]), both_text, both_mask).float()
            v = apply_guidance(v[:b], v[b:], self.guidance)  # (B, C, h, w)
            x = x + (times[:, j + 1] - t).view(b, 1, 1, 1) * v  # Euler update in fp32
        return x

    def distill_loss(self, images: torch.Tensor, captions: list[str], generator: torch.Generator, model=None) -> torch.Tensor:
        model = model or self.forward_student
        b = images.shape[0]
        with torch.no_grad(), self._autocast():
            x0 = self.autoencoder.encode_latents(images, sample=False).float()  # (B, C, h, w)
        text, mask = self._encode_text(captions)  # (B, T, Dt), (B, T)
        neg, neg_mask = self._empty_text(b)  # (B, T, Dt), (B, T)
        index = torch.randint(0, self.cfg.student_steps, (b,), generator=generator, device=self.device)  # (B,)
        times = self.segment_times(index)  # (B, k+1)
        noise = torch.randn(x0.shape, generator=generator, device=self.device)
        t0 = times[:, 0].view(b, 1, 1, 1)
        xt = (1.0 - t0) * x0 + t0 * noise  # (B, C, h, w) on the data's path at t_i
        target = self.teacher_solve(xt, times, text, mask, neg, neg_mask)  # (B, C, h, w) at t_{i+1}
        dt = (times[:, -1] - times[:, 0]).view(b, 1, 1, 1)  # negative
        v_target = (target - xt) / dt  # the one velocity whose Euler step lands on the teacher's point
        with self._autocast():
            v = model(xt, times[:, 0], text, mask)
        return F.mse_loss(v.float(), v_target)

    def _images(self, batch) -> torch.Tensor:
        return batch_images(batch, self.device, self.model_config.image_size)  # (B, 3, S, S)

    @torch.no_grad()
    def eval_loss(self, batch, seed: int = 1234, use_ema: bool = False) -> float:
        """Loss on ``batch`` with fixed noise and segments: comparable across steps."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        model = self.ema.module if use_ema else self.model
        return float(self.distill_loss(self._images(batch), batch.captions, gen, model))

    # -- loop ------------------------------------------------------------------------------------------

    def train_step(self, batch) -> torch.Tensor:
        """One optimiser step; the loss as a detached 0-dim device tensor (see Trainer.train_step)."""
        self.model.train()
        loss = self.distill_loss(self._images(batch), batch.captions, self.gen)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        average_gradients(params, self.dist)
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return loss.detach()

    def train(self) -> list[dict[str, Any]]:
        """Train up to ``cfg.steps`` total steps (resumed steps count); returns the metric records."""
        cfg = self.cfg
        loop = LoopConfig(STAGE, self.run_dir, cfg.steps, cfg.batch_size, cfg.log_every, cfg.sample_every,
                          cfg.ckpt_every, cfg.progress, self.dist, stop_file=self.run_dir / STOP_FILE)  # fmt: skip
        records = run_loop(self, loop, on_grid=lambda batch: self.save_grid())
        if self.dist.is_main:
            self.save()
        barrier(self.dist)
        return records

    # -- grids, checkpoints -------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, prompts: list[str], model: nn.Module, steps: int, guidance: float, seed: int = 0) -> torch.Tensor:
        """Images (N, 3, S, S) in [-1, 1] from ``model`` (same noise for every call with ``seed``)."""
        mc = self.model_config
        n = len(prompts)
        size = mc.autoencoder.latent_size
        noise = torch.randn(n, mc.transformer.in_channels, size, size, generator=torch.Generator().manual_seed(seed))
        text, mask = self._encode_text(prompts)
        neg, neg_mask = self._empty_text(n)
        with self._autocast():
            z = denoise(model.eval(), noise.to(self.device), text, mask, steps, mc.sampler.shift, guidance, neg, neg_mask)
            images = self.autoencoder.decode_latents(z)
        return images.float()

    @torch.no_grad()
    def save_grid(self, prompts: tuple[str, ...] = GRID_PROMPTS) -> Path:
        """Rows: student (EMA) at student_steps/guidance 1, base at the same, teacher at its best."""
        out = self.run_dir / "samples" / f"step-{self.step:07d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        s = self.cfg.student_steps
        teacher_steps = self.cfg.grid_teacher_steps or self.model_config.sampler.steps
        rows = [self.sample(list(prompts), self.ema.module, s, 1.0), self.sample(list(prompts), self.teacher, s, 1.0),
                self.sample(list(prompts), self.teacher, teacher_steps, self.guidance)]
        image_grid(torch.cat(rows), cols=len(prompts)).save(out)
        return out

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "stage": STAGE,
            "step": self.step,
            "lora": lora_state(self.model),
            "ema": {"decay": self.ema.decay, "updates": self.ema.updates, "lora": lora_state(self.ema.module)},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.gen.get_state(),
            "rng": rng_state(),
            "model_config": self.model_config.to_dict(),
            "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.cfg).items()},
            "base_revision": self.base_revision,
            "alpha": self.alpha,
            "teacher_guidance": self.guidance,
        }

    def save(self) -> Path:
        keep = bool(self.cfg.keep_every) and self.step % self.cfg.keep_every == 0
        return save_checkpoint(self.run_dir, self.checkpoint_payload(), keep_step_copy=keep)

    def export(self, out: Path | str) -> Path:
        """Write the EMA LoRA as ``turbo_lora.safetensors`` (see :func:`export_turbo`)."""
        self.save()
        return export_turbo(self.run_dir, out)

    def init_from_lora(self, path: Path | str) -> None:
        """Start student and EMA from an exported turbo LoRA (a ``turbo_lora.safetensors`` or the
        folder holding one), e.g. the LoRA of the previous base, instead of B = 0. The optimizer
        starts fresh. A LoRA distilled from an earlier revision of the same architecture is a warm
        start for the new base: it only has to follow the base's change, not learn the few-step ODE."""
        path = Path(path)
        if path.is_dir():
            path = path / TURBO_FILE
        state, meta = read_turbo_lora(path)
        if int(meta.get("rank", -1)) != self.cfg.rank or float(meta.get("alpha", "nan")) != self.alpha:
            raise ValueError(f"{path} holds a rank-{meta.get('rank')} LoRA with alpha {meta.get('alpha')}; this run "
                             f"asks for rank {self.cfg.rank}, alpha {self.alpha}")
        if int(meta.get("recommended_steps", -1)) != self.cfg.student_steps:
            raise ValueError(f"{path} was distilled for {meta.get('recommended_steps')} steps; this run distils "
                             f"{self.cfg.student_steps}")
        load_lora_state(self.model, state)
        load_lora_state(self.ema.module, state)
        log.info("turbo LoRA initialised from %s (base revision %s)", path, meta.get("base_revision", "?"))

    def resume(self, path: Path | str | None = None) -> bool:
        """Load the run's latest checkpoint (or ``path``); False if there is none yet."""
        path = Path(path) if path is not None else self.run_dir
        try:
            ckpt = load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
        except FileNotFoundError:
            return False
        if ckpt["stage"] != STAGE:
            raise ValueError(f"{path} holds a {ckpt['stage']!r} checkpoint, not {STAGE!r}")
        if ckpt["model_config"] != self.model_config.to_dict():
            raise ValueError(f"{path} was distilled from a model with another config")
        if self.base_revision and ckpt["base_revision"] and ckpt["base_revision"] != self.base_revision:
            raise ValueError(f"{path} was distilled from base revision {ckpt['base_revision']}, "
                             f"not {self.base_revision} (the base weights changed: start a new run)")
        tc = ckpt["train_config"]
        if tc["rank"] != self.cfg.rank or ckpt["alpha"] != self.alpha:
            raise ValueError(f"{path} holds a rank-{tc['rank']} LoRA; this run asks for rank {self.cfg.rank}")
        load_lora_state(self.model, ckpt["lora"])
        load_lora_state(self.ema.module, ckpt["ema"]["lora"])
        self.ema.decay, self.ema.updates = ckpt["ema"]["decay"], ckpt["ema"]["updates"]
        self.optimizer.load_state_dict(ckpt["optimizer"])
        load_scheduler_state(self.optimizer, self.scheduler, ckpt["scheduler"])
        self.gen.set_state(ckpt["generator"])
        set_rng_state(ckpt["rng"])
        self.step = int(ckpt["step"])
        log.info("resumed %s at step %d from %s", STAGE, self.step, path)
        return True


def make_distiller(cfg: DistillConfig, text_encoder: TextEncoder, stream: Iterable,
                   device: torch.device | str = "cpu", dist: DistContext = DistContext()) -> TurboDistiller:
    """A distiller for ``cfg.base`` (a weights folder), on ``device``."""
    model_config, transformer, autoencoder = load_base(cfg.base)
    return TurboDistiller(cfg, model_config, transformer, autoencoder, text_encoder, stream, device,
                          base_revision=weights_revision(cfg.base), dist=dist)


def main(argv: list[str] | None = None) -> int:
    """``python -m zaoxiang.training.distill RUN_DIR OUT``: export a (possibly unfinished) run."""
    import argparse

    parser = argparse.ArgumentParser(description="export a turbo checkpoint's EMA LoRA as turbo_lora.safetensors")
    parser.add_argument("checkpoint", help="checkpoint file or run directory (uses latest.pt)")
    parser.add_argument("out", help="folder (gets turbo_lora.safetensors) or a .safetensors path")
    args = parser.parse_args(argv)
    path = export_turbo(args.checkpoint, args.out)
    print(f"{path}  {path.stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
