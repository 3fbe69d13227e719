"""Fit the built-in model's cheap live preview: a linear map from latents to RGB.

    .venv/bin/python scripts/fit_preview.py --pack .stage/pack.zip            # writes into the shipped weights
    .venv/bin/python scripts/fit_preview.py --pack PACK --weights DIR --batches 8

A preview decoded through the autoencoder costs as much on the CPU as a denoising step, so a
served job could show one only every ~5 steps (engine/previews.py). Each latent cell covers an
8×8 pixel block, and a least-squares fit of that block's mean colour from the cell's channels
(plus a bias) is close enough to show what is forming: the "latent2rgb" preview other diffusion
front ends use. Fitted on training renders encoded by the folder's own autoencoder, so it must be
refitted when the autoencoder changes (its revision is stored with the factors and checked at load).
Writes ``preview_rgb.json`` into the weights folder: ``weight`` (C × 3), ``bias`` (3), the fit's
R² per colour on held-back renders, and the autoencoder's revision.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.preview import PREVIEW_NAME, autoencoder_revision
from zaoxiang.model.serialization import default_weights_dir, load_weights
from zaoxiang.training.data import SpritePack, TrainStream


def cells(ae: Autoencoder, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) in [-1, 1] -> latents as rows (B·h·w, C) and the mean colour of each cell (B·h·w, 3)."""
    z = ae.encode_latents(images, sample=False)  # (B, C, h, w), the denoiser's normalised space
    colour = F.avg_pool2d(images, images.shape[-1] // z.shape[-1])  # (B, 3, h, w)
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), colour.permute(0, 2, 3, 1).reshape(-1, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", type=Path, required=True, help="the sprite pack (training renders)")
    ap.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped one)")
    ap.add_argument("--batches", type=int, default=6, help="batches of 64 renders to fit on (one more is held back)")
    args = ap.parse_args(argv)
    if not 1 <= args.batches <= 100:
        ap.error(f"--batches must be between 1 and 100, got {args.batches}")
    folder = args.weights or default_weights_dir()
    config, _, a_sd = load_weights(folder)
    ae = Autoencoder(config.autoencoder)
    ae.load_state_dict(a_sd)
    ae.eval()
    stream = TrainStream(SpritePack.load(args.pack, "cpu"), 64, seed=1234, split="train", size=config.image_size)
    with torch.no_grad():
        rows = [cells(ae, next(stream).images.float()) for _ in range(args.batches + 1)]
    x = torch.cat([torch.cat([z, torch.ones(len(z), 1)], 1) for z, _ in rows[:-1]])  # (N, C + 1)
    y = torch.cat([c for _, c in rows[:-1]])  # (N, 3)
    solution = torch.linalg.lstsq(x, y).solution  # (C + 1, 3)
    z_test, y_test = rows[-1]
    pred = z_test @ solution[:-1] + solution[-1]
    r2 = 1 - ((pred - y_test) ** 2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0)
    out = {
        "weight": [[round(v, 6) for v in row] for row in solution[:-1].tolist()],
        "bias": [round(v, 6) for v in solution[-1].tolist()],
        "r2_rgb_heldback": [round(v, 4) for v in r2.tolist()],
        "autoencoder_revision": autoencoder_revision(a_sd),
        "fitted_on": f"{args.batches * 64} training renders, {len(x)} latent cells",
    }
    (folder / PREVIEW_NAME).write_text(json.dumps(out) + "\n")
    print(f"wrote {folder / PREVIEW_NAME}: R² on held-back renders (R, G, B) {out['r2_rgb_heldback']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
