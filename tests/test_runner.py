import threading

import numpy as np
import pytest
import torch

from tests.fakes import ColourPipeline, fake_entry
from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.errors import (Cancelled, GenerationFailed, InvalidRequest, ModelLoadError, ModelNotFound,
                             NoModelInstalled)
from zaoxiang.protocol import GenerationRequest
from zaoxiang.settings import EngineSettings


class Loader:
    def __init__(self, **kw):
        self.calls = []
        self.kw = kw
        self.made = []

    def __call__(self, entry, policy, settings):
        self.calls.append(entry.name)
        pipe = ColourPipeline(entry, **self.kw)
        self.made.append(pipe)
        return pipe


def make_runner(tmp_path, names=("a",), **kw):
    reg = ModelRegistry([fake_entry(n, tmp_path) for n in names])
    loader = Loader(**kw)
    return Runner(reg, EngineSettings(device="cpu"), loader=loader), loader


def pixels(result):
    return [np.asarray(im) for im in result.images]


def test_defaults_resolved_and_timings_reported(tmp_path):
    runner, _ = make_runner(tmp_path)
    res = runner.run(GenerationRequest(prompt="red", seed=3))
    r = res.request
    assert (r.width, r.height, r.steps, r.guidance, r.model, r.seed) == (64, 64, 3, 1.0, "a", 3)
    assert res.images[0].size == (64, 64)
    t = res.timings
    assert t.total_s >= t.denoise_s > 0 and t.decode_s > 0 and t.text_encode_s >= 0
    assert res.dtype == "float32" and res.device == "cpu"


def test_random_seed_is_recorded_and_reproducible(tmp_path):
    runner, _ = make_runner(tmp_path)
    first = runner.run(GenerationRequest(prompt="x"))
    again = runner.run(GenerationRequest(prompt="x", seed=first.seeds[0]))
    assert np.array_equal(pixels(first)[0], pixels(again)[0])
    other = runner.run(GenerationRequest(prompt="x", seed=first.seeds[0] + 1000))
    assert not np.array_equal(pixels(first)[0], pixels(other)[0])


def test_n_images_use_consecutive_seeds(tmp_path):
    runner, _ = make_runner(tmp_path)
    two = runner.run(GenerationRequest(prompt="x", seed=10, n=2))
    assert two.seeds == [10, 11]
    second = runner.run(GenerationRequest(prompt="x", seed=11))
    assert np.array_equal(pixels(two)[1], pixels(second)[0])


def test_model_loaded_once_and_kept_warm_lru(tmp_path):
    runner, loader = make_runner(tmp_path, names=("a", "b"))
    for m in ("a", "a", "b", "a"):
        runner.run(GenerationRequest(prompt="x", model=m, seed=1))
    assert loader.calls == ["a", "b", "a"]  # warm_models=1: switching unloads
    assert loader.made[0].unloaded and loader.made[1].unloaded
    assert runner.warm_models() == ["a"]


def test_progress_once_per_step(tmp_path):
    runner, _ = make_runner(tmp_path)
    events = []
    runner.run(GenerationRequest(prompt="x", steps=5, seed=1), on_progress=events.append)
    assert [(e.step, e.total) for e in events] == [(i, 5) for i in range(1, 6)]


def test_cancel_takes_effect_within_one_step(tmp_path):
    runner, _ = make_runner(tmp_path)
    cancel = threading.Event()
    seen = []

    def on_progress(ev):
        seen.append(ev.step)
        if ev.step == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        runner.run(GenerationRequest(prompt="x", steps=10, seed=1), on_progress=on_progress, cancel=cancel)
    assert seen == [1, 2]
    # the runner is reusable after a cancel
    assert runner.run(GenerationRequest(prompt="x", seed=1)).images


def test_cancel_before_start(tmp_path):
    runner, loader = make_runner(tmp_path)
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        runner.run(GenerationRequest(prompt="x"), cancel=ev)
    assert loader.calls == []


def test_nan_latents_fail_clearly(tmp_path):
    runner, _ = make_runner(tmp_path, nan_at_step=2)
    with pytest.raises(GenerationFailed) as info:
        runner.run(GenerationRequest(prompt="x", seed=1))
    assert info.value.code == "nan_latents"


