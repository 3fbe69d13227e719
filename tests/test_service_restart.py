"""Kill the server mid-queue with SIGKILL, start it again on the same data: every job completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service_support import free_port

ROOT = Path(__file__).resolve().parent.parent


def start(data_dir: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.service_serve_fake", "--step-delay", "0.1", "--steps", "5", "--",
           "serve", "--port", str(port), "--data-dir", str(data_dir)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not become ready")


@pytest.mark.slow
def test_sigkill_mid_queue_then_restart_completes_every_job(tmp_path):
    port = free_port()
    proc = start(tmp_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            ids = [c.post("/v1/jobs", json={"prompt": f"job {i}", "seed": i}).json()["id"] for i in range(5)]
            while c.get(f"/v1/jobs/{ids[1]}").json()["status"] != "running":  # one done, one mid-run
                time.sleep(0.02)
            time.sleep(0.15)
            before = {i: c.get(f"/v1/jobs/{i}").json()["status"] for i in ids}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert before[ids[0]] == "succeeded" and before[ids[1]] == "running"
    assert all(before[i] == "queued" for i in ids[2:])

    proc = start(tmp_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            deadline = time.monotonic() + 60
            while True:
                jobs = [c.get(f"/v1/jobs/{i}").json() for i in ids]
                if all(j["status"] == "succeeded" for j in jobs) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert [j["status"] for j in jobs] == ["succeeded"] * 5
            assert jobs[1]["attempts"] == 2  # the interrupted job ran again
            assert [j["attempts"] for j in jobs[2:]] == [1, 1, 1]
            for j in jobs:
                assert c.get(j["images"][0]["url"]).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
