"""``zaoxiang generate PROMPT``: one request through the engine, with a progress bar, to image files."""

from __future__ import annotations

import argparse
import sys

from zaoxiang.cli.common import (
    SUFFIX,
    add_model_flags,
    registry_for,
    run_with_bar,
    settings_from_args,
    write_outputs,
)
from zaoxiang.engine.lora import LoraLibrary
from zaoxiang.engine.runner import Runner
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import parse_request


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="make images from a prompt (中文 or English)")
    p.add_argument("prompt")
    p.add_argument("--model", metavar="NAME|PATH", help="a registered model name or a diffusers folder")
    p.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    p.add_argument("--size", metavar="WxH", help="e.g. 1024x1024 (default: the model's)")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float, help="prompt strength; its meaning per family is in docs/architecture.md")
    p.add_argument("--seed", type=int)
    p.add_argument("-n", type=int, default=1, help="number of images (seeds seed, seed+1, ...)")
    p.add_argument("--format", choices=sorted(SUFFIX), default="png")
    p.add_argument("--upscale", type=int, choices=[2, 4], help="Real-ESRGAN upscale of every image (x2 or x4)")
    p.add_argument(
        "--lora", action="append", default=[], metavar="FILE[:SCALE]",
        help="apply a LoRA file (safetensors, diffusers or kohya format) at SCALE (default 1); repeat to stack",
    )
    p.add_argument("--turbo", action="store_true", help="the model's turbo LoRA with its own steps and guidance")
    p.add_argument("-o", "--output", default=".", metavar="FILE|DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-watermark",
        action="store_true",
        help="skip the invisible provenance watermark (on by default; `zaoxiang verify` reads it)",
    )
    add_model_flags(p)
    p.set_defaults(func=run)


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise InvalidRequest(f"--size must look like 1024x768 (got {text!r})", field="size")
    return int(w), int(h)


def parse_lora_arg(text: str, library: LoraLibrary) -> dict[str, object]:
    """``FILE`` or ``FILE:SCALE`` -> a request's LoRA entry, the file registered ad hoc under its stem."""
    path, sep, scale_text = text.rpartition(":")
    scale = 1.0
    if sep and path:
        try:
            scale = float(scale_text)
        except ValueError:
            path = text  # a ':' that is part of the file name
    else:
        path = text
    return {"name": library.register(path), "scale": scale}


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    registry, model_name = registry_for(settings, args.model)
    width, height = parse_size(args.size)
    library = LoraLibrary(settings.lora_dir)
    loras = [parse_lora_arg(arg, library) for arg in getattr(args, "lora", [])]
    request = parse_request(
        {
            k: v
            for k, v in {
                "prompt": args.prompt,
                "negative_prompt": args.negative,
                "width": width,
                "height": height,
                "steps": args.steps,
                "guidance": args.guidance,
                "seed": args.seed,
                "n": args.n,
                "model": model_name,
                "output_format": args.format,
                "upscale": getattr(args, "upscale", None),
                "loras": loras or None,
                "turbo": getattr(args, "turbo", False) or None,
            }.items()
            if v is not None
        },
        settings.limits.to_limits(),
    )
    registry.get(request.model)  # fail fast (no model installed / unknown name) before any loading
    runner = Runner(registry, settings.engine, settings.limits.to_limits(), loras=library)

    if not args.quiet:
        print(f"loading {request.model or registry.default} ...", file=sys.stderr)
    result = run_with_bar(runner, request, "denoise", args.quiet)
    write_outputs(result, settings, args.output, args.format, watermark=not args.no_watermark)
    t = result.timings
    if not args.quiet:
        print(
            f"{result.model.name} · {result.request.width}x{result.request.height} · {result.request.steps} steps · "
            f"seed {result.seeds[0]} · load {t.load_s:.2f}s, text {t.text_encode_s:.2f}s, "
            f"denoise {t.denoise_s:.2f}s, decode {t.decode_s:.2f}s, total {t.total_s:.2f}s",
            file=sys.stderr,
        )
    return 0
