"""Cost of the safety layer on CPU, and watermark robustness on built-in-model-like images.

    .venv/bin/python bench/safety.py [--repeats N]

Prints: prompt filter µs/prompt over the test corpus; open_nsfw ms/image at 256² and 1024²
(batch 1 and 4, 1 and 2 ONNX threads); watermark embed/read ms; watermark bit accuracy after
PNG and JPEG at several qualities on flat emoji-on-colour images.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zaoxiang.safety.image_check import ImageChecker
from zaoxiang.safety.prompt_filter import PromptFilter
from zaoxiang.safety.settings import ImageCheckSettings, PromptFilterSettings
from zaoxiang.safety.watermark import decode_bits, embed_watermark, make_payload, read_watermark

ROOT = Path(__file__).resolve().parents[1]
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"


def emoji_image(char: str, background: tuple[int, int, int], size: int) -> Image.Image:
    font = ImageFont.truetype(EMOJI_FONT, 109)
    glyph = Image.new("RGB", (136, 128), background)
    ImageDraw.Draw(glyph).text((0, 0), char, font=font, embedded_color=True)
    glyph = glyph.resize((size * 3 // 5, size * 3 // 5))
    canvas = Image.new("RGB", (size, size), background)
    canvas.paste(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
    return canvas


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def png(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []

    prompts = [json.loads(l)["prompt"] for l in (ROOT / "tests/data/safety_corpus.jsonl").read_text("utf-8").splitlines()]
    f = PromptFilter.from_settings(PromptFilterSettings())
    per_pass = timed(lambda: [f.check(p) for p in prompts], args.repeats * 4)
    rows.append((f"prompt filter ({len(prompts)} corpus prompts)", f"{per_pass / len(prompts) * 1e6:.1f} µs/prompt"))
    long_prompt = "a red apple on a white background, studio light, 一只红苹果，白色背景 " * 10
    rows.append((f"prompt filter ({len(long_prompt)}-char prompt)", f"{timed(lambda: f.check(long_prompt), args.repeats * 20) * 1e6:.1f} µs/prompt"))

    for threads in (1, 2):
        checker = ImageChecker(ImageCheckSettings(threads=threads))
        t = time.perf_counter()
        checker.scores([emoji_image("🍎", (255, 255, 255), 256)])
        if threads == 1:
            rows.append(("open_nsfw first call (load + 1 image)", f"{(time.perf_counter() - t) * 1e3:.0f} ms"))
        for size in (256, 1024):
            images = [emoji_image(c, (30, 90, 200), size) for c in "🍎🐱🚀⛄"]
            one = timed(lambda: checker.scores(images[:1]), args.repeats)
            four = timed(lambda: checker.scores(images), args.repeats)
            rows.append((f"open_nsfw {size}² threads={threads} batch 1", f"{one * 1e3:.1f} ms/image"))
            rows.append((f"open_nsfw {size}² threads={threads} batch 4", f"{four / 4 * 1e3:.1f} ms/image"))

    payload = make_payload(b"\x01\x02\x03\x04")
    for size in (256, 1024):
        image = emoji_image("🍎", (255, 255, 255), size)
        marked = embed_watermark(image, payload)
        rows.append((f"watermark embed {size}²", f"{timed(lambda: embed_watermark(image, payload), args.repeats) * 1e3:.1f} ms"))
        rows.append((f"watermark read {size}²", f"{timed(lambda: read_watermark(marked), args.repeats) * 1e3:.1f} ms"))

    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")

    # Robustness on the hard case: flat backgrounds, including clipped white/black/saturated.
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    backgrounds = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (30, 90, 200), (240, 200, 40), (255, 0, 0), (250, 240, 230)]
    chars = "🍎🐱🚀⛄🍕"
    attacks = {"png": png, "jpeg q95": lambda im: jpeg(im, 95), "jpeg q90": lambda im: jpeg(im, 90),
               "jpeg q80": lambda im: jpeg(im, 80), "jpeg q70": lambda im: jpeg(im, 70)}
    print()
    print("watermark on flat emoji images (96-bit payload, scale 36); 1024² uses one emoji per background")
    print(f"{'size':<6}{'attack':<10}{'mean bit acc':>14}{'min bit acc':>13}{'payload ok':>12}{'PSNR dB':>9}")
    for size in (256, 1024):
        marked_set = []
        for bg in backgrounds:
            # 1024² embeds cost ~1.7 s each on this CPU; one emoji per background keeps the run short.
            for c in chars if size == 256 else chars[:1]:
                original = emoji_image(c, bg, size)
                marked = embed_watermark(original, payload)
                mse = np.mean((np.asarray(marked, float) - np.asarray(original, float)) ** 2)
                marked_set.append((marked, 10 * np.log10(255**2 / mse)))
        mean_psnr = float(np.mean([p for _, p in marked_set]))
        for name, attack in attacks.items():
            accs, ok = [], 0
            for marked, _ in marked_set:
                attacked = attack(marked)
                accs.append(float((decode_bits(attacked) == bits).mean()))
                ok += read_watermark(attacked) == payload
            print(f"{size:<6}{name:<10}{np.mean(accs):>14.4f}{min(accs):>13.4f}{ok:>8}/{len(marked_set):<3}{mean_psnr:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
