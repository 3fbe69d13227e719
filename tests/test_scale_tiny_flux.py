"""The real commands on a real architecture: `zaoxiang serve` (API only) and `zaoxiang worker`
around redis-server, with a tiny random FluxPipeline folder loaded by the real diffusers adapter.
S3 is moto in server mode (a stand-in), in presigned-URL mode: the API answers an image request
with a redirect to the object store."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from tests.scale_support import Cluster, moto_s3, redis_server, scale_env
from tests.service_support import sse_events
from zaoxiang.engine.metadata import read_metadata
from zaoxiang.testing.tiny_models import save_tiny_model

pytestmark = pytest.mark.slow
SMALL = {"width": 64, "height": 64, "steps": 2}


def test_tiny_flux_job_runs_on_a_worker_process_and_is_served_from_s3(tmp_path):
    folder = save_tiny_model("flux", tmp_path / "tiny-flux")
    with redis_server(tmp_path / "redis") as rs, moto_s3() as s3:
        env = scale_env(rs.url, s3, "tiny", ZAOXIANG_SERVICE__S3__URL_MODE="presigned")
        cluster = Cluster(tmp_path, env)
        api = cluster.api("api", fake=False, extra=["--model", f"tiny={folder}"])
        cluster.worker("gpu0", fake=False, extra=["--model", f"tiny={folder}", "--preload", "tiny"])
        try:
            cluster.wait_ready(timeout=120)
            r = redis.Redis.from_url(rs.url, decode_responses=True)
            assert len(r.zrangebyscore("zx:warm:tiny", time.time(), "+inf")) == 1  # advertised warm
            with httpx.Client(base_url=api.url, timeout=120) as c:
                job = c.post("/v1/jobs", json={"prompt": "a red apple 红苹果", "seed": 5, **SMALL}).json()
                events = sse_events(c, job["urls"]["events"], timeout=120)
                assert events[-1][0] == "succeeded", events[-1]
                assert [d["step"] for e, d in events if e == "progress"][-1] == 2
                done = c.get(f"/v1/jobs/{job['id']}").json()
                assert done["resolved"]["model"] == "tiny" and done["model_revision"]
                redirect = c.get(done["images"][0]["url"])
                assert redirect.status_code == 307 and redirect.headers["location"].startswith(s3.endpoint)
                png = httpx.get(redirect.headers["location"])
                assert png.status_code == 200 and png.headers["content-type"] == "image/png"
                assert read_metadata(png.content)["zaoxiang"]["seed"] == 5
                again = c.post("/v1/jobs", json={"prompt": "a red apple 红苹果", "seed": 5, **SMALL}, headers={"Prefer": "wait=60"}).json()
                assert again["status"] == "succeeded" and again["cache_hit"]
                assert again["images"][0]["id"] == done["images"][0]["id"]
        finally:
            cluster.stop()
