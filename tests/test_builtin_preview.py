"""The built-in model's live preview through the fitted linear map (model/preview.py)."""

import json

import pytest
import torch
from tests._stub_text import StubTextEncoder
from tests._tiny_builtin import save_tiny_builtin

from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.pipeline import BuiltinPipeline
from zaoxiang.model.preview import PREVIEW_NAME, LinearPreview, autoencoder_revision
from zaoxiang.model.serialization import default_weights_dir, load_weights


def write_factors(folder, weight, bias, revision):
    (folder / PREVIEW_NAME).write_text(json.dumps({"weight": weight, "bias": bias, "autoencoder_revision": revision}))


@pytest.fixture
def tiny(tmp_path):
    save_tiny_builtin(tmp_path)
    config, _, a_sd = load_weights(tmp_path)
    return tmp_path, config, a_sd


def load(folder):
    return BuiltinPipeline.from_folder(folder, PrecisionPolicy.for_device("cpu"), text_encoder=StubTextEncoder())


def test_previews_use_the_fitted_map_without_decoding(tiny, monkeypatch):
    folder, config, a_sd = tiny
    c = config.autoencoder.latent_channels
    weight = [[0.5 if k == j else 0.0 for j in range(3)] for k in range(c)]  # channel k -> colour k
    write_factors(folder, weight, [0.0, 0.25, -0.25], autoencoder_revision(a_sd))
    pipe = load(folder)
    assert pipe.linear_preview is not None
    monkeypatch.setattr(pipe.autoencoder, "decode_latents", lambda z: pytest.fail("a fitted preview must not decode"))
    latents = torch.zeros(2, c, 4, 4)
    latents[0, 0] = 1.0  # red channel of image 0: 0.5 -> pixel 191
    image = pipe.preview(latents)
    assert image.size == (128, 128)
    assert image.getpixel((64, 64)) == (191, 159, 96)  # (0.5, 0.25, -0.25) -> 0-255


@pytest.mark.parametrize("spoil", ["other autoencoder", "wrong shape", "not json", "absent"])
def test_a_missing_or_foreign_factor_file_falls_back_to_decoding(tiny, spoil, caplog):
    folder, config, a_sd = tiny
    c = config.autoencoder.latent_channels
    good = [[0.1, 0.1, 0.1]] * c
    if spoil == "other autoencoder":
        write_factors(folder, good, [0, 0, 0], autoencoder_revision(Autoencoder(config.autoencoder).state_dict()))
    elif spoil == "wrong shape":
        write_factors(folder, good[:-1], [0, 0, 0], autoencoder_revision(a_sd))
    elif spoil == "not json":
        (folder / PREVIEW_NAME).write_text("{")
    pipe = load(folder)
    assert pipe.linear_preview is None
    if spoil != "absent":
        assert f"ignoring {folder / PREVIEW_NAME}" in caplog.text
    assert pipe.preview(torch.zeros(1, c, 4, 4)).size == (128, 128)  # decoded, as before


def test_the_shipped_factors_belong_to_the_shipped_autoencoder_and_track_its_decoder():
    folder = default_weights_dir()
    config, _, a_sd = load_weights(folder)
    preview = LinearPreview.load(folder, a_sd, config.autoencoder.latent_channels)
    assert preview is not None  # refit with scripts/fit_preview.py after retraining the autoencoder
    ae = Autoencoder(config.autoencoder)
    ae.load_state_dict(a_sd)
    for colour in ([0.9, -0.8, -0.8], [-0.8, 0.6, -0.8], [-0.8, -0.8, 0.9]):  # red, green, blue backgrounds
        image = torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, 256, 256)
        with torch.no_grad():
            latents = ae.encode_latents(image, sample=False)
            decoded = ae.decode_latents(latents)[0, :, 128, 128]  # (3,) in [-1, 1]
        want = [(v + 1) * 127.5 for v in decoded.tolist()]
        got = preview(latents).getpixel((64, 64))
        assert all(abs(g - w) <= 40 for g, w in zip(got, want)), (colour, got, want)
