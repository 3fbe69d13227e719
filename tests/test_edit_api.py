"""Edits through every API family on a tiny random FLUX folder with the real loader and worker:
native ``POST /v1/edits``, OpenAI ``POST /v1/images/edits`` (official client), A1111 img2img."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.edit_support import box_mask, noise_image, png
from tests.service_support import live_server
from zaoxiang.settings import Settings
from zaoxiang.testing.tiny_models import save_tiny_model

pytestmark = pytest.mark.slow
IMAGE = noise_image(64, 64)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edit-api")
    folder = save_tiny_model("flux", tmp / "tiny-flux")
    settings = Settings.load(
        data_dir=tmp / "data", models=[f"tiny={folder}"], builtin=False, engine={"device": "cpu"},
        service={"host": "127.0.0.1"},
    )
    with live_server(settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    with httpx.Client(base_url=live.url, timeout=120) as c:
        yield c


def _wait(client, body=None, **kw):
    r = client.post("/v1/edits", headers={"Prefer": "wait=100"}, **({"json": body} if body is not None else kw))
    return r


def test_native_inpaint_json_keeps_the_unmasked_region(client):
    mask = box_mask(64, 64, (16, 16, 48, 32))
    r = _wait(client, {"mode": "inpaint", "image": b64(png(IMAGE)), "mask": b64(png(mask)), "prompt": "an apple",
                       "steps": 2, "seed": 4, "mask_blur": 2})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded" and job["request"]["edit"]["mode"] == "inpaint"
    out = np.asarray(Image.open(io.BytesIO(client.get(job["images"][0]["url"]).content)).convert("RGB"))
    assert (out[40:] == np.asarray(IMAGE)[40:]).all()
    again = _wait(client, {"mode": "inpaint", "image": b64(png(IMAGE)), "mask": b64(png(mask)), "prompt": "an apple",
                           "steps": 2, "seed": 4, "mask_blur": 2}).json()
    assert again["cache_hit"] and again["images"][0]["id"] == job["images"][0]["id"]


def test_native_outpaint_multipart(client):
    files = {"image": ("in.png", png(IMAGE), "image/png")}
    data = {"mode": "outpaint", "prompt": "sky", "outpaint": '{"right": 32}', "steps": "2", "seed": "1"}
    r = _wait(client, files=files, data=data)
    assert r.status_code == 200, r.text
    im = r.json()["images"][0]
    assert (im["width"], im["height"]) == (96, 64)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"mode": "inpaint", "image": b64(png(IMAGE)), "mask": b64(png(box_mask(32, 32, (0, 0, 8, 8)))), "prompt": "x"}, "mask"),
        ({"mode": "img2img", "image": b64(b"GIF89a not really"), "prompt": "x"}, "image"),
        ({"mode": "img2img", "image": b64(png(IMAGE)[:100]), "prompt": "x"}, "image"),
        ({"mode": "img2img", "image": "%%%not base64", "prompt": "x"}, "image"),
        ({"mode": "img2img", "image": b64(png(IMAGE)), "prompt": "x", "strength": 2}, "strength"),
        ({"mode": "outpaint", "image": b64(png(IMAGE)), "prompt": "x", "outpaint": {"left": 8}}, "outpaint"),
    ],
)
def test_native_bad_inputs_are_4xx_naming_the_field(client, body, field):
    r = client.post("/v1/edits", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["field"] == field, r.json()


def test_bad_edit_does_not_disturb_the_queue(client):
    good = client.post("/v1/jobs", json={"prompt": "a", "seed": 9, "width": 64, "height": 64, "steps": 2}).json()
    assert client.post("/v1/edits", json={"mode": "img2img", "image": b64(b"junk"), "prompt": "x"}).status_code == 422
    done = client.get(f"/v1/jobs/{good['id']}")
    for _ in range(100):
        if done.json()["status"] in ("succeeded", "failed"):
            break
        done = client.get(f"/v1/jobs/{good['id']}")
        import time

        time.sleep(0.2)
    assert done.json()["status"] == "succeeded"
