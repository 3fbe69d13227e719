"""``zaoxiang verify IMAGE...``: is the zaoxiang watermark there, and what does the PNG say?

Exit status 0 when every image carries the watermark, 1 when any does not (or cannot be read).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from zaoxiang.safety.watermark import MAGIC, MIN_PIXELS, read_watermark


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check images for the zaoxiang watermark and show their metadata")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    p.set_defaults(func=run)


def _inspect(path: Path) -> dict:
    result: dict = {"path": str(path), "watermark": False, "payload": None, "id": None, "metadata": {}}
    try:
        with Image.open(path) as image:
            image.load()
            # PNG tEXt/iTXt chunks land in .text; other formats have none we write.
            result["metadata"] = dict(getattr(image, "text", {}) or {})
            result["size"] = [image.width, image.height]
            if image.width * image.height < MIN_PIXELS:
                result["note"] = "image smaller than 256x256: zaoxiang does not watermark these"
            payload = read_watermark(image)
    except (OSError, UnidentifiedImageError) as exc:
        result["error"] = f"cannot read image: {exc}"
        return result
    if payload is not None:
        result.update(watermark=True, payload=payload.hex(), id=payload[len(MAGIC) :].hex())
    return result


def run(args: argparse.Namespace) -> int:
    found_all = True
    for path in args.images:
        r = _inspect(path)
        found_all &= r["watermark"]
        if args.json:
            print(json.dumps(r, ensure_ascii=False))
            continue
        if "error" in r:
            print(f"{path}: {r['error']}")
            continue
        status = f"watermark present (zaoxiang, id {r['id']})" if r["watermark"] else "no zaoxiang watermark"
        print(f"{path}: {status}")
        if "note" in r:
            print(f"  note: {r['note']}")
        for key, value in r["metadata"].items():
            print(f"  {key}: {value}")
    return 0 if found_all else 1
