"""Training checkpoints (everything needed to resume) and export of shippable weights.

A checkpoint is one ``torch.save`` file: model, EMA, optimizer, step, RNG states, the model and
training configs, and for the transformer stage the frozen autoencoder, so a transformer run
directory alone can be exported. ``latest.pt`` is written atomically (temp file + rename) so a
run killed mid-save never leaves a broken resume point.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zaoxiang.model.config import ModelConfig
from zaoxiang.model.serialization import DEFAULT_MAX_SHARD_BYTES, save_weights

LATEST = "latest.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path | str, payload: dict[str, Any], keep_step_copy: bool = False) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{LATEST}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, run_dir / LATEST)
    if keep_step_copy:
        (run_dir / f"step-{payload['step']:07d}.pt").write_bytes((run_dir / LATEST).read_bytes())
    return run_dir / LATEST


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / LATEST
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # weights_only=False: the payload holds RNG states and plain config dicts we wrote ourselves.
    return torch.load(path, map_location=map_location, weights_only=False)


def export_checkpoint(
    ckpt_path: Path | str, out_dir: Path | str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
) -> list[Path]:
    """Write the EMA transformer + the autoencoder of a transformer-stage checkpoint as a bf16
    weights folder (what ``zaoxiang.model.pipeline`` loads)."""
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("stage") != "dit":
        raise ValueError(f"{ckpt_path} is a {ckpt.get('stage')!r} checkpoint; export needs a 'dit' one")
    config = ModelConfig.from_dict(ckpt["model_config"])
    return save_weights(out_dir, config, ckpt["ema"]["module"], ckpt["autoencoder"], max_shard_bytes=max_shard_bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="export a transformer-stage checkpoint as shippable weights")
    parser.add_argument("checkpoint", help="checkpoint file or run directory (uses latest.pt)")
    parser.add_argument("out", help="weights folder to write")
    parser.add_argument("--max-shard-mb", type=float, default=DEFAULT_MAX_SHARD_BYTES / 2**20)
    args = parser.parse_args(argv)
    for path in export_checkpoint(args.checkpoint, args.out, int(args.max_shard_mb * 2**20)):
        print(f"{path}  {path.stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
