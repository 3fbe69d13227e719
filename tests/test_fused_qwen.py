"""CPU tests of zaoxiang.engine.fused for Qwen-Image: the real-valued RoPE equals diffusers' complex one."""

from __future__ import annotations

import pytest
import torch

from zaoxiang.engine.fused import RealQwenRope, install_real_rope, real_rope_installed, uninstall_real_rope
from zaoxiang.engine.speed import apply_speed, options_for_profile

from tests.compile_support import check_no_complex_rope, signalled_model, trace_block

# fp32: the rewrite does the same fp32 products and sums as the complex64 multiply, so only FMA
# contraction could differ (on CPU the outputs are bit-equal); bf16: the bench's one-forward tolerance.
FP32_TOL = 1e-6
BF16_TOL = 1e-2
TINY_QWEN = dict(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
                 joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4))


def _model(dtype: torch.dtype = torch.float32):
    from diffusers import QwenImageTransformer2DModel

    return signalled_model(QwenImageTransformer2DModel, TINY_QWEN, dtype)


def _inputs(dtype: torch.dtype = torch.float32, batch: int = 1, masked: bool = False):
    """A 4x4-patch image (16 tokens of 16 packed channels) and 7 text tokens; ``masked``: the last
    sample's text is padded after 5 tokens (as QwenCfgBatcher pads the shorter prompt)."""
    g = torch.Generator().manual_seed(1)
    mask = None
    if masked:
        mask = torch.ones(batch, 7, dtype=torch.bool)
        mask[-1, 5:] = False
    return dict(hidden_states=torch.randn(batch, 16, 16, generator=g).to(dtype),  # (B, S_img, C)
                encoder_hidden_states=torch.randn(batch, 7, 16, generator=g).to(dtype),  # (B, S_txt, D_txt)
                encoder_hidden_states_mask=mask, timestep=torch.full((batch,), 0.3),
                img_shapes=[[(1, 4, 4)]] * batch, return_dict=False)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _out(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs)[0].float()


@pytest.mark.parametrize("batch,masked", [(1, False), (2, True)])
def test_real_rope_forward_matches_stock_fp32(batch, masked):
    model, inputs = _model(), _inputs(batch=batch, masked=masked)
    stock = _out(model, inputs)
    assert install_real_rope(model) == 2  # one joint attention per block
    assert real_rope_installed(model) and isinstance(model.pos_embed, RealQwenRope)
    ours = _out(model, inputs)
    assert torch.isfinite(ours).all()
    assert _rel(ours, stock) <= FP32_TOL


def test_real_rope_forward_matches_stock_bf16():
    model, inputs = _model(torch.bfloat16), _inputs(torch.bfloat16, batch=2, masked=True)
    stock = _out(model, inputs)
    assert install_real_rope(model) == 2
    assert _rel(_out(model, inputs), stock) <= BF16_TOL


def test_install_is_idempotent_and_uninstall_restores_stock_bit_for_bit():
    from diffusers.models.transformers.transformer_qwenimage import QwenDoubleStreamAttnProcessor2_0, QwenEmbedRope

    model, inputs = _model(), _inputs(batch=2, masked=True)
    stock = _out(model, inputs)
    rope = model.pos_embed
    assert install_real_rope(model) == 2
    procs = [b.attn.processor for b in model.transformer_blocks]
    assert install_real_rope(model) == 2  # again: counts the installed ones, swaps nothing, wraps once
    assert [b.attn.processor for b in model.transformer_blocks] == procs
    assert model.pos_embed.inner is rope and not isinstance(rope, RealQwenRope)
    assert not any(k.startswith("pos_embed") for k in model.state_dict())  # the wrapper adds no weights
    uninstall_real_rope(model)
    assert not real_rope_installed(model)
    assert model.pos_embed is rope and type(rope) is QwenEmbedRope
    assert all(type(b.attn.processor) is QwenDoubleStreamAttnProcessor2_0 for b in model.transformer_blocks)
    assert torch.equal(_out(model, inputs), stock)
    assert install_real_rope(model) == 2  # and back on after an uninstall
    assert real_rope_installed(model)


def test_processor_accepts_complex_tables_when_pos_embed_is_not_wrapped():
    model, inputs = _model(), _inputs(batch=2, masked=True)
    stock = _out(model, inputs)
    install_real_rope(model)
    model.pos_embed = model.pos_embed.inner  # the complex tables reach the real processors
    assert not real_rope_installed(model)
    assert _rel(_out(model, inputs), stock) <= FP32_TOL


def test_apply_speed_installs_it_for_qwen_and_no_complex_rope_runs(monkeypatch):
    """Fails if the rewrite is not installed: stock Qwen-Image calls torch.view_as_complex 4x per block."""
    model, inputs = _model(), _inputs()
    pipe = type("P", (), {"transformer": model, "vae": None})()
    report = apply_speed(pipe, "qwen-image", options_for_profile("lossless"), "cpu")
    assert report.applied("real_rope") and real_rope_installed(model)
    reason = next(c.reason for c in report.choices if c.name == "real_rope")
    assert reason.startswith("2 QwenImageTransformer2DModel attention processors"), reason
    check_no_complex_rope(monkeypatch, model, lambda: _out(model, inputs))


def test_compiled_block_graph_has_no_complex_tensor_and_no_graph_break():
    """What the GPU compile will see: one Qwen block traces as one graph (fullgraph) with real tensors only."""
    model, inputs = _model(), _inputs(batch=2, masked=True)
    assert install_real_rope(model) == 2
    trace = trace_block(model.transformer_blocks[0], lambda: _out(model, inputs))
    tables = trace.kwargs["image_rotary_emb"]
    assert all(t.dtype == torch.float32 and t.shape[-1] == 2 for t in tables)  # (S, D/2, 2) real
    assert len(trace.graphs) == 1 and trace.complex_nodes() == []
    assert all(torch.equal(g, w) for g, w in zip(trace.compiled_out, trace.eager_out))
