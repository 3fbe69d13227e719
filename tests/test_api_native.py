"""The native API against the real app, a real worker and a real socket."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from tests.service_support import fake_runner, live_server, make_settings, sse_events, wait_status
from zaoxiang.engine.metadata import read_metadata
from zaoxiang.service.auth import KeyStore
from zaoxiang.service.core import DataPaths
from zaoxiang.service.webhooks import verify


@pytest.fixture
def server(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, step_delay=0.02, steps=4)) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_submit_stream_progress_and_fetch_png_with_metadata(client):
    r = client.post("/v1/jobs", json={"prompt": "a red apple 红苹果", "seed": 7})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "queued" and body["queue_position"] == 0
    assert set(body["urls"]) == {"job", "events", "cancel"} and r.headers["location"] == f"/v1/jobs/{body['id']}"
    events = sse_events(client, body["urls"]["events"])
    kinds = [e for e, _ in events]
    assert kinds[-1] == "succeeded" and kinds.count("succeeded") == 1
    progress = [d for e, d in events if e == "progress"]
    assert [p["step"] for p in progress] == sorted(p["step"] for p in progress)
    assert progress[-1] == {**progress[-1], "step": 4, "total": 4}
    # The first step always has a preview; later ones when the throttle finds them due (timing).
    previews = [p["preview"] for p in progress if p.get("preview")]
    assert progress[0].get("preview") and all(base64.b64decode(x).startswith(b"\x89PNG") for x in previews)
    job = client.get(f"/v1/jobs/{body['id']}").json()
    assert job["status"] == "succeeded" and job["resolved"]["seed"] == 7 and job["attempts"] == 1
    img = client.get(job["images"][0]["url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(img.content)).size == (64, 64)
    meta = read_metadata(img.content)
    assert "a red apple 红苹果" in meta["parameters"] and "Seed: 7" in meta["parameters"]
    assert meta["zaoxiang"]["request"]["seed"] == 7


def test_seeded_repeat_is_a_cache_hit_but_unseeded_never_is(client):
    first = client.post("/v1/jobs", json={"prompt": "cat", "seed": 3}, headers={"Prefer": "wait=20"}).json()
    assert first["status"] == "succeeded" and not first["cache_hit"]
    again = client.post("/v1/jobs", json={"prompt": "cat", "seed": 3})
    assert again.status_code == 200 and again.json()["cache_hit"]
    assert [i["id"] for i in again.json()["images"]] == [i["id"] for i in first["images"]]
    changed = client.post("/v1/jobs", json={"prompt": "cat", "seed": 3, "steps": 2}, headers={"Prefer": "wait=20"})
    assert not changed.json()["cache_hit"]
    a = client.post("/v1/jobs", json={"prompt": "dog"}, headers={"Prefer": "wait=20"}).json()
    b = client.post("/v1/jobs", json={"prompt": "dog"}, headers={"Prefer": "wait=20"}).json()
    assert not a["cache_hit"] and not b["cache_hit"]
    assert a["resolved"]["seed"] != b["resolved"]["seed"]
    # ...but an unseeded job's drawn seed, named explicitly, is a hit.
    c = client.post("/v1/jobs", json={"prompt": "dog", "seed": a["resolved"]["seed"]}).json()
    assert c["cache_hit"] and c["images"][0]["id"] == a["images"][0]["id"]


BAD = [
    (b"{not json", 400, "invalid_json", None),
    (b"[1, 2]", 422, "invalid_request", None),
    (b'"text"', 422, "invalid_request", None),
    (json.dumps({"prompt": "x", "steps": "many"}).encode(), 422, "invalid_request", "steps"),
    (json.dumps({"prompt": "x", "width": 100}).encode(), 422, "invalid_request", "width"),
    (json.dumps({"prompt": "x", "n": 99}).encode(), 422, "invalid_request", "n"),
    (json.dumps({"prompt": "x", "colour": "red"}).encode(), 422, "invalid_request", "colour"),
    (json.dumps({"steps": 3}).encode(), 422, "invalid_request", "prompt"),
    (json.dumps({"prompt": "   "}).encode(), 422, "invalid_request", "prompt"),
    (json.dumps({"prompt": "x", "model": "nope"}).encode(), 404, "unknown_model", "model"),
    (json.dumps({"prompt": "x", "width": 8192, "height": 8192}).encode(), 422, "invalid_request", "width"),
    (json.dumps({"prompt": "x", "webhook": "ftp://x"}).encode(), 422, "invalid_request", "webhook"),
    (b'{"prompt": "' + b"x" * (2 << 20) + b'"}', 413, "payload_too_large", None),
]


@pytest.mark.parametrize("payload,status,code,field", BAD)
def test_bad_requests_get_json_errors_naming_the_field(client, payload, status, code, field):
    r = client.post("/v1/jobs", content=payload, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    assert err.get("field") == field
    assert "Traceback" not in r.text


def test_other_errors_are_json_too(client):
    for r, status, code in [
        (client.get("/v1/jobs/job_" + "0" * 24), 404, "job_not_found"),
        (client.get("/v1/jobs/not-an-id"), 422, "invalid_request"),
        (client.get("/v1/images/" + "0" * 64), 404, "image_not_found"),
        (client.get("/v1/images/../../etc/passwd"), 404, "not_found"),
        (client.get("/v1/nothing"), 404, "not_found"),
        (client.put("/v1/jobs"), 405, "method_not_allowed"),
        (client.get("/v1/jobs", params={"limit": 0}), 422, "invalid_request"),
    ]:
        assert r.status_code == status, (r.request.url, r.text)
        assert r.json()["error"]["code"] == code


def test_cancel_running_job_within_one_step(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, step_delay=0.1, steps=50)) as live:
        with httpx.Client(base_url=live.url, timeout=30) as c:
            job = c.post("/v1/jobs", json={"prompt": "slow"}).json()
            while (c.get(f"/v1/jobs/{job['id']}").json().get("progress") or {}).get("step", 0) < 2:
                time.sleep(0.02)
            t0 = time.monotonic()
            r = c.delete(f"/v1/jobs/{job['id']}")
            took = time.monotonic() - t0
            assert r.status_code == 200 and r.json()["status"] == "cancelled"
            assert r.json()["error"]["code"] == "cancelled"
            assert took < 1.0  # one step is 0.1 s; the whole job would take 5 s
            step = int(r.json()["error"]["message"].split("step ")[1].split()[0])
            assert step < 50
            # the stream of a cancelled job ends with `cancelled`
            assert sse_events(c, job["urls"]["events"])[-1][0] == "cancelled"
            assert c.delete(f"/v1/jobs/{job['id']}").status_code == 409


def test_cancel_queued_job_never_runs(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, step_delay=0.05, steps=20)) as live:
        with httpx.Client(base_url=live.url, timeout=30) as c:
            first = c.post("/v1/jobs", json={"prompt": "one"}).json()
            second = c.post("/v1/jobs", json={"prompt": "two"}).json()
            assert second["queue_position"] in (0, 1)
            r = c.delete(f"/v1/jobs/{second['id']}")
            assert r.json()["status"] == "cancelled"
            done = wait_status(c, first["id"], {"succeeded"})
            assert done["status"] == "succeeded"
            assert c.get(f"/v1/jobs/{second['id']}").json()["started_at"] is None


def test_list_jobs_filters_and_pages(client):
    ids = [client.post("/v1/jobs", json={"prompt": f"p{i}", "seed": i}, headers={"Prefer": "wait=20"}).json()["id"] for i in range(5)]
    page = client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2]
    page2 = client.get("/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in page2["data"]] == ids[::-1][2:4]
    assert len(client.get("/v1/jobs", params={"status": "succeeded"}).json()["data"]) == 5
    assert client.get("/v1/jobs", params={"status": "queued"}).json()["data"] == []


class _Receiver(BaseHTTPRequestHandler):
    calls: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.calls.append((dict(self.headers), body))
        self.send_response(500 if len(self.calls) == 1 else 200)  # first delivery fails: retried
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_is_signed_and_retried(tmp_path):
    _Receiver.calls = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    settings = make_settings(tmp_path, webhook_secret="s3cret", webhook_backoff_s=0.05)
    try:
        with live_server(settings, fake_runner(tmp_path)) as live, httpx.Client(base_url=live.url) as c:
            job = c.post("/v1/jobs", json={"prompt": "hook", "webhook": hook}).json()
            deadline = time.monotonic() + 15
            while len(_Receiver.calls) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        receiver.shutdown()
    assert len(_Receiver.calls) == 2
    headers, body = _Receiver.calls[1]
    assert verify(b"s3cret", headers["X-Zaoxiang-Timestamp"], body, headers["X-Zaoxiang-Signature"])
    assert not verify(b"wrong", headers["X-Zaoxiang-Timestamp"], body, headers["X-Zaoxiang-Signature"])
    payload = json.loads(body)
    assert payload["event"] == "job.succeeded" and payload["job"]["id"] == job["id"]
    assert "owner" not in payload["job"]


def test_two_keys_run_concurrently_and_never_see_each_other(tmp_path):
    keys = KeyStore(DataPaths(tmp_path).keys)
    (_, key_a), (_, key_b) = keys.create("a"), keys.create("b")
    keys.close()
    settings = make_settings(tmp_path, auth="required")
    results: dict[str, list[dict]] = {}
    with live_server(settings, fake_runner(tmp_path, step_delay=0.01)) as live:

        def client_run(name, key):
            with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
                ids = [c.post("/v1/jobs", json={"prompt": f"{name} {i}"}).json()["id"] for i in range(3)]
                results[name] = [wait_status(c, i, {"succeeded", "failed"}) for i in ids]

        threads = [threading.Thread(target=client_run, args=a) for a in (("a", key_a), ("b", key_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(j["status"] == "succeeded" for js in results.values() for j in js)
        with httpx.Client(base_url=live.url) as anon:
            assert anon.post("/v1/jobs", json={"prompt": "x"}).status_code == 401
            assert anon.get("/v1/jobs").json()["error"]["code"] == "unauthorized"
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key_a}"}) as a:
            b_job = results["b"][0]
            assert a.get(f"/v1/jobs/{b_job['id']}").status_code == 404
            assert a.get(b_job["images"][0]["url"]).status_code == 404
            assert a.get(results["a"][0]["images"][0]["url"]).status_code == 200
            listed = {j["id"] for j in a.get("/v1/jobs").json()["data"]}
            assert listed == {j["id"] for j in results["a"]}
            assert a.delete(f"/v1/jobs/{b_job['id']}").status_code == 404
        with httpx.Client(base_url=live.url, headers={"Authorization": "Bearer zx-00000000-forged"}) as bad:
            assert bad.get("/v1/jobs").status_code == 401


def test_keys_required_on_a_non_loopback_bind(tmp_path):
    settings = make_settings(tmp_path, host="0.0.0.0")
    with live_server(settings, fake_runner(tmp_path)) as live, httpx.Client(base_url=live.url) as c:
        assert c.post("/v1/jobs", json={"prompt": "x"}).status_code == 401
        assert c.get("/healthz").status_code == 200  # probes need no key


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    settings = make_settings(tmp_path, rate_burst=2, rate_per_minute=2)
    with live_server(settings, fake_runner(tmp_path)) as live, httpx.Client(base_url=live.url) as c:
        assert [c.post("/v1/jobs", json={"prompt": "x"}).status_code for _ in range(2)] == [202, 202]
        r = c.post("/v1/jobs", json={"prompt": "x"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1


def test_full_queue_answers_429_with_retry_after(tmp_path):
    settings = make_settings(tmp_path, max_queued=1)
    with live_server(settings, fake_runner(tmp_path, step_delay=0.1, steps=30)) as live, httpx.Client(base_url=live.url) as c:
        first = c.post("/v1/jobs", json={"prompt": "x"}).json()
        wait_status(c, first["id"], {"running"})
        assert c.post("/v1/jobs", json={"prompt": "y"}).status_code == 202
        r = c.post("/v1/jobs", json={"prompt": "z"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        assert int(r.headers["Retry-After"]) >= 1


def test_retention_deletes_old_jobs_and_their_images(tmp_path):
    settings = make_settings(tmp_path, retention_hours=0.0001)  # 0.36 s
    with live_server(settings, fake_runner(tmp_path)) as live, httpx.Client(base_url=live.url) as c:
        job = c.post("/v1/jobs", json={"prompt": "old", "seed": 1}, headers={"Prefer": "wait=20"}).json()
        assert c.get(job["images"][0]["url"]).status_code == 200
        time.sleep(0.5)
        assert live.app.state.service.cleanup() == [job["images"][0]["id"]]
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert c.get(job["images"][0]["url"]).status_code == 404
        # the cache forgot it too: the same seeded request runs again
        again = c.post("/v1/jobs", json={"prompt": "old", "seed": 1}, headers={"Prefer": "wait=20"}).json()
        assert again["status"] == "succeeded" and not again["cache_hit"]


def test_health_ready_models_and_index(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json()["status"] == "ready"
    models = client.get("/v1/models").json()["data"]
    assert [m["name"] for m in models] == ["fake"] and models[0]["default"]
    index = client.get("/")
    assert index.status_code == 200 and "<html" in index.text.lower()  # the studio, or the fallback page
    spec = client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/images/generations", "/sdapi/v1/txt2img"} <= set(spec["paths"])


def test_models_say_which_one_size_a_model_draws(tmp_path):
    """The built-in model draws one size (its config's image size); the studio reads it from here."""
    from tests.service_support import fake_entry
    from zaoxiang.engine.registry import ModelRegistry, builtin_entry
    from zaoxiang.model.config import preset

    weights = tmp_path / "builtin"
    weights.mkdir()
    (weights / "config.json").write_text(json.dumps(preset("tiny").to_dict()))
    (weights / "model-00001-of-00001.safetensors").write_bytes(b"")  # listed, never loaded here
    runner = fake_runner(tmp_path)
    runner.registry = ModelRegistry([fake_entry("fake", tmp_path), builtin_entry(weights)])
    with live_server(make_settings(tmp_path / "data"), runner) as live:
        models = {m["name"]: m for m in httpx.get(live.url + "/v1/models").json()["data"]}
    assert models["builtin"]["native_size"] == preset("tiny").image_size == 64
    assert models["fake"]["native_size"] is None


def test_safety_gate_blocks_prompts_and_images(tmp_path):
    from zaoxiang.safety.errors import ImageBlocked
    from zaoxiang.safety.gate import SafetyGate
    from zaoxiang.safety.settings import SafetySettings
    from zaoxiang.service.gate import SafetyGateAdapter

    class BlockEveryImage(SafetyGateAdapter):
        def check_images(self, images, request, job_id):
            raise ImageBlocked("1 of 1 images were blocked by the content policy")

    safety = SafetySettings(image_check={"enabled": False}, watermark={"enabled": False}, audit={"enabled": False})
    gate = BlockEveryImage(SafetyGate(safety))
    with live_server(make_settings(tmp_path), fake_runner(tmp_path), gate=gate) as live, httpx.Client(base_url=live.url) as c:
        r = c.post("/v1/jobs", json={"prompt": "jailbait photo"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "prompt_blocked"
        assert c.get("/v1/jobs").json()["data"] == []  # nothing was queued
        job = c.post("/v1/jobs", json={"prompt": "a red apple"}, headers={"Prefer": "wait=20"}).json()
        assert job["status"] == "failed" and job["error"]["code"] == "image_blocked" and job["images"] == []
