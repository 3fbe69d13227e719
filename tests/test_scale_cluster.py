"""The Redis backend as deployed: 2 API servers and 3 workers, each its own process, on loopback.

redis-server is the real Debian server; S3 is moto in server mode — a stand-in for a real
S3-compatible store. The workers run the fake colour model with a small per-step delay (the
tiny real FLUX runs in test_scale_tiny_flux.py). 200 jobs go in concurrently through both
servers; one worker is SIGKILLed while it runs a job. Every job must end succeeded exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import httpx
import pytest
import redis

from tests.scale_support import Cluster, moto_s3, redis_server, scale_env
from tests.service_support import sse_events

pytestmark = pytest.mark.slow
BUCKET = "scale-test"
N_JOBS = 200


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    with redis_server(tmp / "redis") as rs, moto_s3() as s3:
        env = scale_env(
            rs.url,
            s3,
            BUCKET,
            ZAOXIANG_SERVICE__REDIS__HEARTBEAT_S="0.5",
            ZAOXIANG_SERVICE__REDIS__CLAIM_TIMEOUT_S="3",
            ZAOXIANG_SERVICE__MAX_QUEUED="1000",
            ZAOXIANG_SERVICE__RATE_BURST="1000",
            ZAOXIANG_SERVICE__RATE_PER_MINUTE="60000",
            ZAOXIANG_SERVICE__PREVIEWS="false",
        )
        cluster = Cluster(tmp, env)
        apis = [cluster.api("api-a"), cluster.api("api-b")]
        workers = [cluster.worker(f"worker-{i}", step_delay=0.04) for i in range(3)]
        try:
            cluster.wait_ready()
            yield cluster, apis, workers, rs, s3
        finally:
            cluster.stop()


class EventLog:
    """Every job event any process publishes, read straight from Redis pub/sub."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("zx:ev:*")
        self.events: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.pubsub.get_message(timeout=0.2)
            if msg and msg["type"] == "pmessage":
                self.events.append(json.loads(msg["data"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()


def _worker_running_a_job(r: redis.Redis, workers) -> tuple[object, str]:
    """A worker process that is running a job now, and that job's id (from its heartbeat record)."""
    by_pid = {w.proc.pid: w for w in workers if w.proc.poll() is None}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for key in r.scan_iter("zx:worker:*"):
            rec = r.hgetall(key)
            jobs = json.loads(rec.get("jobs", "[]"))
            pid = int(key.split(":")[-2])
            if jobs and pid in by_pid:
                job = json.loads(r.hget(f"zx:job:{jobs[0]}", "data") or "{}")
                if r.hget(f"zx:job:{jobs[0]}", "status") == "running" and job:
                    return by_pid[pid], jobs[0]
        time.sleep(0.05)
    raise AssertionError("no worker reported a running job")


def test_200_jobs_through_two_servers_survive_a_killed_worker(deployment):
    cluster, apis, workers, rs, s3 = deployment
    r = redis.Redis.from_url(rs.url, decode_responses=True)
    log = EventLog(rs.url)
    clients = [httpx.Client(base_url=a.url, timeout=60) for a in apis]
    try:

        def submit(i: int) -> str:
            resp = clients[i % 2].post("/v1/jobs", json={"prompt": f"job number {i}", "seed": 1000 + i})
            assert resp.status_code == 202, resp.text
            return resp.json()["id"]

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(submit, i) for i in range(N_JOBS)]
            victim, victim_job = _worker_running_a_job(r, workers)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            ids = [f.result() for f in futures]
        assert len(set(ids)) == N_JOBS

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = [r.hget(f"zx:job:{i}", "status") for i in ids]
            if all(s in ("succeeded", "failed", "cancelled") for s in statuses):
                break
            time.sleep(0.5)
        time.sleep(1.0)  # let any late (duplicate) completion land before counting
        jobs = [clients[n % 2].get(f"/v1/jobs/{i}").json() for n, i in enumerate(ids)]
    finally:
        log.close()
        for c in clients:
            c.close()

    assert [j["status"] for j in jobs] == ["succeeded"] * N_JOBS
    by_id = {j["id"]: j for j in jobs}
    assert by_id[victim_job]["attempts"] == 2  # the killed worker's job ran again elsewhere
    assert sum(j["attempts"] for j in jobs) == N_JOBS + 1

    # Exactly once: one "succeeded" event per job, one image per job, one object per image.
    succeeded = {}
    for ev in log.events:
        if ev["type"] == "succeeded":
            succeeded[ev["job_id"]] = succeeded.get(ev["job_id"], 0) + 1
    assert succeeded == {i: 1 for i in ids}
    images = [im["id"] for j in jobs for im in j["images"]]
    assert len(images) == N_JOBS and len(set(images)) == N_JOBS
    s3c = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    keys = [o["Key"] for page in s3c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get("Contents", [])]
    assert sorted(keys) == sorted(f"images/{i}" for i in images)
    # Nothing left claimed or queued.
    assert r.zcard("zx:queued") == 0
    assert r.xpending("zx:s:fake", "workers")["pending"] == 0


def test_cancel_from_the_other_server_stops_the_running_job(deployment):
    cluster, apis, *_ = deployment
    with httpx.Client(base_url=apis[0].url, timeout=60) as a, httpx.Client(base_url=apis[1].url, timeout=60) as b:
        job = a.post("/v1/jobs", json={"prompt": "a long one", "seed": 7, "steps": 150}).json()
        deadline = time.monotonic() + 30
        while a.get(f"/v1/jobs/{job['id']}").json()["progress"] is None:  # running, past step 1
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        cancelled = b.delete(f"/v1/jobs/{job['id']}").json()
        assert cancelled["status"] == "cancelled", cancelled
        assert time.monotonic() - t0 < 5  # within a few steps, not the 6 s the job would take
        assert cancelled["error"]["code"] == "cancelled" and "step" in cancelled["error"]["message"]
        assert a.get(f"/v1/jobs/{job['id']}").json()["images"] == []


def test_sse_progress_arrives_through_the_server_that_did_not_submit(deployment):
    cluster, apis, *_ = deployment
    with httpx.Client(base_url=apis[0].url, timeout=60) as a, httpx.Client(base_url=apis[1].url, timeout=60) as b:
        job = a.post("/v1/jobs", json={"prompt": "watch me", "seed": 11, "steps": 12}).json()
        events = sse_events(b, f"/v1/jobs/{job['id']}/events", timeout=60)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "succeeded"
    steps = [d["step"] for e, d in events if e == "progress"]
    assert steps and steps[-1] == 12 and steps == sorted(steps)
    assert len(steps) >= 6  # streamed live, not just a final snapshot
