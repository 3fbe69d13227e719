"""CPU tests of zaoxiang.engine.speed and of bench/real_arch.py's real-size config builders."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from zaoxiang.engine.speed import (
    Fp8Linear,
    QwenCfgBatcher,
    SpeedConfigError,
    SpeedOptions,
    apply_deferred_vae,
    apply_speed,
    fuse_rmsnorms,
    reset_step_caches,
)
from zaoxiang.testing.tiny_models import build_flux, build_qwen_image

REPO = Path(__file__).resolve().parents[1]


def _real_arch():
    spec = importlib.util.spec_from_file_location("real_arch", REPO / "bench" / "real_arch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("real_arch", module)
    spec.loader.exec_module(module)
    return module


# -- options --------------------------------------------------------------------------------------------


def test_options_defaults_are_lossless_and_validated():
    assert SpeedOptions().lossless
    assert not SpeedOptions().cfg_batch  # opt-in: the batch-2 CFG step measured slower (bench/results-h100-qwen.md)
    assert not SpeedOptions(fp8=True).lossless
    assert not SpeedOptions(first_block_cache=0.1).lossless
    with pytest.raises(SpeedConfigError, match="compile"):
        SpeedOptions(compile="full")  # type: ignore[arg-type]
    for bad in (-0.1, 1.5, True, "0.1"):
        with pytest.raises(SpeedConfigError, match="first_block_cache"):
            SpeedOptions(first_block_cache=bad)  # type: ignore[arg-type]


def test_apply_speed_on_cpu_skips_compile_with_a_reason():
    pipe = build_flux(0)
    report = apply_speed(pipe, "flux", SpeedOptions(cfg_batch=True), "cpu")
    by_name = {c.name: c for c in report.choices}
    assert not by_name["compile_blocks"].applied and "CUDA only" in by_name["compile_blocks"].reason
    assert not by_name["compile_vae"].applied and "cpu" in by_name["compile_vae"].reason
    assert not by_name["cfg_batch"].applied and "guidance-distilled" in by_name["cfg_batch"].reason
    assert getattr(pipe.transformer.transformer_blocks[0], "_compiled_call_impl", None) is None


def test_deferred_vae_waits_until_asked_then_compiles_in_channels_last():
    # "cuda" only routes the choices: nothing here runs on a device (torch.compile wraps lazily).
    pipe = build_flux(0)
    options = SpeedOptions(compile="off", real_rope=False, cudnn_benchmark=False)
    report = apply_speed(pipe, "flux", options, "cuda", defer_vae=True)
    decoder = pipe.vae.decoder
    assert report.deferred_vae == options
    assert not report.applied("compile_vae") and not report.applied("vae_channels_last")
    assert getattr(decoder, "_compiled_call_impl", None) is None  # left eager for the first images
    conv = decoder.conv_in.weight
    assert not conv.is_contiguous(memory_format=torch.channels_last)  # and in NCHW, its faster eager layout
    assert apply_deferred_vae(pipe, "cuda", report) is True
    assert report.applied("compile_vae") and report.applied("vae_channels_last") and report.deferred_vae is None
    assert getattr(decoder, "_compiled_call_impl", None) is not None
    assert decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert [c.name for c in report.choices].count("compile_vae") == 1  # replaced, not appended twice
    assert apply_deferred_vae(pipe, "cuda", report) is False  # nothing left to do


def test_nothing_is_deferred_where_nothing_would_compile():
    pipe = build_flux(0)
    on_cpu = apply_speed(pipe, "flux", SpeedOptions(compile="off"), "cpu", defer_vae=True)
    assert on_cpu.deferred_vae is None and "cpu" in {c.name: c for c in on_cpu.choices}["compile_vae"].reason
    not_asked = apply_speed(build_flux(0), "flux", SpeedOptions(compile="off", compile_vae=False, real_rope=False,
                                                                cudnn_benchmark=False), "cuda", defer_vae=True)
    assert not_asked.deferred_vae is None and not not_asked.applied("compile_vae")


# -- CFG as one batch-2 forward ---------------------------------------------------------------------------


def _qwen_run(pipe, neg_len: int, steps: int = 3):
    g = torch.Generator().manual_seed(0)
    pe, ne = torch.randn(1, 7, 16, generator=g), torch.randn(1, neg_len, 16, generator=g)
    return pipe(
        prompt_embeds=pe, prompt_embeds_mask=None, negative_prompt_embeds=ne, negative_prompt_embeds_mask=None,
        true_cfg_scale=4.0, height=64, width=64, num_inference_steps=steps,
        generator=torch.Generator().manual_seed(1), output_type="latent", return_dict=False,
    )[0]


@pytest.mark.parametrize("neg_len", [3, 7])  # padded pair (masked) and equal lengths (no mask)
def test_cfg_batcher_matches_sequential_cfg(neg_len):
    pipe = build_qwen_image(0)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        sequential = _qwen_run(pipe, neg_len)
        report = apply_speed(pipe, "qwen-image", SpeedOptions(cfg_batch=True), "cpu")
        batched = _qwen_run(pipe, neg_len)
        again = _qwen_run(pipe, neg_len)  # a second run must not reuse the first run's pair
    assert report.cfg_batcher is not None
    assert report.cfg_batcher.batched_calls == 4  # steps 1 and 2 of each of the two runs
    torch.testing.assert_close(batched, sequential, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again, sequential, rtol=1e-4, atol=1e-5)
    assert not torch.equal(sequential, torch.zeros_like(sequential))


def test_cfg_batcher_uninstall_restores_forward():
    pipe = build_qwen_image(0)
    batcher = QwenCfgBatcher.install(pipe.transformer)
    assert QwenCfgBatcher.install(pipe.transformer) is batcher  # idempotent
    batcher.uninstall()
    assert "forward" not in pipe.transformer.__dict__ and QwenCfgBatcher.of(pipe.transformer) is None


# -- first-block cache ------------------------------------------------------------------------------------


def _flux_latents(pipe, steps: int = 4):
    g = torch.Generator().manual_seed(0)
    return pipe(
        prompt_embeds=torch.randn(1, 8, 32, generator=g), pooled_prompt_embeds=torch.randn(1, 32, generator=g),
        guidance_scale=3.5, height=64, width=64, num_inference_steps=steps, max_sequence_length=8,
        generator=torch.Generator().manual_seed(1), output_type="latent", return_dict=False,
    )[0]


def test_first_block_cache_threshold_zero_equals_no_cache_and_large_threshold_differs():
    pipe = build_flux(0)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        plain = _flux_latents(pipe)
        report = apply_speed(pipe, "flux", SpeedOptions(first_block_cache=0.0), "cpu")
        assert report.applied("first_block_cache")
        cached0 = _flux_latents(pipe)
        pipe.transformer.disable_cache()
        apply_speed(pipe, "flux", SpeedOptions(first_block_cache=1.0), "cpu")
        reset_step_caches(pipe)
        cached1 = _flux_latents(pipe)
    torch.testing.assert_close(cached0, plain, rtol=0, atol=0)
    assert not torch.allclose(cached1, plain, atol=1e-4)  # steps were really skipped


# -- fused RMSNorm ------------------------------------------------------------------------------------------


def test_fused_rmsnorm_matches_diffusers_rmsnorm_in_fp32():
    from diffusers.models.normalization import RMSNorm

    torch.manual_seed(0)
    norm = RMSNorm(64, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(2, 5, 64)
    ref = norm(x)
    holder = nn.Sequential(norm)
    assert fuse_rmsnorms(holder) == 1
    torch.testing.assert_close(norm(x), ref, rtol=1e-5, atol=1e-6)


# -- fp8 Linear ---------------------------------------------------------------------------------------------


def _fp8_matmul_on_cpu() -> bool:
    try:
        a = torch.ones(16, 16).to(torch.float8_e4m3fn)
        torch._scaled_mm(a, a.t(), scale_a=torch.tensor(1.0), scale_b=torch.tensor(1.0), out_dtype=torch.bfloat16)
        return True
    except (RuntimeError, NotImplementedError, AttributeError):
        return False


@pytest.mark.skipif(not _fp8_matmul_on_cpu(), reason="torch._scaled_mm has no CPU kernel in this torch")
@pytest.mark.parametrize("rows", [32, 7])  # 7: rows padded to a multiple of 16
def test_fp8_linear_close_to_bf16(rows):
    torch.manual_seed(0)
    lin = nn.Linear(128, 64).to(torch.bfloat16)
    with torch.no_grad():
        lin.bias.normal_()
    x = torch.randn(1, rows, 128, dtype=torch.bfloat16)
    ref = lin(x).float()
    with torch.no_grad():
        out = Fp8Linear(lin)(x)
    assert out.shape == (1, rows, 64) and out.dtype == torch.bfloat16
    err = float((out.float() - ref).norm() / ref.norm())
    assert 1e-4 < err < 0.08  # e4m3 rounds each operand to ~2^-4 relative; it is not bf16
    assert Fp8Linear.fits(lin) and not Fp8Linear.fits(nn.Linear(10, 64))


# -- real-size configs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["flux", "qwen", "zimage"])
def test_real_configs_have_published_parameter_counts(key):
    real_arch = _real_arch()
    spec = real_arch.REAL[key]
    model = real_arch.build_on_meta(spec.transformer, spec.transformer_cfg)
    n = real_arch.count_params(model)
    assert all(p.is_meta for p in model.parameters())
    assert abs(n - spec.published_params) / spec.published_params < 0.03, (key, n)
    expected = {"flux": 11.9e9, "qwen": 20.4e9, "zimage": 6.2e9}[key]  # the model cards' round numbers
    assert abs(n - expected) / expected < 0.03
