"""AUTOMATIC1111-compatible endpoints, with payloads as A1111 clients send them."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from tests.service_support import fake_runner, live_server, make_settings

# What the webui's own API docs and the `webuiapi` client send for a plain txt2img.
WEBUIAPI_PAYLOAD = {
    "enable_hr": False,
    "denoising_strength": 0.7,
    "firstphase_width": 0,
    "firstphase_height": 0,
    "hr_scale": 2,
    "hr_upscaler": "Latent",
    "hr_second_pass_steps": 0,
    "hr_resize_x": 0,
    "hr_resize_y": 0,
    "prompt": "a cute cat, 一只可爱的猫",
    "styles": [],
    "seed": 1234,
    "subseed": -1,
    "subseed_strength": 0.0,
    "seed_resize_from_h": -1,
    "seed_resize_from_w": -1,
    "sampler_name": "Euler",
    "batch_size": 2,
    "n_iter": 1,
    "steps": 5,
    "cfg_scale": 7.0,
    "width": 128,
    "height": 96,
    "restore_faces": False,
    "tiling": False,
    "do_not_save_samples": False,
    "do_not_save_grid": False,
    "negative_prompt": "blurry",
    "eta": 1.0,
    "s_churn": 0,
    "s_tmax": 0,
    "s_tmin": 0,
    "s_noise": 1,
    "override_settings": {"sd_model_checkpoint": "other [0123abcd]"},
    "override_settings_restore_afterwards": True,
    "script_args": [],
    "sampler_index": "Euler",
    "script_name": None,
    "send_images": True,
    "save_images": False,
    "alwayson_scripts": {},
}


@pytest.fixture
def a1111(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, names=("fake", "other"), step_delay=0.01)) as live:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            yield c


def test_txt2img_full_client_payload(a1111):
    r = a1111.post("/sdapi/v1/txt2img", json=WEBUIAPI_PAYLOAD)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["images"]) == 2
    first = base64.b64decode(body["images"][0])
    im = Image.open(io.BytesIO(first))
    assert im.size == (128, 96)
    info = json.loads(body["info"])
    assert info["all_seeds"] == [1234, 1235] and info["seed"] == 1234
    assert info["sd_model_name"] == "other" and info["sampler_name"] == "Euler"
    assert (info["steps"], info["cfg_scale"], info["width"], info["height"]) == (5, 7.0, 128, 96)
    assert info["infotexts"][0].startswith("a cute cat, 一只可爱的猫\nNegative prompt: blurry\nSteps: 5")
    assert im.text["parameters"] == info["infotexts"][0]  # PNG Info shows the same text
    assert body["parameters"]["prompt"] == WEBUIAPI_PAYLOAD["prompt"]


def test_txt2img_minimal_payload_takes_model_defaults_and_random_seed(a1111):
    r = a1111.post("/sdapi/v1/txt2img", json={"prompt": "tree", "seed": -1, "sampler_index": "DPM++ 2M Karras"})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert info["width"] == 64 and info["seed"] >= 0 and info["sampler_name"] == "Default"


def test_txt2img_bad_values_are_json_errors(a1111):
    r = a1111.post("/sdapi/v1/txt2img", json={**WEBUIAPI_PAYLOAD, "width": 500})
    assert r.status_code == 422 and r.json()["error"]["field"] == "width"
    r = a1111.post("/sdapi/v1/txt2img", json={**WEBUIAPI_PAYLOAD, "override_settings": {"sd_model_checkpoint": "sdxl.safetensors [abc]"}})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"
    r = a1111.post("/sdapi/v1/txt2img", json={"prompt": "x", "batch_size": 9})
    assert r.status_code == 422 and r.json()["error"]["field"] == "n"


def test_sd_models_lists_every_model(a1111):
    models = a1111.get("/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in models] == ["fake", "other"]
    assert all(m["title"] == f"{m['model_name']} [{m['hash']}]" for m in models)


def test_progress_then_interrupt(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, step_delay=0.1, steps=40)) as live:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            idle = c.get("/sdapi/v1/progress").json()
            assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
            out: dict = {}
            t = threading.Thread(target=lambda: out.update(r=c.post("/sdapi/v1/txt2img", json={"prompt": "slow", "steps": 40})))
            t.start()
            deadline = time.monotonic() + 20
            while (p := c.get("/sdapi/v1/progress").json())["state"]["sampling_step"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert 0 < p["progress"] < 1 and p["state"]["sampling_steps"] == 40 and p["current_image"]
            assert c.post("/sdapi/v1/interrupt").status_code == 200
            t.join(10)
            r = out["r"]
            assert r.status_code == 409 and r.json()["error"]["code"] == "cancelled"
