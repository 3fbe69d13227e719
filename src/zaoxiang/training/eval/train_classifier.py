"""Retrain the evaluation classifier and write it to ``weights/classifier.safetensors``.

    python -m zaoxiang.training.eval.train_classifier --pack assets/sprite_pack.zip --steps 3000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from zaoxiang.training.data import SpritePack
from zaoxiang.training.eval.classifier import accuracy, default_weights_path, train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pack", default="assets/sprite_pack.zip")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout", type=int, default=3000, help="held-out renders to measure accuracy on")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu or cuda (renders and trains there)")
    p.add_argument("--out", type=Path, default=default_weights_path())
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pack = SpritePack.load(args.pack, args.device)
    clf = train(pack, args.steps, args.batch_size, args.lr, args.seed)
    clf.heldout_accuracy = round(accuracy(clf, pack, args.heldout, seed=args.seed + 1), 4)
    clf.save(args.out)
    print(f"held-out accuracy {clf.heldout_accuracy:.4f} on {args.heldout} renders "
          f"({len(clf.classes)} classes); {time.perf_counter() - start:.0f}s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
