"""The speed profile wired into the engine: setting, CLI flag, load-time apply, cache key.

CPU only, on the tiny random FLUX folder: compile and fp8 are CUDA-only, so on CPU "lossless"
must skip them (and say so) and give the exact pixels of "stock".
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from pydantic import ValidationError

from zaoxiang.cli import build_parser
from zaoxiang.cli.common import settings_from_args
from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.engine.speed import SpeedConfigError, SpeedOptions, options_for_profile
from zaoxiang.protocol import GenerationRequest
from zaoxiang.settings import EngineSettings, Settings

FAMILY = "flux"


def req(**kw) -> GenerationRequest:
    base = {"prompt": "a red apple 红苹果", "width": 64, "height": 64, "steps": 2, "seed": 7, "model": FAMILY}
    return GenerationRequest(**{**base, **kw})


def runner_for(tiny_model_dir, speed: str) -> Runner:
    registry = ModelRegistry.discover([f"{FAMILY}={tiny_model_dir(FAMILY)}"], include_builtin=False)
    return Runner(registry, EngineSettings(device="cpu", speed=speed))


# -- the setting ------------------------------------------------------------------------------------


def test_default_is_stock(monkeypatch):
    monkeypatch.delenv("ZAOXIANG_ENGINE__SPEED", raising=False)
    assert Settings.load().engine.speed == "stock"


def test_speed_from_env(monkeypatch):
    monkeypatch.setenv("ZAOXIANG_ENGINE__SPEED", "lossless")
    assert Settings.load().engine.speed == "lossless"


def test_bad_profile_names_the_field(monkeypatch):
    monkeypatch.setenv("ZAOXIANG_ENGINE__SPEED", "turbo")
    with pytest.raises(ValidationError) as info:
        Settings.load()
    assert info.value.errors()[0]["loc"] == ("engine", "speed")
    with pytest.raises(SpeedConfigError, match=r"engine\.speed: must be one of stock, lossless, lossy, not 'turbo'"):
        options_for_profile("turbo")


@pytest.mark.parametrize("command", ["generate", "edit", "serve", "worker"])
def test_speed_flag_reaches_settings(command, monkeypatch):
    monkeypatch.delenv("ZAOXIANG_ENGINE__SPEED", raising=False)
    parser = build_parser()
    extra = {"generate": ["a cat"], "edit": ["img2img", "x.png", "a cat"]}.get(command, [])
    args = parser.parse_args([command, *extra, "--speed", "lossy"])
    assert settings_from_args(args).engine.speed == "lossy"
    args = parser.parse_args([command, *extra])
    assert settings_from_args(args).engine.speed == "stock"


def test_flag_rejects_unknown_profile(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "a cat", "--speed", "fast"])
    assert "--speed" in capsys.readouterr().err


def test_profiles_map_to_options():
    assert options_for_profile("stock") == SpeedOptions.stock()
    lossless = options_for_profile("lossless")
    assert lossless.lossless and lossless.compile == "blocks" and lossless.compile_vae
    assert not lossless.cfg_batch  # measured slower than sequential CFG on an H100 (bench/results-h100-qwen.md)
    lossy = options_for_profile("lossy")
    assert not lossy.lossless and lossy.fp8 and lossy.first_block_cache is not None
    assert lossy.compile == lossless.compile and lossy.cfg_batch == lossless.cfg_batch


# -- the engine ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stock_pixels(tiny_model_dir):
    runner = runner_for(tiny_model_dir, "stock")
    pipe = runner.load(FAMILY)[0]
    assert pipe.speed is not None and not any(c.applied for c in pipe.speed.choices)
    return np.asarray(runner.run(req()).images[0])


def test_stock_is_plain_diffusers(tiny_model_dir, stock_pixels):
    """Stock must leave the pipeline as diffusers built it: no hooks, no swapped forward, no
    compiled blocks, and the same pixels as a pipeline the speed module never touched."""
    from zaoxiang.engine.pipelines import diffusers_adapter as adapter

    runner = runner_for(tiny_model_dir, "stock")
    transformer = runner.load(FAMILY)[0].pipe.transformer
    assert "forward" not in transformer.__dict__
    assert not getattr(transformer, "_diffusers_hook", None) or not transformer._diffusers_hook._hooks
    assert not any(type(m).__name__ == "OptimizedModule" for m in transformer.modules())

    untouched = runner_for(tiny_model_dir, "stock")
    real_apply = adapter.apply_speed
    adapter.apply_speed = lambda pipe, family, options, device, **kw: adapter.SpeedReport(family)  # apply nothing
    try:
        base = np.asarray(untouched.run(req()).images[0])
    finally:
        adapter.apply_speed = real_apply
    assert np.array_equal(stock_pixels, base)


@pytest.mark.parametrize("at, defer", [("idle", True), ("load", False)])
def test_the_loader_defers_the_decoder_as_engine_compile_vae_at_says(tiny_model_dir, monkeypatch, at, defer):
    from zaoxiang.engine.pipelines import diffusers_adapter as adapter

    seen = {}
    real_apply = adapter.apply_speed

    def spy(pipe, family, options, device, **kw):
        seen.update(kw)
        return real_apply(pipe, family, options, device, **kw)

    monkeypatch.setattr(adapter, "apply_speed", spy)
    registry = ModelRegistry.discover([f"{FAMILY}={tiny_model_dir(FAMILY)}"], include_builtin=False)
    runner = Runner(registry, EngineSettings(device="cpu", speed="lossless", compile_vae_at=at))
    pipe = runner.load(FAMILY)[0]
    assert seen == {"defer_vae": defer}
    assert not pipe.deferred_speed and runner.idle() is False  # on a CPU nothing compiles, so nothing waits


def test_lossless_on_cpu_skips_compile_and_keeps_pixels(tiny_model_dir, stock_pixels, caplog):
    runner = runner_for(tiny_model_dir, "lossless")
    with caplog.at_level(logging.INFO, logger="zaoxiang.engine.speed"):
        pipe = runner.load(FAMILY)[0]
    assert "speed compile_blocks: off (torch.compile is used on CUDA only (device is cpu))" in caplog.text
    assert not pipe.speed.applied("compile_blocks") and not pipe.speed.applied("compile_vae")
    assert np.array_equal(np.asarray(runner.run(req()).images[0]), stock_pixels)


def test_lossy_profile_changes_the_cache_key(tiny_model_dir):
    request = req(guidance=3.5)  # resolved: the key needs every output-affecting field
    keys = {}
    for profile in ("stock", "lossless", "lossy"):
        runner = runner_for(tiny_model_dir, profile)
        keys[profile] = request.cache_key("rev", runner.cache_dtype)
    assert keys["stock"] == keys["lossless"]  # same output within bf16 rounding: share the cache
    assert keys["lossy"] != keys["stock"]
    assert runner_for(tiny_model_dir, "lossy").cache_dtype == "float32+speed=lossy"


def test_lossy_on_cpu_runs_first_block_cache_and_resets_between_runs(tiny_model_dir):
    """fp8 is skipped on CPU; First Block Cache runs, and a run after a run gives the same pixels
    (its residuals are reset before each denoise)."""
    runner = runner_for(tiny_model_dir, "lossy")
    pipe = runner.load(FAMILY)[0]
    assert not pipe.speed.applied("fp8") and pipe.speed.applied("first_block_cache")
    a = np.asarray(runner.run(req()).images[0])
    b = np.asarray(runner.run(req()).images[0])
    assert np.array_equal(a, b)


def test_lossy_cancelled_run_leaves_no_cached_residuals(tiny_model_dir, monkeypatch):
    """A run cancelled mid-loop skips diffusers' own cache reset; the next run must not see the
    First Block Cache state it left behind. Threshold 1.0: any stale residual would be reused."""
    import threading

    from zaoxiang.engine import speed
    from zaoxiang.errors import Cancelled

    monkeypatch.setattr(speed, "LOSSY_FIRST_BLOCK_CACHE", 1.0)
    registry = ModelRegistry.discover([f"{FAMILY}={tiny_model_dir(FAMILY)}"], include_builtin=False)
    runner = Runner(registry, EngineSettings(device="cpu", speed="lossy"))
    reference = np.asarray(runner.run(req(steps=4)).images[0])
    cancel = threading.Event()

    def on_progress(ev):
        if ev.step == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        runner.run(req(steps=4, seed=99, prompt="a blue sea 蓝色的海"), on_progress=on_progress, cancel=cancel)
    assert np.array_equal(np.asarray(runner.run(req(steps=4)).images[0]), reference)
