"""Rectified-flow Euler sampler with SD3 time shift and classifier-free guidance.

Convention (see ``zaoxiang.model.mmdit``): x_t = (1 - t)·x0 + t·noise, velocity v = noise - x0,
sampling walks t from 1 (noise) to 0 (data): x_{t'} = x_t + (t' - t)·v. Hand-written rather than
diffusers' FlowMatchEulerDiscreteScheduler because the training path must run without diffusers
(the GPU machine has none) and the whole update is three lines; it matches that scheduler's
``shift`` formula and, like it, does the update in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 time shift: shift > 1 spends more of the schedule at high noise."""
    return shift * t / (1.0 + (shift - 1.0) * t)


@dataclass
class FlowEulerSampler:
    shift: float = 3.0
    timesteps: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # (S+1,) fp32, 1 → 0

    def set_timesteps(self, steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Prepare ``steps`` Euler steps; returns the (steps,) times the model is evaluated at."""
        if steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {steps}")
        t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32, device=device)
        self.timesteps = shift_time(t, self.shift)
        return self.timesteps[:-1]

    @property
    def num_steps(self) -> int:
        return max(len(self.timesteps) - 1, 0)

    def step(self, velocity: torch.Tensor, index: int, sample: torch.Tensor) -> torch.Tensor:
        """One Euler step from timesteps[index] to timesteps[index + 1]; the update runs in fp32
        (bf16 error is amplified as t shrinks) and the result keeps ``sample``'s dtype."""
        dt = self.timesteps[index + 1] - self.timesteps[index]  # negative
        out = sample.float() + dt * velocity.float()
        return out.to(sample.dtype)


def apply_guidance(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on velocities."""
    return v_uncond + scale * (v_cond - v_uncond)


def pad_text(hidden: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (B, L, D) states and their (B, L) mask to ``length`` tokens (masked out)."""
    extra = length - hidden.shape[1]
    if extra < 0:
        raise ValueError(f"text has {hidden.shape[1]} tokens, more than {length}")
    if extra == 0:
        return hidden, mask
    hidden = torch.nn.functional.pad(hidden, (0, 0, 0, extra))
    mask = torch.nn.functional.pad(mask, (0, extra), value=False)
    return hidden, mask


@torch.no_grad()
def denoise(
    model: torch.nn.Module,
    noise: torch.Tensor,  # (B, C, h, w) initial latents at t = 1, fp32
    text: torch.Tensor,  # (B, T, Dt) prompt states
    text_mask: torch.Tensor,  # (B, T) bool
    steps: int,
    shift: float,
    guidance: float = 1.0,
    neg_text: torch.Tensor | None = None,  # (B, T', Dt) negative / empty-prompt states, needed when guidance != 1
    neg_mask: torch.Tensor | None = None,
    on_step=None,  # (step, total, latents) -> None; may raise to cancel
) -> torch.Tensor:  # (B, C, h, w) fp32 latents at t = 0
    """The Euler loop shared by the engine pipeline and the trainer's sample grids. With
    guidance != 1 the prompt and negative halves run as one batch of 2B."""
    sampler = FlowEulerSampler(shift=shift)
    times = sampler.set_timesteps(steps, device=noise.device)  # (S,)
    use_cfg = guidance != 1.0
    if use_cfg:
        if neg_text is None or neg_mask is None:
            raise ValueError("guidance != 1 needs negative text states")
        length = max(text.shape[1], neg_text.shape[1])
        text, text_mask = pad_text(text, text_mask, length)
        neg_text, neg_mask = pad_text(neg_text, neg_mask, length)
        text = torch.cat([text, neg_text])  # (2B, T, Dt)
        text_mask = torch.cat([text_mask, neg_mask])
    x = noise.float()
    b = x.shape[0]
    for i, t in enumerate(times):
        x_in = torch.cat([x, x]) if use_cfg else x
        v = model(x_in, t.expand(x_in.shape[0]), text, text_mask).float()  # (B or 2B, C, h, w)
        if use_cfg:
            v = apply_guidance(v[:b], v[b:], guidance)
        x = sampler.step(v, i, x)
        if on_step is not None:
            on_step(i + 1, steps, x)
    return x
