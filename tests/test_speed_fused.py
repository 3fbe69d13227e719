"""CPU tests of zaoxiang.engine.fused: Z-Image's real-valued RoPE equals diffusers' complex one."""

from __future__ import annotations

import pytest
import torch

from zaoxiang.engine.fused import install_real_rope, real_rope_installed, rotate_real, uninstall_real_rope
from zaoxiang.engine.speed import SpeedOptions, apply_speed, options_for_profile

from tests.compile_support import check_no_complex_rope, signalled_model, trace_block

# Tolerances: fp32 — the rewrite does the same fp32 products and sums as the complex64 multiply, so
# only FMA contraction can differ (a few ulp); bf16 — the bench's one-forward tolerance (rel L2 1e-2).
FP32_TOL = 1e-5
BF16_TOL = 1e-2

TINY_Z = dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2, n_refiner_layers=1,
              n_heads=2, n_kv_heads=2, qk_norm=True, cap_feat_dim=24, axes_dims=[8, 4, 4], axes_lens=[256, 64, 64])


def _model(dtype: torch.dtype = torch.float32):
    from diffusers import ZImageTransformer2DModel

    return signalled_model(ZImageTransformer2DModel, TINY_Z, dtype)


def _inputs(dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(16, 1, 8, 8, generator=g).to(dtype)]  # (C, F, H, W)
    cap = [torch.randn(7, 24, generator=g).to(dtype)]  # (L, D): 7 is not a multiple of the pad length
    return dict(x=x, t=torch.tensor([0.3]), cap_feats=cap, return_dict=False)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _out(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack(list(model(**inputs)[0])).float()


def test_rotate_real_equals_complex_multiply():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 8, generator=g)  # (B, S, H, D)
    table = torch.polar(torch.ones(2, 5, 4), torch.randn(2, 5, 4, generator=g))  # (B, S, D/2) complex64
    stock = torch.view_as_real(torch.view_as_complex(x.reshape(2, 5, 3, 4, 2)) * table.unsqueeze(2)).flatten(3)
    ours = rotate_real(x, torch.view_as_real(table))
    assert ours.shape == x.shape
    assert (ours - stock).abs().max() <= 1e-6
    assert (rotate_real(x, torch.view_as_real(torch.ones(2, 5, 4, dtype=torch.complex64))) == x).all()  # angle 0


def test_compiled_rotation_writes_no_fp32_copy_of_q_or_k():
    """Compiled by Inductor on the CPU, the rotated q and k go straight to bf16 in attention's
    (B, H, S, D) layout: no q- or k-sized fp32 buffer (the stacked first version wrote one per
    rotation). Only the small (B, S, D/2, 2) tables may be materialised. (On an H100 Inductor still
    writes the key in fp32 before the cast, which this CPU test cannot see: docs/performance.md.)"""
    import re

    from torch._inductor.utils import run_and_get_code

    from zaoxiang.engine.fused import pair_tables, rotate_pairs

    def qk(q, k, table):
        cos2, sin2 = pair_tables(table)
        return (rotate_pairs(q, cos2, sin2).permute(0, 2, 1, 3).contiguous(),
                rotate_pairs(k, cos2, sin2).permute(0, 2, 1, 3).contiguous())

    B, S, H, D = 1, 64, 3, 32
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, S, H, D, generator=g, dtype=torch.bfloat16) for _ in range(2))
    table = torch.view_as_real(torch.polar(torch.ones(B, S, D // 2), torch.rand(B, S, D // 2, generator=g)))
    torch._dynamo.reset()
    (oq, ok), codes = run_and_get_code(torch.compile(qk, fullgraph=True), q, k, table)
    buffers = re.findall(r"empty_strided_\w+\(\(([^)]*)\), \([^)]*\), torch\.(\w+)\)", "\n".join(codes))
    assert buffers, "no buffers found: the generated code's format changed"
    for shape, dtype in buffers:
        numel = 1
        for n in shape.split(","):
            numel *= int(n) if n.strip() else 1
        assert dtype != "float32" or numel < q.numel(), (shape, dtype)
    assert torch.equal(oq, rotate_real(q, table).permute(0, 2, 1, 3))
    assert torch.equal(ok, rotate_real(k, table).permute(0, 2, 1, 3))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, FP32_TOL), (torch.bfloat16, BF16_TOL)])
def test_real_rope_forward_matches_stock(dtype, tol):
    model, inputs = _model(dtype), _inputs(dtype)
    stock = _out(model, inputs)
    assert install_real_rope(model) == 2 + 1 + 1  # one attention each: 2 layers, 1 noise refiner, 1 context refiner
    ours = _out(model, inputs)
    assert torch.isfinite(ours).all()
    assert _rel(ours, stock) <= tol
    uninstall_real_rope(model)
    assert not real_rope_installed(model)
    assert _rel(_out(model, inputs), stock) == 0.0  # stock back, bit for bit


def test_installed_rewrite_never_builds_a_complex_tensor(monkeypatch):
    """Fails if the rewrite is not installed: stock Z-Image calls torch.view_as_complex per attention."""
    model, inputs = _model(), _inputs()
    report = apply_speed(model_pipe := type("P", (), {"transformer": model, "vae": None})(), "z-image",
                         options_for_profile("lossless"), "cpu")
    assert report.applied("real_rope") and real_rope_installed(model_pipe.transformer)
    check_no_complex_rope(monkeypatch, model, lambda: _out(model, inputs))


def test_compiled_block_graph_has_no_complex_tensor_and_no_graph_break():
    """What the GPU compile will see: the block traces as one graph (fullgraph) with real tensors only."""
    model, inputs = _model(), _inputs()
    install_real_rope(model)
    trace = trace_block(model.layers[0], lambda: _out(model, inputs))
    assert not any(isinstance(a, torch.Tensor) and a.is_complex() for a in trace.args)
    assert len(trace.graphs) == 1 and trace.complex_nodes() == []
    assert torch.equal(trace.compiled_out, trace.eager_out)


def test_profiles_carry_real_rope_only_where_lossless():
    assert options_for_profile("lossless").real_rope and options_for_profile("lossy").real_rope
    assert not SpeedOptions.stock().real_rope
    assert SpeedOptions().lossless and not SpeedOptions().cuda_graphs


def test_install_is_a_no_op_on_other_models():
    from zaoxiang.testing.tiny_models import build_flux

    pipe = build_flux()
    assert install_real_rope(pipe.transformer) == 0
    assert not real_rope_installed(pipe.transformer)
