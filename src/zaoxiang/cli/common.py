"""Flags and builders shared by the subcommands that run models."""

from __future__ import annotations

import argparse
from pathlib import Path

from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.settings import Settings


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", type=Path, help="a folder holding one diffusers model folder per subfolder")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument(
        "--memory-mode",
        choices=["auto", "none", "vae_tiling", "model_offload", "sequential_offload"],
        help="how to fit big models on small GPUs (default: auto)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = Settings.load(models_dir=getattr(args, "models_dir", None))
    engine = settings.engine.model_copy(
        update={k: v for k, v in {"device": args.device, "memory_mode": args.memory_mode}.items() if v is not None}
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