def test_black_decode_retried_in_fp32_then_ok():
    from zaoxiang.engine.precision import guarded_decode

    calls = []

    def decode(z, dtype):
        calls.append(dtype)
        if dtype == torch.bfloat16:
            return torch.full((1, 3, 8, 8), -1.0)  # all black in bf16
        return torch.zeros((1, 3, 8, 8))

    out = guarded_decode(decode, torch.zeros(1, 4), PrecisionPolicy(torch.device("cpu"), torch.bfloat16))
    assert calls == [torch.bfloat16, torch.float32]
    assert out.abs().max() == 0


def test_black_decode_in_fp32_fails():
    runner_decode = lambda z, dtype: torch.full((1, 3, 8, 8), -1.0)  # noqa: E731
    from zaoxiang.engine.precision import guarded_decode

    with pytest.raises(GenerationFailed) as info:
        guarded_decode(runner_decode, torch.zeros(1, 4), PrecisionPolicy(torch.device("cpu"), torch.float32))
    assert info.value.code == "bad_decode" and "black" in info.value.message


def test_nan_decode_twice_fails_after_retry():
    from zaoxiang.engine.precision import guarded_decode

    bad = lambda z, dtype: torch.full((1, 3, 8, 8), float("nan"))  # noqa: E731
    with pytest.raises(GenerationFailed) as info:
        guarded_decode(bad, torch.zeros(1, 4), PrecisionPolicy(torch.device("cpu"), torch.bfloat16))
    assert "fp32 retry" in info.value.message


def test_unknown_model_and_no_model(tmp_path):
    runner, _ = make_runner(tmp_path)
    with pytest.raises(ModelNotFound) as info:
        runner.run(GenerationRequest(prompt="x", model="nope"))
    assert info.value.field == "model" and "a" in info.value.message
    empty = Runner(ModelRegistry([]), EngineSettings(device="cpu"), loader=Loader())
    with pytest.raises(NoModelInstalled) as info:
        empty.run(GenerationRequest(prompt="x"))
    assert "--model" in info.value.message


def test_loader_crash_becomes_model_load_error(tmp_path):
    def broken(entry, policy, settings):
        raise OSError("weights truncated")

    runner = Runner(ModelRegistry([fake_entry("a", tmp_path)]), EngineSettings(device="cpu"), loader=broken)
    with pytest.raises(ModelLoadError) as info:
        runner.run(GenerationRequest(prompt="x"))
    assert "weights truncated" in info.value.message


def test_upscale_over_the_side_limit_names_the_field(tmp_path):
    from zaoxiang.errors import InvalidRequest

    runner, _ = make_runner(tmp_path)
    with pytest.raises(InvalidRequest) as info:
        runner.resolve(GenerationRequest(prompt="x", width=2560, height=1024, upscale=4, seed=1))
    assert info.value.field == "upscale" and "8192" in info.value.message
    ok = runner.resolve(GenerationRequest(prompt="x", width=2048, height=1024, upscale=4, seed=1))
    assert ok.upscale == 4


class CompiledPipeline(ColourPipeline):
    """Stands for a diffusers pipeline whose speed profile compiled graphs; records each run."""

    compiled = True

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        self.runs = []

    def validate(self, request):
        if request.width == 96:
            raise InvalidRequest("width must be a multiple of 64", field="width")

    def generate(self, ctx):
        self.runs.append((ctx.request.width, ctx.request.height, ctx.request.steps, ctx.request.prompt))
        return super().generate(ctx)


def warm_runner(tmp_path, pipeline_cls=CompiledPipeline, **settings):
    made = []

    def loader(entry, policy, engine_settings):
        made.append(pipeline_cls(entry))
        return made[-1]

    reg = ModelRegistry([fake_entry("a", tmp_path)])
    return Runner(reg, EngineSettings(device="cpu", **settings), loader=loader), made


def test_a_compiled_pipeline_is_warmed_up_once_per_size_when_it_loads(tmp_path):
    runner, made = warm_runner(tmp_path, warm_up_sizes=["default", "128x192", "default"])
    runner.run(GenerationRequest(prompt="user", seed=1))
    warm = [(w, h, steps, prompt) for w, h, steps, prompt in made[0].runs if prompt == "warm-up"]
    assert warm == [(64, 64, 2, "warm-up"), (128, 192, 2, "warm-up")]  # the default size once, then 128x192
    assert made[0].runs[-1] == (64, 64, 3, "user")  # the user's run comes after, at the defaults
    runner.run(GenerationRequest(prompt="user", seed=2))
    assert len(made[0].runs) == 4  # warm already: no second warm-up


