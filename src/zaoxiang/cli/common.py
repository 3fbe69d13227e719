"""Flags and builders shared by the subcommands that run models."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from zaoxiang.engine.metadata import encode_image
from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.protocol import GenerationRequest, GenerationResult, ProgressEvent
from zaoxiang.settings import Settings

SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", type=Path, help="a folder holding one diffusers model folder per subfolder")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument(
        "--memory-mode",
        choices=["auto", "none", "vae_tiling", "model_offload", "sequential_offload"],
        help="how to fit big models on small GPUs (default: auto)",
    )
    p.add_argument(
        "--speed",
        choices=["stock", "lossless", "lossy"],
        help="speed profile for diffusers models: lossless = same output faster, lossy = faster, "
        "other pixels (default: stock; see docs/performance.md)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = Settings.load(models_dir=getattr(args, "models_dir", None))
    engine = settings.engine.model_copy(
        update={k: v for k, v in {"device": args.device, "memory_mode": args.memory_mode, "speed": getattr(args, "speed", None)}.items() if v is not None}
    )
    return settings.model_copy(update={"engine": engine})


def registry_for(settings: Settings, model_arg: str | None = None) -> tuple[ModelRegistry, str | None]:
    """The registry, plus the model name to use. A ``--model`` that is a folder is registered ad hoc."""
    extra = list(settings.models)
    name = model_arg
    if model_arg is not None and (Path(model_arg).expanduser().is_dir() or "/" in model_arg):
        extra.append(model_arg)
        name = Path(model_arg).expanduser().resolve().name
    registry = ModelRegistry.discover(
        extra, settings.models_dir, default=settings.default_model, include_builtin=settings.builtin
    )
    return registry, name


def output_paths(output: str, n: int, seeds: list[int], fmt: str) -> list[Path]:
    """-o DIR (existing, or ending in /) gets one file per seed; -o FILE gets FILE, FILE-2, ..."""
    out = Path(output)
    suffix = SUFFIX[fmt]
    if out.is_dir() or output.endswith(("/", "\\")):
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return [out / f"zaoxiang-{stamp}-{s}{suffix}" for s in seeds]
    out.parent.mkdir(parents=True, exist_ok=True)
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i + 1}{out.suffix or suffix}") for i in range(n)]


def run_with_bar(runner: Runner, request: GenerationRequest, desc: str, quiet: bool, **run_kwargs: Any) -> GenerationResult:
    """Run one request with a terminal progress bar (none when ``quiet``)."""
    bar: tqdm | None = None

    def on_progress(ev: ProgressEvent) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=ev.total, unit="step", desc=desc, file=sys.stderr)
        bar.update(ev.step - bar.n)

    try:
        return runner.run(request, on_progress=on_progress, **run_kwargs)
    finally:
        if bar is not None:
            bar.close()


def write_outputs(result: GenerationResult, settings: Settings, output: str, fmt: str, watermark: bool) -> list[Path]:
    """Watermark (unless told not to), embed metadata and write one file per image; print each path."""
    images = result.images
    if watermark:
        from zaoxiang.safety.gate import SafetyGate  # imported here: only the watermark part is used

        images = SafetyGate(settings.safety.resolved(settings.data_dir)).watermark(images, job_id=str(result.seeds[0]))
    paths = output_paths(output, len(images), result.seeds, fmt)
    for i, (image, path) in enumerate(zip(images, paths)):
        path.write_bytes(encode_image(image, result, i, fmt))
        print(path)
    return paths
