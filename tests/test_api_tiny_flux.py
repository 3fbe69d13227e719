"""The main API paths end to end on a real architecture: a tiny random FluxPipeline folder,
loaded by the real diffusers adapter through ``--model NAME=PATH`` settings, one real worker.
(Timing-sensitive behaviour — cancel within a step, kill and restart — uses the fake model with
controlled step delays; see test_api_native.py and test_service_restart.py.)"""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from tests.service_support import live_server, sse_events
from zaoxiang.engine.metadata import read_metadata
from zaoxiang.settings import Settings
from zaoxiang.testing.tiny_models import save_tiny_model

pytestmark = pytest.mark.slow
SMALL = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tinyflux")
    folder = save_tiny_model("flux", tmp / "tiny-flux")
    settings = Settings.load(
        data_dir=tmp / "data", models=[f"tiny={folder}"], builtin=False, engine={"device": "cpu"}, service={"host": "127.0.0.1"}
    )
    with live_server(settings) as server:  # the default runner: registry + real loader
        yield server


@pytest.fixture(scope="module")
def client(live):
    with httpx.Client(base_url=live.url, timeout=120) as c:
        yield c


def test_native_job_streams_and_stores_a_png_with_metadata(client):
    job = client.post("/v1/jobs", json={"prompt": "a red apple 红苹果", "seed": 5, **SMALL}).json()
    events = sse_events(client, job["urls"]["events"], timeout=120)
    assert events[-1][0] == "succeeded", events[-1]
    assert [d["step"] for e, d in events if e == "progress"][-2:] == [1, 2]
    done = client.get(f"/v1/jobs/{job['id']}").json()
    assert done["resolved"]["model"] == "tiny" and done["timings"]["denoise_s"] > 0
    png = client.get(done["images"][0]["url"])
    assert png.headers["content-type"] == "image/png"
    meta = read_metadata(png.content)
    assert meta["zaoxiang"]["model"]["family"] == "flux" and meta["zaoxiang"]["seed"] == 5
    again = client.post("/v1/jobs", json={"prompt": "a red apple 红苹果", "seed": 5, **SMALL}).json()
    assert again["cache_hit"] and again["images"][0]["id"] == done["images"][0]["id"]


def test_openai_client_on_the_tiny_model(live):
    _, key = live.app.state.service.auth.keys.create("openai")  # the client always sends a key
    with openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0, timeout=120) as client:
        res = client.images.generate(model="tiny", prompt="a boat", size="64x64", extra_body={"steps": 2, "seed": 1})
    assert read_metadata(base64.b64decode(res.data[0].b64_json))["zaoxiang"]["model"]["name"] == "tiny"


def test_a1111_txt2img_on_the_tiny_model(client):
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "tree", "seed": 3, "steps": 2, "width": 64, "height": 64, "cfg_scale": 3.5, "sampler_name": "Euler"})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["sd_model_name"] == "tiny" and info["all_seeds"] == [3]