def test_warm_up_is_skipped_for_pipelines_that_compiled_nothing_and_when_turned_off(tmp_path):
    runner, made = warm_runner(tmp_path, pipeline_cls=type("Plain", (CompiledPipeline,), {"compiled": False}))
    runner.run(GenerationRequest(prompt="user", seed=1))
    assert [r[3] for r in made[0].runs] == ["user"]
    runner, made = warm_runner(tmp_path, warm_up_sizes=[])
    runner.run(GenerationRequest(prompt="user", seed=1))
    assert [r[3] for r in made[0].runs] == ["user"]


class DeferringPipeline(CompiledPipeline):
    """A compiled pipeline whose speed profile left work for the worker's first idle moment."""

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        self.deferred_speed = True
        self.applied = 0

    def apply_deferred_speed(self):
        self.applied += 1
        self.deferred_speed = False
        return True


def test_idle_applies_deferred_speed_once_and_warms_up_again(tmp_path):
    runner, made = warm_runner(tmp_path, pipeline_cls=DeferringPipeline)
    assert runner.idle() is False  # nothing loaded yet
    runner.run(GenerationRequest(prompt="user", seed=1))
    assert made[0].applied == 0  # the first image does not wait for it
    assert runner.idle() is True
    assert made[0].applied == 1 and [r[3] for r in made[0].runs] == ["warm-up", "user", "warm-up"]
    assert runner.idle() is False and made[0].applied == 1  # done once


def test_compile_vae_at_is_validated():
    assert EngineSettings().compile_vae_at == "idle"
    with pytest.raises(ValueError, match="compile_vae_at"):
        EngineSettings(compile_vae_at="later")


def test_a_warm_up_size_the_model_refuses_is_logged_and_the_model_still_serves(tmp_path, caplog):
    runner, made = warm_runner(tmp_path, warm_up_sizes=["96x64", "default"])
    with caplog.at_level("WARNING", logger="zaoxiang.engine.runner"):
        result = runner.run(GenerationRequest(prompt="user", seed=1))
    assert result.images[0].size == (64, 64)
    assert "warm-up of a at 96x64 skipped: width must be a multiple of 64" in caplog.text
    assert [r[:2] for r in made[0].runs] == [(64, 64), (64, 64)]  # the default warm-up, then the user's


@pytest.mark.parametrize("speed, preset, expect", [
    ("lossless", None, "mine"),  # a compiling profile points Inductor at the setting
    ("lossless", "/elsewhere", "/elsewhere"),  # the environment wins
    ("stock", None, None),  # nothing compiles: the environment is left alone
])
def test_compiling_profiles_keep_their_compile_cache_in_the_configured_folder(tmp_path, monkeypatch, speed, preset,
                                                                               expect):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    if preset is not None:
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", preset)
    runner, _ = warm_runner(tmp_path, speed=speed, compile_cache_dir=tmp_path / "cc")
    runner.load("a")
    import os

    want = {"mine": str(tmp_path / "cc" / "inductor"), "/elsewhere": "/elsewhere", None: None}[expect]
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == want
    assert os.environ.get("TRITON_CACHE_DIR") == (str(tmp_path / "cc" / "triton") if expect == "mine" else None)


def test_settings_keep_the_compile_cache_in_the_data_folder_and_name_a_bad_warm_up_size(tmp_path):
    from pydantic import ValidationError

    from zaoxiang.settings import Settings

    assert Settings.load(data_dir=tmp_path).engine.compile_cache_dir == tmp_path / "compile-cache"
    chosen = Settings.load(data_dir=tmp_path, engine={"compile_cache_dir": tmp_path / "cc"})
    assert chosen.engine.compile_cache_dir == tmp_path / "cc"
    with pytest.raises(ValidationError, match=r"warm_up_sizes[\s\S]*sides 64-4096, got '1024x10'"):
        Settings.load(engine={"warm_up_sizes": ["default", "1024x10"]})
