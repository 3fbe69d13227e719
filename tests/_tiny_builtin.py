"""Helpers for tests of the built-in model at the ``tiny`` preset: a repeating stream, and random
weights whose gates are not zero (a freshly built MMDiT ignores its text, guidance and LoRAs:
every gate and the output layer start at zero)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.serialization import save_weights


class RepeatBatch:
    """A stream that repeats one batch, so a loss can only fall by learning it."""

    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


@torch.no_grad()
def perturb_(module: nn.Module, std: float = 0.2) -> nn.Module:
    """Add N(0, std) noise to every parameter (torch's global generator: seed it first)."""
    for p in module.parameters():
        p.add_(torch.randn_like(p) * std)
    return module


def save_tiny_builtin(folder: Path) -> MMDiT:
    """Write a tiny random built-in weights folder (seed 0, perturbed gates); returns its MMDiT."""
    cfg = preset("tiny")
    torch.manual_seed(0)
    dit, ae = MMDiT(cfg.transformer), Autoencoder(cfg.autoencoder)
    perturb_(dit)
    save_weights(folder, cfg, dit.state_dict(), ae.state_dict())
    return dit
