"""The service's own overhead per job, on the tiny random Flux model.

    .venv/bin/python bench/service.py [--jobs 30]

Starts the real app (uvicorn, real worker, SQLite queue, local store) on loopback, submits jobs
one at a time and follows each over SSE. For every job:
  submit     POST /v1/jobs round trip (validation, queue insert, 202)
  e2e        POST sent → `succeeded` event received
  engine     the runner's own total (load + encode + denoise + decode), from the job's timings
  overhead   e2e − engine: queueing, claim, events, PNG encode with metadata, store, DB updates
  cache hit  a repeated seeded POST answered from the cache (200, no queueing)
Prints p50 and p95 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import sys

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.service_support
from tests.service_support import live_server  # noqa: E402
from zaoxiang.settings import Settings  # noqa: E402
from zaoxiang.testing.tiny_models import save_tiny_model  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def follow(client: httpx.Client, url: str) -> float:
    with client.stream("GET", url) as resp:
        for line in resp.iter_lines():
            if line.startswith("event: ") and line[7:] in ("succeeded", "failed", "cancelled"):
                if line[7:] != "succeeded":
                    raise RuntimeError(f"job ended {line[7:]}")
                return time.perf_counter()
    raise RuntimeError("stream ended without a result")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_model("flux", Path(tmp) / "tiny-flux")
        settings = Settings.load(
            data_dir=Path(tmp) / "data", models=[f"tiny={folder}"], builtin=False, engine={"device": "cpu"},
            service={"rate_per_minute": 1e6, "rate_burst": 10**6, "previews": False},
        )  # fmt: skip
        rows: dict[str, list[float]] = {"submit": [], "e2e": [], "engine": [], "overhead": [], "cache hit": []}
        with live_server(settings) as live, httpx.Client(base_url=live.url, timeout=300) as c:
            body = {"prompt": "warm-up", "width": args.size, "height": args.size, "steps": args.steps, "seed": 0}
            c.post("/v1/jobs", json=body, headers={"Prefer": "wait=300"})  # load the model once
            for i in range(args.jobs):
                body = {**body, "prompt": f"a red apple {i}", "seed": i + 1}
                t0 = time.perf_counter()
                r = c.post("/v1/jobs", json=body)
                t1 = time.perf_counter()
                done = follow(c, r.json()["urls"]["events"])
                job = c.get(f"/v1/jobs/{r.json()['id']}").json()
                engine = job["timings"]["total_s"]
                rows["submit"].append(t1 - t0)
                rows["e2e"].append(done - t0)
                rows["engine"].append(engine)
                rows["overhead"].append(done - t0 - engine)
                t2 = time.perf_counter()
                hit = c.post("/v1/jobs", json=body)
                rows["cache hit"].append(time.perf_counter() - t2)
                assert hit.json()["cache_hit"], hit.text
    print(f"service overhead, tiny Flux {args.size}x{args.size}, {args.steps} steps, {args.jobs} jobs, CPU")
    print(f"{'':<10} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9}")
    for name, xs in rows.items():
        print(f"{name:<10} {pct(xs, 0.5) * 1e3:>9.1f} {pct(xs, 0.95) * 1e3:>9.1f} {statistics.mean(xs) * 1e3:>9.1f}")
    print(json.dumps({k: {"p50_ms": round(pct(v, 0.5) * 1e3, 2), "p95_ms": round(pct(v, 0.95) * 1e3, 2)} for k, v in rows.items()}))


if __name__ == "__main__":
    main()
