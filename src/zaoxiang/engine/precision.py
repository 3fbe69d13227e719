"""The BF16 policy, in one place.

- GPU: bf16 weights and activations for every component.
- Sampler update: fp32 (bf16 error is amplified as sigma shrinks; diffusers' flow-matching
  schedulers upcast the sample inside ``step`` and the built-in sampler does the same).
- CPU: fp32. Measured on the 2-core dev machine (``bench/cpu_dtype.py``): without AMX, bf16
  matmuls run several times slower than fp32, so bf16 on CPU only costs time.
- Decode guard: NaN/inf latents fail the request at once (a decode cannot repair them); a decoded
  image that has NaN/inf or is all black is decoded once more with the VAE in fp32, and if that is
  still bad the request fails. A black image is never returned silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from zaoxiang.errors import GenerationFailed

log = logging.getLogger(__name__)

# Decoded images live in [-1, 1]; a pixel counts as black at or below this value (≈ 2/255).
BLACK_LEVEL = -1.0 + 4.0 / 255.0


@dataclass(frozen=True)
class PrecisionPolicy:
    device: torch.device
    dtype: torch.dtype  # weights and activations
    sampler_dtype: torch.dtype = torch.float32
    vae_fallback_dtype: torch.dtype = torch.float32

    @classmethod
    def for_device(cls, device: torch.device | str) -> "PrecisionPolicy":
        device = torch.device(device)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        return cls(device=device, dtype=dtype)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenerationFailed(f"device {name!r} was asked for but CUDA is not available", code="device_unavailable")
    return device


def check_latents(latents: torch.Tensor) -> None:
    """Fail fast on NaN/inf latents: nothing downstream can repair them."""
    if not torch.isfinite(latents).all():
        bad = (~torch.isfinite(latents)).float().mean().item()
        raise GenerationFailed(
            f"the denoiser produced non-finite latents ({bad:.1%} of values are NaN/inf); "
            "try fp32 (--dtype float32) or a different seed",
            code="nan_latents",
        )


def image_problem(images: torch.Tensor) -> str | None:
    """Why a decoded batch (B, C, H, W) in [-1, 1] is unacceptable, or None if it is fine."""
    if not torch.isfinite(images).all():
        return "non-finite pixels"
    flat = images.float().flatten(1)  # (B, C*H*W)
    black = (flat.amax(dim=1) <= BLACK_LEVEL)
    if black.any():
        return f"{int(black.sum())} of {images.shape[0]} images are all black"
    return None


def guarded_decode(
    decode: Callable[[torch.Tensor, torch.dtype], torch.Tensor],
    latents: torch.Tensor,
    policy: PrecisionPolicy,
) -> torch.Tensor:
    """Decode latents with the NaN/black guard.

    ``decode(latents, dtype)`` must run the decoder in ``dtype`` and return images (B, C, H, W)
    in [-1, 1]. The first try uses the policy dtype; a bad result is retried once in fp32.
    """
    check_latents(latents)
    images = decode(latents, policy.dtype)
    problem = image_problem(images)
    if problem is None:
        return images
    if policy.dtype == policy.vae_fallback_dtype:
        raise GenerationFailed(f"decoded image rejected: {problem}", code="bad_decode")
    log.warning("decode in %s gave %s; retrying once in %s", policy.dtype, problem, policy.vae_fallback_dtype)
    images = decode(latents.to(policy.vae_fallback_dtype), policy.vae_fallback_dtype)
    problem = image_problem(images)
    if problem is not None:
        raise GenerationFailed(f"decoded image rejected after an fp32 retry: {problem}", code="bad_decode")
    return images
