"""CPU cost of the built-in pipeline at 256², per phase, for a preset with random weights.

Cost does not depend on weight values, so this sizes the ``base`` preset before it is trained.
Rows: 4 steps at guidance 1 (the turbo target: ≤ 1.5 s total on the 2-core dev CPU) and
28 steps with CFG; fp32 and bf16 weights/activations.

    .venv/bin/python bench/builtin_cpu.py [--preset base] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from zaoxiang.engine.pipelines.base import PhaseTimer, RunContext
from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.pipeline import BuiltinPipeline
from zaoxiang.model.serialization import save_weights
from zaoxiang.model.text_encoder import E5TextEncoder
from zaoxiang.protocol import GenerationRequest


def run_once(pipe: BuiltinPipeline, steps: int, guidance: float) -> dict[str, float]:
    size = pipe.config.image_size
    req = GenerationRequest(prompt="一只红苹果 on a blue background", width=size, height=size, steps=steps,
                            guidance=guidance, seed=1, model="builtin")
    timer = PhaseTimer(torch.device("cpu"))
    ctx = RunContext(request=req, seeds=[1], step=lambda *a: None, precision=pipe.policy, timer=timer)
    start = time.perf_counter()
    pipe.generate(ctx)
    return {**timer.seconds, "total": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="base")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = preset(args.preset)
    torch.manual_seed(0)
    dit, ae = MMDiT(cfg.transformer), Autoencoder(cfg.autoencoder)
    n_dit = sum(p.numel() for p in dit.parameters())
    n_ae = sum(p.numel() for p in ae.parameters())
    n_dec = sum(p.numel() for p in ae.decoder.parameters())
    print(f"preset {cfg.name}: transformer {n_dit / 1e6:.2f}M, autoencoder {n_ae / 1e6:.2f}M "
          f"(decoder {n_dec / 1e6:.2f}M); bf16 total {(n_dit + n_ae) * 2 / 1e6:.1f} MB; "
          f"{cfg.image_size}² → {(cfg.autoencoder.latent_size // cfg.transformer.patch_size) ** 2} image tokens; "
          f"torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        save_weights(folder, cfg, dit.state_dict(), ae.state_dict(), dtype=torch.float32)
        print(f"\n| dtype | steps | guidance | text_encode s | denoise s | per step s | decode s | total s |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.dtypes.split(","):
            dtype = getattr(torch, name)
            policy = PrecisionPolicy(device=torch.device("cpu"), dtype=dtype)
            pipe = BuiltinPipeline.from_folder(folder, policy, text_encoder=E5TextEncoder.load(dtype=dtype))
            for steps, guidance in ((4, 1.0), (28, 4.0)):
                run_once(pipe, 1, guidance)  # warm-up
                runs = [run_once(pipe, steps, guidance) for _ in range(args.repeats)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(f"| {name} | {steps} | {guidance:g} | {med['text_encode']:.3f} | {med['denoise']:.3f} | "
                      f"{med['denoise'] / steps:.3f} | {med['decode']:.3f} | {med['total']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
