"""Jobs per minute against the number of workers, on the Redis backend.

    .venv/bin/python bench/scale.py [--jobs 30] [--workers 1,2,3] [--fake --step-delay 0.05]

For each worker count: a fresh redis-server and moto S3 server (a stand-in for real object
storage) on loopback, one API-only `zaoxiang serve` and N `zaoxiang worker` processes on the
tiny random FluxPipeline (or, with --fake, the colour model whose steps sleep — a stand-in for
a GPU-bound worker that leaves the CPU free). Submits all jobs at once through the API, then
times from the first submit to the last job finishing (workers are started and warm before).

On a machine with fewer cores than workers, CPU-bound tiny-FLUX workers share the cores and the
table shows the CPU limit, not the queue's; --fake measures the queue's scaling itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.scale_support
from tests.scale_support import Cluster, moto_s3, redis_server, scale_env  # noqa: E402
from zaoxiang.testing.tiny_models import save_tiny_model  # noqa: E402


def one_run(tmp: Path, workers: int, jobs: int, folder: Path | None, step_delay: float, steps: int) -> tuple[float, int]:
    with redis_server(tmp / "redis") as rs, moto_s3() as s3:
        env = scale_env(rs.url, s3, "bench", ZAOXIANG_SERVICE__PREVIEWS="false", ZAOXIANG_SERVICE__RATE_BURST="100000")
        cluster = Cluster(tmp, env)
        if folder is not None:
            api = cluster.api("api", fake=False, extra=["--model", f"tiny={folder}"])
            for i in range(workers):
                cluster.worker(f"w{i}", fake=False, extra=["--model", f"tiny={folder}", "--preload", "tiny"])
            body = {"model": "tiny", "width": 64, "height": 64, "steps": steps}
        else:
            api = cluster.api("api")
            for i in range(workers):
                cluster.worker(f"w{i}", step_delay=step_delay, steps=steps)
            body = {"steps": steps}
        try:
            cluster.wait_ready(timeout=180)
            with httpx.Client(base_url=api.url, timeout=120) as c:
                t0 = time.perf_counter()
                with ThreadPoolExecutor(8) as pool:
                    ids = list(pool.map(lambda i: c.post("/v1/jobs", json={"prompt": f"bench {i}", "seed": i, **body}).json()["id"], range(jobs)))
                pending = set(ids)
                ok = 0
                while pending:
                    for job_id in list(pending):
                        status = c.get(f"/v1/jobs/{job_id}").json()["status"]
                        if status in ("succeeded", "failed", "cancelled"):
                            pending.discard(job_id)
                            ok += status == "succeeded"
                    time.sleep(0.1)
                return time.perf_counter() - t0, ok
        finally:
            cluster.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--fake", action="store_true", help="the sleeping colour model instead of the tiny FLUX")
    ap.add_argument("--step-delay", type=float, default=0.05)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        folder = None if args.fake else save_tiny_model("flux", Path(d) / "tiny-flux")
        model = f"fake colour model, {args.step_delay * 1000:g} ms/step" if args.fake else "tiny FLUX (CPU)"
        print(f"{args.jobs} jobs of {args.steps} steps, 64x64, {model}; 1 API server")
        print(f"{'workers':>7} {'seconds':>8} {'jobs/min':>9} {'speed-up':>9} {'ok':>4}")
        base = None
        for n in (int(x) for x in args.workers.split(",")):
            secs, ok = one_run(Path(d) / f"run{n}", n, args.jobs, folder, args.step_delay, args.steps)
            rate = args.jobs / secs * 60
            base = base or rate
            print(f"{n:>7} {secs:>8.1f} {rate:>9.0f} {rate / base:>8.2f}x {ok:>4}", flush=True)


if __name__ == "__main__":
    main()
