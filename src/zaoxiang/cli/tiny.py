"""``zaoxiang tiny-model FAMILY OUT_DIR``: write a tiny random diffusers folder of a real architecture.

For trying the engine, the CLI and the API without real weights (which are never downloaded):
``zaoxiang tiny-model flux /tmp/tiny-flux && zaoxiang generate --model /tmp/tiny-flux "a red apple"``.
The pictures are noise-like; the pipeline, sizes, scheduler and file format are the real ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zaoxiang.errors import InvalidRequest
from zaoxiang.testing.tiny_models import FAMILIES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tiny-model", help="write a tiny random model folder (flux, qwen-image, z-image, sd3, sdxl) for tests and demos")
    p.add_argument("family", choices=FAMILIES, help="which architecture")
    p.add_argument("out_dir", type=Path, help="folder to create (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out_dir
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidRequest(f"{out} already exists and is not an empty folder", field="out_dir")
    from zaoxiang.testing.tiny_models import save_tiny_model  # imports torch/diffusers: only when used

    save_tiny_model(args.family, out, seed=args.seed)
    print(f"wrote a tiny random {args.family} model to {out}")
    return 0
