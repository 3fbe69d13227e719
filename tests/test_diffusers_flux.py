"""FLUX end to end on a tiny random FluxPipeline folder: registry → runner → adapter → PNG.

Also the adapter's shared machinery (cancel, NaN guard, fp32 decode retry, memory modes), tested
once here on FLUX because it does not depend on the family.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.errors import Cancelled, GenerationFailed, InvalidRequest
from zaoxiang.protocol import GenerationRequest, SamplerOptions
from zaoxiang.settings import EngineSettings

FAMILY = "flux"


def req(**kw) -> GenerationRequest:
    base = {"prompt": "a red apple 红苹果", "width": 64, "height": 64, "steps": 2, "seed": 7, "model": FAMILY}
    return GenerationRequest(**{**base, **kw})


def pixels(result) -> list[np.ndarray]:
    return [np.asarray(im) for im in result.images]


@pytest.fixture
def runner(tiny_runner):
    return tiny_runner(FAMILY)


@pytest.fixture
def flux(runner):
    """The loaded adapter (DiffusersPipeline) behind the runner."""
    return runner.load(FAMILY)[0]


def test_shape_progress_and_png(runner):
    events = []
    res = runner.run(req(width=64, height=96), on_progress=events.append)
    assert [im.size for im in res.images] == [(64, 96)]
    assert res.images[0].mode == "RGB"
    assert [(e.step, e.total) for e in events] == [(1, 2), (2, 2)]
    assert res.model.family == "flux" and res.dtype == "float32"
    t = res.timings
    assert t.text_encode_s > 0 and t.denoise_s > 0 and t.decode_s > 0
    buf = io.BytesIO()
    res.images[0].save(buf, format="PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).size == (64, 96)
    # A random-weights model still produces a picture, not a flat field.
    assert pixels(res)[0].std() > 1.0


def test_defaults_follow_the_model_card(flux):
    d = flux.defaults
    assert (d.width, d.height, d.steps, d.guidance) == (1024, 1024, 28, 3.5)  # tiny model is "dev"-like


def test_same_seed_same_pixels_other_seed_differs(runner):
    a, b = pixels(runner.run(req())), pixels(runner.run(req()))
    assert np.array_equal(a[0], b[0])
    c = pixels(runner.run(req(seed=8)))
    assert not np.array_equal(a[0], c[0])


def test_image_i_is_the_same_whatever_n(runner):
    events = []
    two = runner.run(req(n=2), on_progress=events.append)
    assert two.seeds == [7, 8]
    assert len(events) == 4 and events[-1].total == 4  # steps over the whole request
    assert np.array_equal(pixels(two)[0], pixels(runner.run(req(seed=7)))[0])
    assert np.array_equal(pixels(two)[1], pixels(runner.run(req(seed=8)))[0])


def test_guidance_reaches_the_distilled_embedding(runner):
    low, high = pixels(runner.run(req(guidance=1.0))), pixels(runner.run(req(guidance=8.0)))
    assert not np.array_equal(low[0], high[0])


def test_sampler_shift_changes_the_schedule(runner, flux):
    base = pixels(runner.run(req()))
    shifted = pixels(runner.run(req(sampler=SamplerOptions(shift=6.0))))
    assert not np.array_equal(base[0], shifted[0])
    # The loaded pipeline's own scheduler config is untouched by per-request overrides.
    assert flux.pipe.scheduler.config.use_dynamic_shifting is True


def test_negative_prompt_refused_not_ignored(runner):
    with pytest.raises(InvalidRequest) as err:
        runner.run(req(negative_prompt="blurry"))
    assert err.value.field == "negative_prompt"


def test_size_rule_names_field(flux):
    bad = req().model_copy(update={"width": 72})  # bypasses the global multiple-of-16 check
    with pytest.raises(InvalidRequest) as err:
        flux.validate(bad)
    assert err.value.field == "width" and "16" in err.value.message


def test_cancel_within_one_step_leaves_pipeline_reusable(runner):
    reference = pixels(runner.run(req(steps=3)))
    cancel = threading.Event()
    events = []

    def on_progress(ev):
        events.append(ev)
        if ev.step == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        runner.run(req(steps=3), on_progress=on_progress, cancel=cancel)
    # Step 1 reported and set the flag; the hook after step 2 raised before reporting anything more.
    assert [e.step for e in events] == [1]
    again = pixels(runner.run(req(steps=3)))
    assert np.array_equal(reference[0], again[0])


def test_nan_latents_fail_with_code(runner, flux):
    handle = flux.pipe.transformer.register_forward_hook(lambda mod, args, out: (out[0] * float("nan"),))
    try:
        with pytest.raises(GenerationFailed) as err:
            runner.run(req())
        assert err.value.code == "nan_latents"
    finally:
        handle.remove()
    assert pixels(runner.run(req()))[0].std() > 1.0


class DecodeSpy:
    """Wraps vae.decode: records (dtype, tiling) per call, and returns NaN while ``bad(vae)``."""

    def __init__(self, vae, bad=lambda vae: False, oom_untiled=False):
        self.vae, self.bad, self.oom_untiled = vae, bad, oom_untiled
        self.real = vae.decode
        self.calls: list[tuple[torch.dtype, bool]] = []

    def __call__(self, z, *args, **kwargs):
        tiled = bool(self.vae.use_tiling)
        self.calls.append((self.vae.dtype, tiled))
        if self.oom_untiled and not tiled:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        out = self.real(z, *args, **kwargs)
        if self.bad(self.vae):
            return (out[0] * float("nan"),)
        return out


def test_bad_decode_in_bf16_is_retried_in_fp32(tiny_model_dir, monkeypatch):
    from zaoxiang.engine.registry import ModelRegistry
    from zaoxiang.engine.runner import Runner

    registry = ModelRegistry.discover([f"{FAMILY}={tiny_model_dir(FAMILY)}"], include_builtin=False)
    runner = Runner(registry, EngineSettings(device="cpu"))
    runner.policy = PrecisionPolicy(device=torch.device("cpu"), dtype=torch.bfloat16)
    pipe = runner.load(FAMILY)[0]
    vae = pipe.pipe.vae
    # The dtype reaches diffusers' and transformers' components alike (no mixed-dtype matmuls).
    for name in ("vae", "transformer", "text_encoder", "text_encoder_2"):
        assert getattr(pipe.pipe, name).dtype == torch.bfloat16, name
    spy = DecodeSpy(vae, bad=lambda v: v.dtype == torch.bfloat16)
    monkeypatch.setattr(vae, "decode", spy)
    res = runner.run(req())
    assert [c[0] for c in spy.calls] == [torch.bfloat16, torch.float32]
    assert pixels(res)[0].std() > 1.0
    assert vae.dtype == torch.bfloat16  # back to the policy dtype for the next request
    assert res.dtype == "bfloat16"


@pytest.mark.parametrize("kind", ["nan", "black"])
def test_bad_decode_in_fp32_fails_clearly(runner, flux, monkeypatch, kind):
    vae = flux.pipe.vae
    real = vae.decode

    def broken(z, *a, **kw):
        out = real(z, *a, **kw)[0]
        return (out * float("nan"),) if kind == "nan" else (torch.full_like(out, -1.0),)

    monkeypatch.setattr(vae, "decode", broken)
    with pytest.raises(GenerationFailed) as err:
        runner.run(req())
    assert err.value.code == "bad_decode"


def test_tiling_turns_on_above_threshold(runner, flux, monkeypatch):
    spy = DecodeSpy(flux.pipe.vae)
    monkeypatch.setattr(flux.pipe.vae, "decode", spy)
    monkeypatch.setattr(runner, "settings", EngineSettings(device="cpu", vae_tiling_pixels=64 * 64))
    small = runner.run(req(width=64, height=64))
    big = runner.run(req(width=64, height=128))  # 8192 px > 4096 px threshold: tiled
    assert [c[1] for c in spy.calls] == [False, True]
    assert big.images[0].size == (64, 128) and pixels(small)[0].std() > 1.0
    assert flux.pipe.vae.use_tiling is False  # restored after the decode


def test_vae_tiling_mode_always_tiles(runner, flux, monkeypatch):
    spy = DecodeSpy(flux.pipe.vae)
    monkeypatch.setattr(flux.pipe.vae, "decode", spy)
    monkeypatch.setattr(runner, "settings", EngineSettings(device="cpu", memory_mode="vae_tiling"))
    runner.run(req())
    assert spy.calls == [(torch.float32, True)]


def test_out_of_memory_decode_is_retried_tiled(runner, flux, monkeypatch):
    spy = DecodeSpy(flux.pipe.vae, oom_untiled=True)
    monkeypatch.setattr(flux.pipe.vae, "decode", spy)
    res = runner.run(req())
    assert [c[1] for c in spy.calls] == [False, True]
    assert pixels(res)[0].std() > 1.0


def test_out_of_memory_without_retry_fails_clearly(runner, flux, monkeypatch):
    monkeypatch.setattr(flux.pipe.vae, "decode", DecodeSpy(flux.pipe.vae, oom_untiled=True))
    monkeypatch.setattr(runner, "settings", EngineSettings(device="cpu", memory_mode="none"))
    with pytest.raises(GenerationFailed) as err:
        runner.run(req())
    assert err.value.code == "out_of_memory" and "memory_mode" in err.value.message


def test_pipeline_errors_become_coded_failures(runner, flux, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch somewhere inside")

    monkeypatch.setattr(flux.pipe.transformer, "forward", broken)
    with pytest.raises(GenerationFailed) as err:
        runner.run(req())
    assert err.value.code == "pipeline_failed" and "shape mismatch" in err.value.message
