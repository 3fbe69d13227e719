"""The built-in model's example prompts, English and Chinese, base and turbo, on one labelled sheet.

    .venv/bin/python scripts/example_sheet.py --out docs/images/builtin-examples.png
    .venv/bin/python scripts/example_sheet.py --weights runs/s5/weights --seed 1 --out /tmp/sheet.png

Every image goes through the engine's ``Runner`` exactly as ``zaoxiang generate`` would make it
(defaults, seeds, decode guard): row pairs are the model's defaults (28 steps, CFG 4) and
``--turbo`` (4 steps, guidance 1), columns the prompts. The README's example prompts are checked
against this sheet by eye; keep the two lists in step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.protocol import parse_request
from zaoxiang.settings import Settings
from zaoxiang.training.eval.harness import caption_font, wrap_text

# (English, Chinese) pairs: the README's example prompts.
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("a red apple", "一只红苹果"),
    ("a cat face, light blue background", "一张猫脸，浅蓝色背景"),
    ("a banana, white background", "一根香蕉，白色背景"),
    ("a dog, green background", "一只狗，绿色背景"),
    ("two strawberries, white background", "两颗草莓，白色背景"),
    ("a rocket on the left and a house on the right, blue background", "左边一枚火箭，右边一座房子，蓝色背景"),
    ('a neon sign that says "OPEN"', '霓虹灯牌写着"营业"'),
)
TILE = 160
LABEL_H = 40


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=None, help="a built-in weights folder (default: the packaged one)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    settings = Settings()
    registry = ModelRegistry.discover(include_builtin=True, builtin_dir=args.weights)
    runner = Runner(registry, settings.engine, settings.limits.to_limits())
    prompts = [text for pair in EXAMPLES for text in pair]
    rows: list[tuple[str, list[Image.Image]]] = []
    for label, turbo in (("28 steps, CFG 4", False), ("turbo, 4 steps", True)):
        images = []
        t0 = time.perf_counter()
        for prompt in prompts:
            request = parse_request({"prompt": prompt, "seed": args.seed, "turbo": turbo},
                                    settings.limits.to_limits())
            images.append(runner.run(request).images[0])
        print(f"{label}: {len(images)} images, {(time.perf_counter() - t0) / len(images):.2f} s each", file=sys.stderr)
        rows.append((label, images))

    font = caption_font(12)
    cols = len(prompts)
    head = 3 * 15 + 8
    sheet = Image.new("RGB", (cols * TILE, head + len(rows) * (TILE + LABEL_H)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, prompt in enumerate(prompts):
        for j, line in enumerate(wrap_text(draw, prompt, font, TILE - 8)[:3]):
            draw.text((c * TILE + 4, 4 + j * 15), line, font=font, fill=(20, 20, 20))
    for r, (label, images) in enumerate(rows):
        y = head + r * (TILE + LABEL_H)
        for c, img in enumerate(images):
            sheet.paste(img.convert("RGB").resize((TILE - 8, TILE - 8), Image.Resampling.LANCZOS), (c * TILE + 4, y))
        draw.text((4, y + TILE - 4), f"{label}, seed {args.seed}", font=font, fill=(0, 90, 160))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
