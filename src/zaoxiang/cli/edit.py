"""``zaoxiang edit MODE IMAGE PROMPT``: img2img, inpaint or outpaint one image through the engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zaoxiang.cli.common import SUFFIX, add_model_flags, registry_for, run_with_bar, settings_from_args, write_outputs
from zaoxiang.engine.edit_inputs import EditUpload, MemoryInputs, edit_request
from zaoxiang.engine.runner import Runner
from zaoxiang.errors import InvalidRequest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edit", help="img2img, inpaint or outpaint an image with a prompt")
    p.add_argument("mode", choices=["img2img", "inpaint", "outpaint"])
    p.add_argument("image", type=Path, help="input image (PNG, JPEG or WebP; sides multiples of 16)")
    p.add_argument("prompt")
    p.add_argument("--mask", type=Path, help="inpaint mask, same size as the image: white = repaint")
    p.add_argument("--strength", type=float, help="0 keeps the input, 1 redraws (default: img2img 0.75, else 1)")
    p.add_argument("--extend", metavar="L,R,T,B", help="outpaint: pixels to add left,right,top,bottom (multiples of 16)")
    p.add_argument("--mask-blur", type=int, help="feather radius of the seam in pixels (default 8)")
    p.add_argument("--model", metavar="NAME|PATH", help="a registered model name or a diffusers folder")
    p.add_argument("--negative", default="", metavar="TEXT", help="negative prompt")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("-n", type=int, default=1, help="number of images (seeds seed, seed+1, ...)")
    p.add_argument("--upscale", type=int, choices=[2, 4], help="Real-ESRGAN upscale of the result")
    p.add_argument("--format", choices=sorted(SUFFIX), default="png")
    p.add_argument("-o", "--output", default=".", metavar="FILE|DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-watermark",
        action="store_true",
        help="skip the invisible provenance watermark (on by default, as for generate; it changes pixels invisibly)",
    )
    add_model_flags(p)
    p.set_defaults(func=run)


def parse_extend(text: str | None) -> dict[str, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise InvalidRequest(f"--extend must look like L,R,T,B, e.g. 0,128,0,0 (got {text!r})", field="outpaint")
    return dict(zip(("left", "right", "top", "bottom"), (int(p) for p in parts)))


def _read(path: Path | None, field: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {field} {path}: {exc.strerror}", field=field) from None


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    limits = settings.limits.to_limits()
    registry, model_name = registry_for(settings, args.model)
    inputs = MemoryInputs()
    upload = EditUpload(
        mode=args.mode,
        image=_read(args.image, "image") or b"",
        mask=_read(args.mask, "mask"),
        strength=args.strength,
        outpaint=parse_extend(args.extend),
        mask_blur=args.mask_blur,
    )
    fields = {
        "prompt": args.prompt,
        "negative_prompt": args.negative,
        "steps": args.steps,
        "guidance": args.guidance,
        "seed": args.seed,
        "n": args.n,
        "model": model_name,
        "upscale": args.upscale,
        "output_format": args.format,
    }
    request = edit_request({k: v for k, v in fields.items() if v is not None}, upload, limits, inputs.put)
    registry.get(request.model)
    runner = Runner(registry, settings.engine, limits)
    result = run_with_bar(runner, request, args.mode, args.quiet, inputs=inputs.get)
    write_outputs(result, settings, args.output, args.format, watermark=not args.no_watermark)
    if not args.quiet:
        r = result.request
        print(
            f"{result.model.name} · {args.mode} · {result.images[0].width}x{result.images[0].height} · "
            f"strength {r.edit.effective_strength if r.edit else 1.0} · seed {result.seeds[0]} · "
            f"total {result.timings.total_s:.2f}s",
            file=sys.stderr,
        )
    return 0
