"""Lossy speed on the built-in MMDiT (zaoxiang.model.fast): the first block cache and fp8 matmuls,
on the tiny preset with random weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests._stub_text import StubTextEncoder
from zaoxiang.engine.pipelines.base import PhaseTimer, RunContext
from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.engine.speed import SpeedOptions
from zaoxiang.errors import Cancelled
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.fast import (
    FirstBlockCache, apply_builtin_speed, builtin_speed_of, disable_fp8, enable_fp8, undo_builtin_speed,
)
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.pipeline import BuiltinPipeline, apply_speed_profile
from zaoxiang.model.serialization import save_weights
from zaoxiang.protocol import GenerationRequest


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py


def _random_dit(cfg, seed: int = 0) -> MMDiT:
    torch.manual_seed(seed)
    dit = MMDiT(cfg)
    with torch.no_grad():  # non-zero gates and output layer: every block changes the output
        for p in dit.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return dit.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    cfg = preset("tiny")
    folder = tmp_path_factory.mktemp("weights")
    save_weights(folder, cfg, _random_dit(cfg.transformer).state_dict(), Autoencoder(cfg.autoencoder).state_dict())
    return BuiltinPipeline.from_folder(folder, PrecisionPolicy.for_device("cpu"), text_encoder=StubTextEncoder())


@pytest.fixture(autouse=True)
def _clean(pipe):
    yield
    undo_builtin_speed(pipe)
    pipe.speed = None


def _run(pipe, step=None, **kw) -> np.ndarray:
    fields = dict(prompt="一只红苹果 on a blue background", width=64, height=64, steps=8, guidance=2.0, seed=3,
                  model="builtin")
    fields.update(kw)
    req = GenerationRequest(**fields)
    ctx = RunContext(request=req, seeds=[req.seed + i for i in range(req.n)], step=step or (lambda i, n, lat: None),
                     precision=pipe.policy, timer=PhaseTimer(torch.device("cpu")))
    return np.stack([np.asarray(im) for im in pipe.generate(ctx)])


def _lossy(pipe, threshold: float):
    pipe.speed = apply_builtin_speed(pipe, SpeedOptions(first_block_cache=threshold), "cpu")
    return pipe.speed


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_threshold_zero_is_bit_identical(pipe, guidance):
    plain = _run(pipe, guidance=guidance)
    speed = _lossy(pipe, 0.0)
    cached = _run(pipe, guidance=guidance)
    stats = speed.take_stats()
    assert np.array_equal(plain, cached)
    assert stats.forwards == 8 and stats.skipped_forwards == 0 and stats.blocks_total == 8 * 2


def test_large_threshold_skips_steps_and_changes_the_image(pipe):
    plain = _run(pipe, n=2)
    speed = _lossy(pipe, 1.0)
    cached = _run(pipe, n=2)  # CFG: one decision per batch of 2n
    stats = speed.take_stats()
    assert stats.forwards == 8
    assert 1 <= stats.skipped_forwards <= 7  # the first step always runs every block
    assert stats.blocks_skipped == stats.skipped_forwards * 1  # tiny: 2 blocks, the first always runs
    assert 0 < stats.skipped_fraction < 0.5
    assert not np.array_equal(plain, cached)


def test_state_resets_between_runs_and_after_a_cancel(pipe):
    speed = _lossy(pipe, 1.0)  # random weights: relative residual changes of ≈ 0.8-2.6 per step
    first = _run(pipe)
    s1 = speed.take_stats()
    _run(pipe, prompt="a cat on the left and a dog on the right", seed=9)  # another request in between
    speed.take_stats()
    again = _run(pipe)
    s2 = speed.take_stats()
    assert np.array_equal(first, again) and s1 == s2 and s1.skipped_forwards > 0

    def cancel_at_5(i, n, lat):
        if i == 5:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        _run(pipe, step=cancel_at_5)
    # The cancelled run left residuals behind; generate() resets them, so the same request matches.
    assert np.array_equal(_run(pipe), first)


def test_without_the_pipeline_reset_new_text_starts_a_new_run(pipe):
    """The cache also notices a new run by itself (new text states, e.g. a caller of
    sampler.denoise that never calls reset): identical inputs skip only within one run."""
    dit = pipe.transformer
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((1,), 0.5)
    text, mask = pipe.text_encoder.encode(["red apple"], max_length=16)  # (1, T, 384), (1, T)
    cache = FirstBlockCache(dit, 0.01)
    cache.install()
    try:
        with torch.no_grad():
            dit(x, t, text, mask)
            dit(x, t, text, mask)  # same run, unchanged residual: skipped
            same_run = cache.take_stats()
            dit(x, t, text.clone(), mask)  # equal values, new tensor: a new run, computed
            new_run = cache.take_stats()
    finally:
        cache.uninstall()
    assert same_run.skipped_forwards == 1 and new_run.skipped_forwards == 0 and new_run.forwards == 1


@pytest.mark.parametrize("dual,single", [(2, 2), (0, 3), (3, 0)])
def test_a_skipped_step_rebuilds_the_output_from_the_cached_residual(dual, single):
    """Same inputs twice: the first block's residual is unchanged (diff 0), so the second call skips,
    and head output + cached tail residual must give the full model's output again (dual or single
    head and tail)."""
    cfg = dataclasses.replace(preset("tiny").transformer, dual_blocks=dual, single_blocks=single)
    dit = _random_dit(cfg, seed=1)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.full((2,), 0.7)
    text = torch.randn(2, 5, 384, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    with torch.no_grad():
        full = dit(x, t, text, mask)
        cache = FirstBlockCache(dit, 0.01)
        cache.install()
        first, second = dit(x, t, text, mask), dit(x, t, text, mask)
        stats = cache.take_stats()
        cache.uninstall()
        after = dit(x, t, text, mask)
    assert torch.equal(first, full) and torch.equal(after, full)
    assert stats.skipped_forwards == 1 and stats.blocks_skipped == dual + single - 1
    torch.testing.assert_close(second, full, rtol=1e-5, atol=1e-5)
    # A different input at a tiny threshold runs every block again.
    cache.install()
    with torch.no_grad():
        dit(x, t, text, mask)
        moved = dit(x * 2.0, t * 0.5, text, mask)
    assert cache.take_stats().skipped_forwards == 0
    cache.uninstall()
    with torch.no_grad():
        assert torch.equal(moved, dit(x * 2.0, t * 0.5, text, mask))


def test_undo_restores_the_plain_model(pipe):
    plain = _run(pipe)
    _lossy(pipe, 1.0)
    assert not np.array_equal(_run(pipe), plain)
    undo_builtin_speed(pipe)
    assert builtin_speed_of(pipe) is None and not any("forward" in b.__dict__ for b in pipe.transformer.modules())
    assert np.array_equal(_run(pipe), plain)


def test_fp8_is_skipped_off_hopper_and_reported(pipe):
    speed = apply_builtin_speed(pipe, SpeedOptions(fp8=True), "cpu")
    fp8 = next(c for c in speed.report.choices if c.name == "fp8")
    assert not fp8.applied and fp8.reason.startswith("skipped") and speed.fp8_layers == 0
    assert speed.cache is None


def test_fp8_cpu_reference_applies_fp8_on_the_cpu_and_says_so(pipe):
    """Only a benchmark asks for it: the same Linear layers go fp8, the report names the CPU kernel,
    images change (fp8 rounds) and undo restores them exactly."""
    plain = _run(pipe)
    speed = apply_builtin_speed(pipe, SpeedOptions(fp8=True), "cpu", fp8_cpu_reference=True)
    fp8 = next(c for c in speed.report.choices if c.name == "fp8")
    assert fp8.applied and "CPU reference" in fp8.reason and speed.fp8_layers > 0
    changed = _run(pipe)
    assert not np.array_equal(changed, plain)
    assert np.abs(changed.astype(int) - plain.astype(int)).mean() < 20  # fp8 rounding, not noise
    undo_builtin_speed(pipe)
    assert np.array_equal(_run(pipe), plain)


def test_fp8_matmuls_change_little_and_undo_exactly():
    """The fp8 path itself runs on the CPU too (torch._scaled_mm), so its mechanics are tested here;
    apply_builtin_speed only turns it on for CUDA 8.9+."""
    cfg = preset("tiny").transformer
    dit = _random_dit(cfg, seed=2)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    t, text, mask = torch.full((2,), 0.5), torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    keys = set(dit.state_dict())
    with torch.no_grad():
        ref = dit(x, t, text, mask)
        n = enable_fp8(dit)
        q = dit(x, t, text, mask)
        assert set(dit.state_dict()) == keys  # no new state-dict entries
        assert disable_fp8(dit) == n
        back = dit(x, t, text, mask)
    # tiny: per stream qkv, proj, 2 MLP Linears (x2 streams) + single linear1, linear2
    assert n == 10
    assert not torch.equal(q, ref)
    assert (q - ref).norm() / ref.norm() < 0.15  # e4m3 keeps ~2 significant digits
    assert torch.equal(back, ref)


def test_lora_stacks_on_fp8_layers():
    """fp8 keeps each Linear in place, so the engine's per-request LoRA still finds its layers."""
    from zaoxiang.engine.lora import ActiveLora, LoraWeights
    from zaoxiang.model.lora import BuiltinLoraTarget, random_lora

    cfg = preset("tiny").transformer
    dit = _random_dit(cfg, seed=4)
    layers = random_lora(dit, rank=4, std=0.3, seed=1, targets=["dual.0.img.qkv", "single.0.linear2"])
    sd = {}
    for path, (down, up) in layers.items():
        sd[f"transformer.{path}.lora_A.weight"], sd[f"transformer.{path}.lora_B.weight"] = down, up
    weights = LoraWeights(sha256="0" * 64, state_dict=sd, metadata={"alpha": "4.0"}, format="peft",
                          nbytes=0)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    t, text, mask = torch.full((1,), 0.5), torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool)
    enable_fp8(dit)
    target = BuiltinLoraTarget(dit)
    with torch.no_grad():
        base = dit(x, t, text, mask)
        target.apply([ActiveLora(name="r", weights=weights, scale=1.0, field="loras")])
        with_lora = dit(x, t, text, mask)
        target.remove()
        again = dit(x, t, text, mask)
    assert not torch.equal(with_lora, base) and torch.equal(again, base)
    assert "_zaoxiang_fp8" in dit.get_submodule("dual.0.img.qkv").__dict__  # still fp8 after the LoRA left


