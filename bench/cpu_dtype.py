"""Which dtype should the engine use on this CPU? Times matmuls and a transformer-ish block.

    .venv/bin/python bench/cpu_dtype.py

Prints a table; the precision policy (engine/precision.py) cites the result.
"""

from __future__ import annotations

import time

import torch


def bench(fn, reps: int = 5) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for n in (256, 1024):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            a = torch.randn(n, 384, dtype=dtype)
            w = torch.randn(384, 1536, dtype=dtype)
            s = bench(lambda: a @ w)
            rows.append((f"matmul {n}x384x1536", str(dtype).removeprefix("torch."), s * 1e3, 2 * n * 384 * 1536 / s / 1e9))
    layer = torch.nn.TransformerEncoderLayer(384, 6, 1536, batch_first=True).eval()
    x = torch.randn(2, 288, 384)
    for dtype in (torch.float32, torch.bfloat16):
        m = layer.to(dtype)
        xi = x.to(dtype)
        with torch.inference_mode():
            s = bench(lambda: m(xi))
        rows.append(("encoder layer B2 L288 D384", str(dtype).removeprefix("torch."), s * 1e3, float("nan")))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'op':<30} {'dtype':<9} {'ms':>8} {'GFLOP/s':>8}")
    for op, dt, ms, gf in rows:
        print(f"{op:<30} {dt:<9} {ms:8.2f} {gf:8.1f}")


if __name__ == "__main__":
    main()
