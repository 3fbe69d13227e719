"""CPU cost of the built-in pipeline at 256², per phase, for a preset with random weights.

Cost does not depend on weight values, so this sizes the ``base`` preset before it is trained.
Rows: 4 steps at guidance 1 (the turbo target: ≤ 1.5 s total on the 2-core dev CPU) and
28 steps with CFG; fp32 and bf16 weights/activations.

With ``--weights DIR`` it times trained weights through the engine's ``Runner`` instead (what
``zaoxiang generate`` runs, minus process start): the model's defaults, 4 steps at guidance 1,
and ``turbo`` (the LoRA beside the weights, applied per request) when ``turbo_lora.safetensors``
is there.

    .venv/bin/python bench/builtin_cpu.py [--preset base] [--repeats 3] [--threads N]
    .venv/bin/python bench/builtin_cpu.py --weights runs/s2/weights
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


def runner_rows(weights: str, repeats: int) -> None:
    """Trained weights through the Runner: defaults, 4 steps / guidance 1, and turbo if present."""
    from pathlib import Path

    from zaoxiang.engine.registry import ModelRegistry, builtin_entry
    from zaoxiang.engine.runner import Runner
    from zaoxiang.settings import EngineSettings

    folder = Path(weights).resolve()
    entry = builtin_entry(folder)
    if entry is None:
        raise SystemExit(f"--weights {folder}: no config.json + *.safetensors there")
    runner = Runner(ModelRegistry([entry]), EngineSettings(device="cpu"))
    rows = [("defaults", {}), ("4 steps, guidance 1", {"steps": 4, "guidance": 1.0})]
    if (folder / "turbo_lora.safetensors").exists():
        rows.append(("turbo (LoRA, 4 steps, guidance 1)", {"turbo": True}))
    print(f"weights {folder}; torch threads {torch.get_num_threads()}; median of {repeats} after a warm-up")
    print("\n| setting | steps | guidance | total s | phases s |")
    print("|---|---|---|---|---|")
    for name, extra in rows:
        def once():
            req = GenerationRequest(prompt="一只红苹果 on a blue background", seed=1, model=entry.name, **extra)
            start = time.perf_counter()
            result = runner.run(req)
            return time.perf_counter() - start, result

        once()  # warm-up: load, LoRA file read
        runs = [once() for _ in range(repeats)]
        total = statistics.median(t for t, _ in runs)
        res = runs[0][1]
        phases = ", ".join(f"{k} {v:.3f}" for k, v in res.timings.as_dict().items() if isinstance(v, (int, float)))
        print(f"| {name} | {res.request.steps} | {res.request.guidance:g} | {total:.3f} | {phases} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="base")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--weights", default=None, help="trained weights folder: time it through the Runner")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.weights:
        runner_rows(args.weights, args.repeats)
        return
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