def test_engine_profiles(pipe):
    apply_speed_profile(pipe, "stock")
    assert pipe.speed is None
    apply_speed_profile(pipe, "lossless")
    assert pipe.speed is None
    apply_speed_profile(pipe, "lossy")
    assert pipe.speed is not None and pipe.speed.cache is not None and pipe.speed.report.applied("first_block_cache")
    assert not pipe.speed.report.applied("fp8")  # CPU


def test_load_builtin_applies_the_lossy_profile(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from zaoxiang.model import pipeline as pipeline_mod
    from zaoxiang.model import text_encoder as te_mod
    from zaoxiang.settings import EngineSettings

    cfg = preset("tiny")
    save_weights(tmp_path, cfg, MMDiT(cfg.transformer).state_dict(), Autoencoder(cfg.autoencoder).state_dict())
    monkeypatch.setattr(te_mod.E5TextEncoder, "load", classmethod(lambda cls, *a, **k: StubTextEncoder()))
    entry = SimpleNamespace(path=tmp_path, name="builtin")
    policy = PrecisionPolicy.for_device("cpu")
    lossy = pipeline_mod.load_builtin(entry, policy, EngineSettings(device="cpu", speed="lossy"))
    stock = pipeline_mod.load_builtin(entry, policy, EngineSettings(device="cpu"))
    assert lossy.speed is not None and lossy.speed.cache is not None and stock.speed is None


def test_runner_with_the_lossy_profile(tmp_path, monkeypatch):
    """Through the engine: the lossy profile loads the built-in model with the cache on, changes the
    cache key's dtype, and two identical requests give identical images (no state between runs)."""
    from zaoxiang.engine.registry import ModelRegistry, builtin_entry
    from zaoxiang.engine.runner import Runner
    from zaoxiang.model import text_encoder as te_mod
    from zaoxiang.settings import EngineSettings

    cfg = preset("tiny")
    save_weights(tmp_path, cfg, _random_dit(cfg.transformer, seed=5).state_dict(), Autoencoder(cfg.autoencoder).state_dict())
    monkeypatch.setattr(te_mod.E5TextEncoder, "load", classmethod(lambda cls, *a, **k: StubTextEncoder()))
    runner = Runner(ModelRegistry([builtin_entry(tmp_path)]), EngineSettings(device="cpu", speed="lossy"))
    req = GenerationRequest(prompt="a red apple", steps=8, guidance=2.0, seed=1)
    first, second = runner.run(req), runner.run(req)
    pipe, _ = runner.load(None)
    assert pipe.speed is not None and pipe.speed.cache is not None and pipe.speed.cache.threshold == 0.08
    assert runner.cache_dtype.endswith("+speed=lossy")
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))


def test_keyword_calls_are_seen_too():
    cfg = preset("tiny").transformer
    dit = _random_dit(cfg, seed=6)
    x, t = torch.randn(1, 4, 8, 8), torch.full((1,), 0.5)
    text, mask = torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool)
    cache = FirstBlockCache(dit, 0.01)
    cache.install()
    with torch.no_grad():
        a = dit(x, t, text=text, text_mask=mask)
        b = dit(x=x, t=t, text=text, text_mask=mask)
    stats = cache.take_stats()
    cache.uninstall()
    assert stats.forwards == 2 and stats.skipped_forwards == 1
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_few_step_runs_leave_the_cache_off(pipe):
    """At turbo's 4 steps the cache never skipped and only cost time (bench/lossy-quality-cpu.md), so
    such runs leave it off even at a threshold that skips at 8 steps."""
    plain = _run(pipe, steps=4)
    speed = _lossy(pipe, 1.0)
    try:
        few = _run(pipe, steps=4)
        assert speed.take_stats().skipped_forwards == 0
        assert np.array_equal(plain, few)
        _run(pipe, steps=8)  # the same cache does skip on a longer run right after
        assert speed.take_stats().skipped_forwards >= 1
    finally:
        speed.undo()
        pipe.speed = None
