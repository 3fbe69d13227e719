"""Evaluation generation speed: images/s of ``zaoxiang eval`` at --batch-size 1 (the Runner, one
request per item) vs larger batches (``BatchedRunnerSource``), for a built-in preset with random
weights (cost does not depend on weight values) and the real e5 text encoder.

Each image has its own prompt (held-out-style captions, en and zh alternating) and seed, as in an
evaluation; generation goes through the harness's own ``unit_images`` call, chunked as
``generate_all`` chunks it with one seed. Scoring is not timed.

    .venv/bin/python bench/eval_speed.py --preset base --count 16 --batch-sizes 1,16 [--steps 28 --guidance 4]
    .venv/bin/python bench/eval_speed.py --device cuda --count 128 --batch-sizes 1,16,32
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch

from zaoxiang.engine.registry import ModelRegistry, builtin_entry
from zaoxiang.engine.runner import Runner
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.serialization import save_weights
from zaoxiang.settings import EngineSettings
from zaoxiang.training.eval.harness import BatchedRunnerSource, RunnerSource, unit_images

_EN = ("a red apple", "two blue cars", "a cat on the left of a dog", "three yellow stars", "a sign that says 你好")
_ZH = ("一只红苹果", "两辆蓝色的车", "狗左边的一只猫", "三颗黄色的星星", "写着“你好”的牌子")
_BG = ("on a white background", "on a green background", "at night", "in the snow")


def prompts(count: int) -> list[str]:
    """``count`` distinct captions, en and zh alternating."""
    out = []
    for i, (en, zh, bg) in enumerate(itertools.cycle(itertools.product(_EN, _ZH, _BG))):
        if len(out) == count:
            return out
        out.append(f"{en} {bg} #{i}" if i % 2 == 0 else f"{zh}，{bg} #{i}")
    return out


def make_runner(preset_name: str, folder: Path, device: str) -> Runner:
    cfg = preset(preset_name)
    torch.manual_seed(0)
    save_weights(folder, cfg, MMDiT(cfg.transformer).state_dict(), Autoencoder(cfg.autoencoder).state_dict())
    return Runner(ModelRegistry([builtin_entry(folder)]), EngineSettings(device=device))


def time_batch_size(runner: Runner, batch: int, texts: list[str], steps: int, guidance: float) -> float:
    """Seconds to generate every text once (seed = its index), after a warm-up of one chunk."""
    if batch == 1:
        source = RunnerSource(runner, None, steps, guidance)
    else:
        source = BatchedRunnerSource(runner, None, steps, guidance, batch_size=batch)
    units = [(None, "en", t) for t in texts]
    chunks = [units[i : i + batch] for i in range(0, len(units), batch)]
    unit_images(source, chunks[0], [0])  # warm-up: model load, allocator, kernels for this shape
    if runner.policy.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i, chunk in enumerate(chunks):
        unit_images(source, chunk, [1000 + i])
    if runner.policy.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="base", help="tiny | base (default base)")
    ap.add_argument("--device", default="auto", help="cpu | cuda | auto (default auto)")
    ap.add_argument("--count", type=int, default=16, help="images per batch size (default 16)")
    ap.add_argument("--batch-sizes", default="1,16", help="comma list (default 1,16)")
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--guidance", type=float, default=None, help="default: the preset's")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(v) for v in args.batch_sizes.split(",")]
    cfg = preset(args.preset)
    steps = args.steps or cfg.sampler.steps
    guidance = cfg.sampler.guidance if args.guidance is None else args.guidance
    texts = prompts(args.count)
    with tempfile.TemporaryDirectory() as tmp:
        runner = make_runner(args.preset, Path(tmp), args.device)
        print(f"preset {args.preset} ({cfg.image_size}²), {steps} steps, guidance {guidance:g}, device "
              f"{runner.policy.device} {runner.policy.dtype_name}, torch threads {torch.get_num_threads()}, "
              f"{args.count} images per row, each its own prompt and seed; after a one-chunk warm-up")
        print("\n| batch size | seconds | images/s | speed-up |")
        print("|---|---|---|---|")
        base = None
        for b in sizes:
            seconds = time_batch_size(runner, b, texts, steps, guidance)
            rate = args.count / seconds
            base = base or rate
            print(f"| {b} | {seconds:.2f} | {rate:.3f} | {rate / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
