"""The ``zaoxiang`` command. Each subcommand lives in its own module with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from zaoxiang import __version__
from zaoxiang.errors import ZaoxiangError

# Subcommand modules under zaoxiang.cli, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "generate",
    "edit",
    "models",
    "verify",
    "data",
    "serve",
    "worker",
    "keys",
    "train",
    "eval",
    "tiny",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zaoxiang", description="造相 — text-to-image engine and service")
    parser.add_argument("--version", action="version", version=f"zaoxiang {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (DEBUG with -vv)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"zaoxiang.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ZaoxiangError as exc:
        print(f"zaoxiang: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zaoxiang: interrupted", file=sys.stderr)
        return 130
