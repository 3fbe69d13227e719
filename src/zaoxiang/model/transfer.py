"""Host-to-device copies that do not stall the host.

A copy from pageable host memory waits for every kernel queued before it on the stream, so each
small ``torch.tensor(..., device="cuda")`` inside a training step (sprite rows, background colours,
token ids) drains the GPU's queue and serialises the CPU's data work with the GPU's compute. From
pinned memory with ``non_blocking=True`` the copy is queued like a kernel instead; PyTorch's
pinned-memory cache keeps the host buffer alive until the copy has run.
"""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` (a host tensor) on ``device``; on CUDA via pinned memory without a host sync."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
