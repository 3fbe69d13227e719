"""A small convolutional VAE that we train ourselves (no SD VAE / TAESD exists offline).

Why latents rather than pixels: at 256² an f8 autoencoder turns the image into 32×32×C latents, so
the transformer sees 256 tokens at patch 2 instead of 4,096 pixel patches of 4×4 (or 1,024 of 8×8,
which loses detail); the decoder costs a few tens of ms on a CPU (bench/builtin_cpu.py).

Layout (SD-VAE style, slimmed): conv_in → per level [ResBlock × n, stride-2 conv] → ResBlock →
GroupNorm/SiLU/conv → (mean, logvar); the decoder mirrors it with nearest-neighbour upsampling.
The per-channel latent statistics measured after training (``latent_mean`` / ``latent_std``
buffers) normalise latents to roughly unit variance for the transformer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zaoxiang.model.config import AutoencoderConfig


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(8, channels // 4), num_channels=channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Ci, H, W) -> (B, Co, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        ch = cfg.channels
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.levels = nn.ModuleList()
        c_prev = ch[0]
        for i, c in enumerate(ch):
            blocks: list[nn.Module] = []
            for _ in range(cfg.blocks_per_level):
                blocks.append(ResBlock(c_prev, c))
                c_prev = c
            if i < len(ch) - 1:
                blocks.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            self.levels.append(nn.Sequential(*blocks))
        self.mid = ResBlock(c_prev, c_prev)
        self.norm_out = _norm(c_prev)
        self.conv_out = nn.Conv2d(c_prev, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 2C, H/f, W/f)
        h = self.conv_in(x)
        for level in self.levels:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        ch = tuple(reversed(cfg.channels))
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        self.mid = ResBlock(ch[0], ch[0])
        self.levels = nn.ModuleList()
        c_prev = ch[0]
        for i, c in enumerate(ch):
            blocks: list[nn.Module] = []
            for _ in range(cfg.blocks_per_level):
                blocks.append(ResBlock(c_prev, c))
                c_prev = c
            if i < len(ch) - 1:
                # The conv after upsampling already narrows to the next level's width: convs at the
                # highest resolutions dominate CPU decode time (bench/builtin_cpu.py).
                blocks.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                blocks.append(nn.Conv2d(c, ch[i + 1], 3, padding=1))
                c_prev = ch[i + 1]
            self.levels.append(nn.Sequential(*blocks))
        self.norm_out = _norm(c_prev)
        self.conv_out = nn.Conv2d(c_prev, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, 3, h*f, w*f)
        h = self.mid(self.conv_in(z))
        for level in self.levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Autoencoder(nn.Module):
    """Images in [-1, 1] ↔ latents. ``encode``/``decode`` work on raw latents; the ``*_latents``
    pair works on normalised latents (what the transformer is trained on)."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> mean, logvar, each (B, C, H/f, W/f)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) raw latents -> (B, 3, h*f, w*f) images, unclamped."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Reconstruct (training): returns recon (B, 3, H, W), mean, logvar."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + eps * (0.5 * logvar).exp()
        return self.decode(z), mean, logvar

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1)
        return (self.latent_mean.to(like.dtype).view(shape), self.latent_std.to(like.dtype).view(shape))

    def encode_latents(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> normalised latents (B, C, H/f, W/f)."""
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        m, s = self._stats(z)
        return (z - m) / s

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, h, w) -> images (B, 3, H, W) clamped to [-1, 1]."""
        m, s = self._stats(z)
        return self.decode(z * s + m).clamp(-1.0, 1.0)

    @torch.no_grad()
    def set_latent_stats(self, raw_latents: torch.Tensor) -> None:
        """Store per-channel mean/std of raw latents (N, C, h, w) for normalisation."""
        flat = raw_latents.float().transpose(0, 1).flatten(1)  # (C, N*h*w)
        self.latent_mean.copy_(flat.mean(dim=1))
        self.latent_std.copy_(flat.std(dim=1).clamp_min(1e-4))


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent element, averaged."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
