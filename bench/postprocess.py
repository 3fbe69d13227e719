"""Decoded image -> PIL: diffusers' VaeImageProcessor.postprocess against engine.pixels.postprocess_pil.

    .venv/bin/python bench/postprocess.py [--device cuda] [--sizes 1024,2048] [--repeats 9]

Prints one table row per (device, size): median ms of each, and whether the pixels are equal. The
input is a decoded batch of one (1, 3, S, S) in [-1, 1] in fp32, as the engine's decode hands it on.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def median_ms(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from diffusers.image_processor import VaeImageProcessor

    from zaoxiang.engine.pixels import postprocess_pil

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", default="1024,2048")
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    proc = VaeImageProcessor(vae_scale_factor=8)
    print("| device | size | diffusers postprocess ms | zaoxiang postprocess_pil ms | speed-up | same pixels |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        g = torch.Generator().manual_seed(0)
        images = (torch.rand(1, 3, size, size, generator=g) * 2 - 1).to(device)  # (1, 3, S, S) fp32
        stock = median_ms(lambda: proc.postprocess(images, output_type="pil"), device, args.repeats)
        ours = median_ms(lambda: postprocess_pil(proc, images), device, args.repeats)
        same = np.array_equal(np.asarray(postprocess_pil(proc, images)[0]),
                              np.asarray(proc.postprocess(images, output_type="pil")[0]))
        print(f"| {device} | {size}² | {stock:.1f} | {ours:.1f} | {stock / ours:.1f}× | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
