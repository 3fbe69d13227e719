"""A stand-in for E5TextEncoder in fast tests: same ``encode`` signature and ``hidden_size``,
deterministic per-character embeddings (so different captions give different states)."""

from __future__ import annotations

import torch
from torch import nn


class StubTextEncoder(nn.Module):
    hidden_size = 384

    def __init__(self, seed: int = 0, features: str = "last") -> None:
        super().__init__()
        self.features = features  # "last+embed" appends the raw table row, like E5TextEncoder's
        self.feature_dim = self.hidden_size * (2 if features == "last+embed" else 1)
        gen = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(4096, self.hidden_size, generator=gen), requires_grad=False)
        self.pos = nn.Parameter(torch.randn(512, self.hidden_size, generator=gen) * 0.1, requires_grad=False)

    def with_features(self, features: str) -> "StubTextEncoder":
        if features == self.features:
            return self
        other = StubTextEncoder(features=features)
        other.table, other.pos = self.table, self.pos
        return other

    @torch.inference_mode()
    def encode(self, texts: list[str], max_length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [[1] + [2 + (ord(ch) % 4000) for ch in t][: max_length - 2] + [3] for t in texts]
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)  # (B, L)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)  # (B, L)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        hidden = self.table[ids] + self.pos[:length]  # (B, L, 384)
        if self.features == "last+embed":
            hidden = torch.cat([hidden, self.table[ids]], dim=-1)  # (B, L, 768)
        return hidden.to(self.table.device), mask.to(self.table.device)
