"""The OpenAI-compatible endpoint, driven by the official ``openai`` client."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.service_support import fake_runner, live_server, make_settings
from zaoxiang.engine.metadata import read_metadata
from zaoxiang.service.auth import KeyStore
from zaoxiang.service.core import DataPaths


@pytest.fixture
def oa(tmp_path):
    keys = KeyStore(DataPaths(tmp_path).keys)
    _, key = keys.create("openai-client")
    keys.close()
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, names=("fake", "other"))) as live:
        with openai.OpenAI(base_url=live.url + "/v1", api_key=key, max_retries=0, timeout=30) as client:
            yield client, live


def test_b64_json_with_size_n_model_and_seed(oa):
    client, _ = oa
    res = client.images.generate(
        model="other", prompt="a lighthouse 灯塔", n=2, size="128x64", response_format="b64_json", extra_body={"seed": 11}
    )
    assert len(res.data) == 2 and res.size == "128x64" and res.output_format == "png"
    images = [base64.b64decode(d.b64_json) for d in res.data]
    assert [Image.open(io.BytesIO(b)).size for b in images] == [(128, 64), (128, 64)]
    metas = [read_metadata(b)["zaoxiang"] for b in images]
    assert [m["seed"] for m in metas] == [11, 12] and metas[0]["model"]["name"] == "other"


def test_url_format_is_a_signed_link_that_needs_no_key(oa):
    client, live = oa
    res = client.images.generate(prompt="a boat", response_format="url", size="64x64", quality="hd", style="vivid", user="u1")
    url = res.data[0].url
    assert url.startswith(live.url + "/v1/images/")
    got = httpx.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    tampered = url.replace("sig=", "sig=0")
    # A bad signature is just an anonymous request (loopback): the image is not anonymous's.
    assert httpx.get(tampered).status_code == 404


def test_openai_model_names_mean_the_default_and_other_fields_are_ignored(oa):
    client, _ = oa
    res = client.images.generate(model="dall-e-3", prompt="x", size="auto", background="auto", moderation="low")
    assert len(res.data) == 1 and res.data[0].b64_json and res.size == "64x64"


def test_errors_reach_the_client_as_typed_exceptions(oa):
    client, _ = oa
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.images.generate(prompt="x", size="100x100")
    assert e.value.body["code"] == "invalid_request" and e.value.body["field"] == "width"
    with pytest.raises(openai.UnprocessableEntityError):
        client.images.generate(prompt="x", size="huge")
    with pytest.raises(openai.NotFoundError):
        client.images.generate(prompt="x", model="no-such-model")
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.images.generate(prompt="x", n=50)
    assert e.value.body["field"] == "n"


def test_a_wrong_key_is_refused(oa):
    _, live = oa
    with openai.OpenAI(base_url=live.url + "/v1", api_key="zx-bad-key", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.images.generate(prompt="x")


def test_models_list_works_with_the_client(oa):
    client, _ = oa
    assert sorted(m.id for m in client.models.list()) == ["fake", "other"]
