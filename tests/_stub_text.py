"""A stand-in for E5TextEncoder in fast tests: same ``encode`` signature and ``hidden_size``,
deterministic per-character embeddings (so different captions give different states)."""

from __future__ import annotations

import torch
from torch import nn


class StubTextEncoder(nn.Module):
    hidden_size = 384

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(4096, self.hidden_size, generator=gen), requires_grad=False)
        self.pos = nn.Parameter(torch.randn(512, self.hidden_size, generator=gen) * 0.1, requires_grad=False)

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
        return hidden.to(self.table.device), mask.to(self.table.device)
