import pytest
import torch

from zaoxiang.model.config import ModelConfig, TransformerConfig, preset
from zaoxiang.model.mmdit import MMDiT, apply_rope, rope_2d


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py


def _model(seed=0, randomise=True):
    torch.manual_seed(seed)
    m = MMDiT(preset("tiny").transformer).eval()
    if randomise:  # zero-initialised gates would hide every bug behind a zero output
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    return m


def _inputs(b=2, t=5):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 4, 8, 8, generator=g)
    text = torch.randn(b, t, 384, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    return x, torch.rand(b, generator=g), text, mask


def test_output_shape_and_zero_init():
    x, t, text, mask = _inputs()
    assert _model(randomise=False)(x, t, text, mask).abs().max() == 0  # adaLN-zero start
    out = _model()(x, t, text, mask)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0


def test_padded_text_tokens_are_ignored():
    m = _model()
    x, t, text, mask = _inputs(t=5)
    mask[:, 3:] = False
    a = m(x, t, text, mask)
    text2 = text.clone()
    text2[:, 3:] = torch.randn_like(text2[:, 3:]) * 10  # garbage where masked
    b = m(x, t, text2, mask)
    pad = torch.cat([text, torch.randn(2, 4, 384)], 1)
    c = m(x, t, pad, torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], 1))
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)


def test_text_and_time_change_the_output():
    m = _model()
    x, t, text, mask = _inputs()
    base = m(x, t, text, mask)
    assert not torch.allclose(base, m(x, t, text.flip(0), mask), atol=1e-4)
    assert not torch.allclose(base, m(x, 1 - t, text, mask), atol=1e-4)


def test_batch_items_are_independent():
    m = _model()
    x, t, text, mask = _inputs(b=3)
    full = m(x, t, text, mask)
    one = m(x[1:2], t[1:2], text[1:2], mask[1:2])
    assert torch.allclose(full[1:2], one, atol=1e-5)


def test_rope_is_a_rotation_and_position_dependent():
    cos, sin = rope_2d(4, 4, 16, 10_000.0, torch.device("cpu"))
    assert cos.shape == (16, 8)
    q = torch.randn(1, 1, 16, 16)
    r = apply_rope(q, cos, sin)
    assert torch.allclose(r.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    same = q[:, :, :1].expand(1, 1, 16, 16)
    rs = apply_rope(same, cos, sin)
    assert not torch.allclose(rs[0, 0, 1], rs[0, 0, 4])  # (0,1) vs (1,0) differ: rows ≠ columns


def test_config_validation_and_roundtrip():
    with pytest.raises(ValueError):
        TransformerConfig(hidden_size=30, num_heads=4)
    cfg = preset("base")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        preset("huge")


def test_base_preset_fits_the_weight_budget():
    from zaoxiang.model.autoencoder import Autoencoder

    cfg = preset("base")
    with torch.device("meta"):
        n = MMDiT(cfg.transformer).num_params() + sum(p.numel() for p in Autoencoder(cfg.autoencoder).parameters())
    assert n * 2 <= 40 * 10**6, f"{n * 2 / 1e6:.1f} MB bf16"


def test_input_word_rows_start_as_a_no_op_and_then_matter():
    """text_embed_dim: a widened transformer loaded from weights without it computes exactly what
    they did (zero-initialised projection); once that projection is trained, the word rows change
    the output."""
    from dataclasses import replace

    narrow = _model()
    wide_cfg = replace(preset("tiny").transformer, text_embed_dim=384)
    wide = MMDiT(wide_cfg).eval()
    missing, unexpected = wide.load_state_dict(narrow.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"txt_embed_in.0.weight", "txt_embed_in.1.weight"}
    x, t, text, mask = _inputs()
    words = torch.randn(text.shape, generator=torch.Generator().manual_seed(7))  # (B, T, 384)
    with torch.no_grad():
        ref = narrow(x, t, text, mask)
        torch.testing.assert_close(wide(x, t, torch.cat([text, words], -1), mask), ref)
        wide.txt_embed_in[1].weight.normal_(std=0.1)
        changed = wide(x, t, torch.cat([text, words], -1), mask)
        other = wide(x, t, torch.cat([text, words.roll(1, dims=1)], -1), mask)
    assert (changed - ref).abs().max() > 1e-3 and (changed - other).abs().max() > 1e-3
    with pytest.raises(ValueError, match="768"):
        wide(x, t, text, mask)  # hidden states alone are too narrow for it
    with pytest.raises(ValueError, match="text_embed_dim"):
        TransformerConfig(text_embed_dim=100)
    assert wide_cfg.text_features == "last+embed" and preset("tiny").transformer.text_features == "last"
    assert preset("base").transformer.text_input_dim == 768
