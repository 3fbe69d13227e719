"""Edits through every API family on a tiny random FLUX folder with the real loader and worker:
native ``POST /v1/edits``, OpenAI ``POST /v1/images/edits`` (official client), A1111 img2img."""

from __future__ import annotations

import base64
import io
import json

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


def _rgba_mask(w: int, h: int, box: tuple[int, int, int, int]) -> bytes:
    """OpenAI mask: opaque everywhere except the transparent box to edit."""
    m = Image.new("RGBA", (w, h), (0, 0, 0, 255))
    left, top, right, bottom = box
    m.paste((0, 0, 0, 0), (left, top, right, bottom))
    return png(m)


def test_openai_client_images_edit_with_a_transparent_mask(live):
    import openai

    _, key = live.app.state.service.auth.keys.create("openai-edit")
    with openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0, timeout=120) as client:
        res = client.images.edit(
            model="tiny", image=("in.png", png(IMAGE), "image/png"), mask=("mask.png", _rgba_mask(64, 64, (0, 0, 64, 16)), "image/png"),
            prompt="a sunny sky", n=2, size="64x64", response_format="b64_json", extra_body={"steps": 2, "seed": 7, "mask_blur": 1},
        )
        assert len(res.data) == 2
        out = np.asarray(Image.open(io.BytesIO(base64.b64decode(res.data[0].b64_json))).convert("RGB"))
        assert (out[24:] == np.asarray(IMAGE)[24:]).all()  # opaque part of the mask: kept
        assert (out[:16] != np.asarray(IMAGE)[:16]).mean() > 0.5  # transparent part: edited
        with pytest.raises(openai.UnprocessableEntityError) as err:
            client.images.edit(model="tiny", image=("x.png", b"not an image", "image/png"), prompt="x")
        assert "'field': 'image'" in str(err.value.body)
        with pytest.raises(openai.UnprocessableEntityError):
            client.images.edit(model="tiny", image=("in.png", png(IMAGE), "image/png"), mask=("m.png", _rgba_mask(32, 32, (0, 0, 8, 8)), "image/png"), prompt="x")


def test_openai_edit_without_mask_is_img2img_or_alpha_inpaint(client):
    r = client.post("/v1/images/edits", files={"image": ("in.png", png(IMAGE), "image/png")},
                    data={"prompt": "x", "strength": "0", "steps": "2", "model": "tiny"})
    assert r.status_code == 200, r.text
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"]))).convert("RGB"))
    assert (out == np.asarray(IMAGE)).all()  # strength 0 img2img: the input back
    r = client.post("/v1/images/edits", files={"image": ("in.png", png(IMAGE), "image/png")},
                    data={"prompt": "x", "size": "128x128"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "size"


def test_a1111_img2img_and_inpaint_payloads(client):
    base = {"prompt": "a tree", "seed": 2, "steps": 2, "cfg_scale": 3.5, "sampler_name": "Euler"}
    r = client.post("/sdapi/v1/img2img", json={**base, "init_images": [b64(png(IMAGE))], "denoising_strength": 0.5})
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["info"])["denoising_strength"] == 0.5
    mask = box_mask(64, 64, (32, 32, 64, 64))
    payload = {**base, "init_images": ["data:image/png;base64," + b64(png(IMAGE))], "mask": b64(png(mask)),
               "denoising_strength": 1.0, "inpainting_fill": 1, "mask_blur": 2, "width": 64, "height": 64,
               "inpaint_full_res": False, "include_init_images": False}
    r = client.post("/sdapi/v1/img2img", json=payload)
    assert r.status_code == 200, r.text
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).convert("RGB"))
    assert (out[:24, :24] == np.asarray(IMAGE)[:24, :24]).all()
    # A1111's "just resize": width/height other than the image's resize it (and its mask).
    r = client.post("/sdapi/v1/img2img", json={**payload, "width": 96, "height": 96})
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0]))).size == (96, 96)


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"init_images": []}, "init_images"),
        ({"init_images": [b64(b"nope")]}, "init_images"),
        ({"denoising_strength": 1.5}, "denoising_strength"),
        ({"mask": b64(png(box_mask(32, 32, (0, 0, 8, 8)))), "width": None}, "mask"),
        ({"mask": b64(png(box_mask(64, 64, (0, 0, 8, 8)))), "inpainting_fill": 2}, "inpainting_fill"),
    ],
)
def test_a1111_bad_payloads_are_4xx_naming_the_field(client, extra, field):
    body = {"prompt": "x", "init_images": [b64(png(IMAGE))], **extra}
    r = client.post("/sdapi/v1/img2img", json={k: v for k, v in body.items() if v is not None})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["field"] == field, r.json()
