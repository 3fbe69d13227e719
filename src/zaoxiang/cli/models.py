"""``zaoxiang models``: list what the registry finds."""

from __future__ import annotations

import argparse

from zaoxiang.cli.common import add_model_flags, registry_for, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models zaoxiang can run")
    add_model_flags(p)
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH", help="also register this folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    settings = settings.model_copy(update={"models": list(settings.models) + list(args.model)})
    registry, _ = registry_for(settings)
    entries = registry.list()
    if not entries:
        print("no models found. The built-in model is not installed in this build;")
        print("register a diffusers folder with --model PATH or --models-dir DIR (or ZAOXIANG_MODELS).")
    for e in entries:
        mark = "*" if e.name == registry.default else " "
        print(f"{mark} {e.name:<24} {e.family:<11} {e.pipeline_class:<26} {e.path}")
    for s in registry.skipped:
        print(f"  (skipped {s.path}: {s.reason})")
    return 0
