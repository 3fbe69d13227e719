"""The built-in model's cheap live preview: latents -> RGB by a fitted linear map.

A preview through the autoencoder's decoder costs as much on the CPU as a denoising step, so the
engine's throttle (engine/previews.py) could show one only every ~5 steps there. Each latent cell
stands for an 8×8 pixel block; ``scripts/fit_preview.py`` fits that block's mean colour from the
cell's channels by least squares on training renders and stores the factors beside the weights
(``preview_rgb.json``). Applying them is one small matmul, so every step can have a preview. They
belong to one autoencoder: a file fitted for another one is ignored (logged) and previews decode.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

PREVIEW_NAME = "preview_rgb.json"
PREVIEW_SIDE = 128  # pixels, as the decoded preview
log = logging.getLogger(__name__)


def autoencoder_revision(state: dict[str, torch.Tensor]) -> str:
    """First 12 hex digits of a sha256 over the autoencoder's tensors (names, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class LinearPreview:
    weight: torch.Tensor  # (C, 3) fp32
    bias: torch.Tensor  # (3,) fp32

    @classmethod
    def load(cls, folder: Path, autoencoder_state: dict[str, torch.Tensor], channels: int) -> "LinearPreview | None":
        """The folder's fitted factors, or None when it has none or they were fitted for another
        autoencoder or channel count (then previews decode, as before the file existed)."""
        path = Path(folder) / PREVIEW_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            weight = torch.tensor(data["weight"], dtype=torch.float32)
            bias = torch.tensor(data["bias"], dtype=torch.float32)
            fitted_for = data["autoencoder_revision"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: %s", path, exc)
            return None
        if weight.shape != (channels, 3) or bias.shape != (3,):
            log.warning("ignoring %s: factors %s / %s do not fit %d latent channels", path, tuple(weight.shape),
                        tuple(bias.shape), channels)
            return None
        if fitted_for != autoencoder_revision(autoencoder_state):
            log.warning("ignoring %s: fitted for another autoencoder (scripts/fit_preview.py refits it)", path)
            return None
        return cls(weight, bias)

    def __call__(self, latents: torch.Tensor) -> Image.Image:
        """The first image of ``latents`` (B, C, h, w) as a PREVIEW_SIDE² RGB image."""
        z = latents[0].float().cpu().permute(1, 2, 0)  # (h, w, C)
        rgb = (z @ self.weight + self.bias).clamp(-1, 1)  # (h, w, 3) in [-1, 1]
        pixels = ((rgb + 1) * 127.5).round().to(torch.uint8).numpy()
        return Image.fromarray(pixels, "RGB").resize((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BILINEAR)
