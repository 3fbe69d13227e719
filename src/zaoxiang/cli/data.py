"""``zaoxiang data``: build the sprite pack, preview samples, regenerate the common vocabulary."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

DEFAULT_PACK = "assets/sprite_pack.zip"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="dataset builder of the built-in model (sprite pack, previews)")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("pack", help="render every sprite and sign into one pack file")
    p.add_argument("--assets", default=None, help="assets folder from scripts/setup_assets.sh (default: $ZAOXIANG_ASSETS or <repo>/assets)")
    p.add_argument("--out", default=DEFAULT_PACK, help=f"pack file to write (default: {DEFAULT_PACK})")
    p.set_defaults(func=run_pack)

    p = sub.add_parser("preview", help="write a contact sheet PNG of random samples with their captions")
    p.add_argument("--pack", default=DEFAULT_PACK)
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("-n", type=int, default=16, help="number of samples (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("train", "heldout", "eval"), default="train",
                   help="train/heldout: sampler split; eval: the fixed held-out evaluation set")
    p.add_argument("--size", type=int, default=256)
    p.set_defaults(func=run_preview)

    p = sub.add_parser("vocab", help="print COMMON_VOCAB recomputed from the assets (to refresh vocab.py)")
    p.add_argument("--assets", default=None)
    p.set_defaults(func=run_vocab)


def run_pack(args: argparse.Namespace) -> int:
    from zaoxiang.training.data import build_pack

    print(json.dumps(build_pack(args.assets, args.out), ensure_ascii=False))
    return 0


def run_vocab(args: argparse.Namespace) -> int:
    from zaoxiang.training.data.assets import find_assets
    from zaoxiang.training.data.concepts import emoji_versions, load_catalogue, select_common_vocab
    from zaoxiang.training.data.sprites import STYLE_RENDERERS

    paths = find_assets(args.assets)
    concepts = load_catalogue(paths)
    drawable = {c.id for c in concepts if all(r(c, paths) is not None for r in STYLE_RENDERERS.values())}
    by_id = {c.id: c for c in concepts}
    for cid in select_common_vocab(concepts, emoji_versions(paths.emoji_groups), drawable):
        print(f'    "{cid}",  # {by_id[cid].name_en} / {by_id[cid].name_zh}')
    return 0


def run_preview(args: argparse.Namespace) -> int:
    import random

    from PIL import Image, ImageDraw, ImageFont

    from zaoxiang.errors import InvalidRequest
    from zaoxiang.training.data import SceneSampler, SpritePack, caption, heldout_eval_set, render_batch
    from zaoxiang.training.data.assets import NOTO_CJK_FONT

    if not 1 <= args.n <= 256:
        raise InvalidRequest(f"-n must be between 1 and 256, got {args.n}", field="n")
    pack = SpritePack.load(args.pack)
    if args.split == "eval":
        items = heldout_eval_set(pack, args.n)
        specs = [it.spec for it in items]
        texts = [(f"[{it.category}] {it.caption_en}", it.caption_zh) for it in items]
    else:
        specs = SceneSampler(pack, split=args.split, seed=args.seed).sample_batch(args.n)
        rng = random.Random(args.seed)
        texts = [(caption(s, "en", rng, pack), caption(s, "zh", rng, pack)) for s in specs]
    images = render_batch(specs, pack, args.size)  # (B, 3, S, S) in [-1, 1]
    arr = ((images + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()  # (B, S, S, 3)

    cols = min(4, len(specs))
    rows = (len(specs) + cols - 1) // cols
    s, text_h = args.size, 78
    sheet = Image.new("RGB", (cols * (s + 8), rows * (s + text_h + 8)), (255, 255, 255))
    font = ImageFont.truetype(str(NOTO_CJK_FONT), 12) if NOTO_CJK_FONT.exists() else ImageFont.load_default()
    draw = ImageDraw.Draw(sheet)
    for i, (img, (en, zh)) in enumerate(zip(arr, texts)):
        x, y = (i % cols) * (s + 8) + 4, (i // cols) * (s + text_h + 8) + 4
        sheet.paste(Image.fromarray(img), (x, y))
        lines = textwrap.wrap(en, 40)[:3] + textwrap.wrap(zh, 20)[:2]
        draw.multiline_text((x, y + s + 2), "\n".join(lines), font=font, fill=(0, 0, 0), spacing=1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(args.out)
    return 0
