"""Throughput of the dataset builder: render_batch and full TrainStream batches. Prints a table.

    .venv/bin/python bench/data_render.py [--pack assets/sprite_pack.zip] [--device cpu|cuda] [--batch 64]

render_batch is timed with each compositor (``boxes``: box by box; ``layers``: every image's k-th
box at once), so one run shows which suits the device; TrainStream uses ``auto``.
"""

from __future__ import annotations

import argparse
import time

import torch

from zaoxiang.training.data import SceneSampler, SpritePack, TrainStream, render_batch


def _time(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", default="assets/sprite_pack.zip")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    pack = SpritePack.load(args.pack, args.device)
    load_s = time.perf_counter() - t0
    sync = torch.cuda.synchronize if pack.device.type == "cuda" else (lambda: None)
    specs = SceneSampler(pack, seed=0).sample_batch(args.batch)
    stream = TrainStream(pack, args.batch, seed=0)
    render_s = {m: _time(lambda m=m: render_batch(specs, pack, 256, method=m), args.repeats, sync)
                for m in ("boxes", "layers")}
    sample_s = _time(lambda: SceneSampler(pack, seed=1).sample_batch(args.batch), args.repeats, sync)
    stream_s = _time(lambda: next(stream), args.repeats, sync)

    print(f"device {pack.device}, torch threads {torch.get_num_threads()}, batch {args.batch}, 256x256")
    print(f"{'step':<28}{'s/batch':>10}{'images/s':>12}")
    print(f"{'pack load (once)':<28}{load_s:>10.2f}{'':>12}")
    print(f"{'sample specs':<28}{sample_s:>10.4f}{args.batch / sample_s:>12.0f}")
    for m, sec in render_s.items():
        print(f"{'render_batch ' + m:<28}{sec:>10.4f}{args.batch / sec:>12.0f}")
    print(f"{'TrainStream (all of it)':<28}{stream_s:>10.4f}{args.batch / stream_s:>12.0f}")


if __name__ == "__main__":
    main()
