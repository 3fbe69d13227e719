"""``zaoxiang eval``: score a model on the held-out prompts, in English and Chinese.

    zaoxiang eval                                  # the default (built-in) model
    zaoxiang eval --weights runs/dit/export --n-per-category 20 --out runs/eval
    zaoxiang eval --ground-truth                   # the data builder's own renders: scorer sanity
    zaoxiang eval --weights DIR --batch-size 32    # built-in model: 32 images per batched denoise
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zaoxiang.cli.common import add_model_flags, registry_for, settings_from_args
from zaoxiang.errors import InvalidRequest

DEFAULT_PACK = "assets/sprite_pack.zip"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="score a model on held-out prompts (identity, position, count, "
                                           "background, sign text; en and zh)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--model", help="model name or folder (default: the default model)")
    who.add_argument("--weights", type=Path, help="a built-in weights folder (config.json + safetensors)")
    who.add_argument("--ground-truth", action="store_true",
                     help="score the data builder's own renders instead of a model (should be ~1.0 everywhere)")
    p.add_argument("--gt-size", type=int, default=256, help="with --ground-truth: render size (default 256)")
    p.add_argument("--pack", default=DEFAULT_PACK, help=f"sprite pack (default: {DEFAULT_PACK})")
    p.add_argument("--n-per-category", type=int, default=10, help="held-out items per category (default 10)")
    p.add_argument("--categories", default=None, help="comma list (default: all)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    p.add_argument("--turbo", action="store_true", help="use the model's turbo adapter")
    p.add_argument("--langs", default="en,zh", help="comma list of en, zh (default en,zh)")
    p.add_argument("--seeds", default="0", help="comma list of seeds; each item is drawn once per seed (default 0)")
    p.add_argument("--classifier", type=Path, default=None, help="classifier weights (default: the shipped ones)")
    p.add_argument("--out", type=Path, default=None, help="write report.json, table.md and contact_sheet.png here")
    p.add_argument("--merge-into", type=Path, default=None,
                   help="add this run's categories to the report in this --out folder (e.g. sign, scored here "
                        "from --from-images, into a GPU machine's report without it); rewrites its report.json "
                        "and table.md")
    p.add_argument("--replace", action="store_true",
                   help="with --merge-into: this run's categories replace the report's own scores of them "
                        "(e.g. re-scored after a scorer change) instead of being refused")
    p.add_argument("--save-images", type=Path, default=None, help="also write every generated image here")
    p.add_argument("--generate-only", action="store_true",
                   help="with --save-images: generate and save, do not score (e.g. on a GPU machine without Tesseract)")
    p.add_argument("--from-images", type=Path, default=None,
                   help="score images saved by --save-images (same items, langs, seeds) instead of generating")
    p.add_argument("--batch-size", type=int, default=1,
                   help="built-in model only: images (different items, each its own seed) per batched denoise; "
                        "same images as 1 (the Runner, one request at a time) within float rounding (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_model_flags(p)
    p.set_defaults(func=run)


def _int_list(text: str, field: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidRequest(f"--{field} must be a comma list of integers, got {text!r}", field=field) from None
    if not values or any(v < 0 for v in values):
        raise InvalidRequest(f"--{field} needs at least one non-negative integer, got {text!r}", field=field)
    return values


def select_items(items, n_per_category: int, categories: list[str] | None):
    """The first ``n_per_category`` items of each category, in the eval set's order."""
    taken: dict[str, int] = {}
    out = []
    for item in items:
        if categories is not None and item.category not in categories:
            continue
        if taken.get(item.category, 0) < n_per_category:
            taken[item.category] = taken.get(item.category, 0) + 1
            out.append(item)
    return out


def run(args: argparse.Namespace) -> int:
    from zaoxiang.training.data import EVAL_CATEGORIES, SpritePack, heldout_eval_set
    from zaoxiang.training.eval.classifier import ObjectClassifier
    from zaoxiang.training.eval.harness import (
        LANGS, MAX_BATCH_SIZE, BatchedRunnerSource, FolderSource, GroundTruthSource, RunnerSource, SavingSource,
        evaluate, generate_all,
    )
    from zaoxiang.training.eval.scoring import Scorer

    if not 1 <= args.n_per_category <= 1000:
        raise InvalidRequest(f"--n-per-category must be between 1 and 1000, got {args.n_per_category}",
                             field="n_per_category")
    langs = [v.strip() for v in args.langs.split(",") if v.strip()]
    if not langs or any(v not in LANGS for v in langs):
        raise InvalidRequest(f"--langs must be a comma list of {', '.join(LANGS)}, got {args.langs!r}", field="langs")
    categories = None
    if args.categories:
        categories = [c.strip() for c in args.categories.split(",") if c.strip()]
        bad = [c for c in categories if c not in EVAL_CATEGORIES]
        if bad:
            raise InvalidRequest(f"--categories: unknown {bad[0]!r}; known: {', '.join(EVAL_CATEGORIES)}",
                                 field="categories")
    seeds = _int_list(args.seeds, "seeds")
    if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
        raise InvalidRequest(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, got {args.batch_size}",
                             field="batch_size")
    if args.batch_size > 1 and (args.ground_truth or args.from_images is not None):
        raise InvalidRequest("--batch-size > 1 batches the built-in model's generation; it takes no --ground-truth "
                             "or --from-images", field="batch_size")
    if args.generate_only and args.save_images is None:
        raise InvalidRequest("--generate-only needs --save-images DIR", field="generate_only")
    if args.from_images is not None and (args.ground_truth or args.save_images is not None):
        raise InvalidRequest("--from-images scores saved images; it takes no --ground-truth or --save-images",
                             field="from_images")

    merge_path = None
    if args.merge_into is not None:
        merge_path = args.merge_into / "report.json" if args.merge_into.is_dir() else args.merge_into
        if not merge_path.is_file():
            raise InvalidRequest(f"--merge-into {args.merge_into}: no report.json there", field="merge_into")
        if args.generate_only:
            raise InvalidRequest("--merge-into needs scores; it takes no --generate-only", field="merge_into")

    pack = SpritePack.load(args.pack)
    items = select_items(heldout_eval_set(pack, 100_000), args.n_per_category, categories)

    if args.from_images is not None:
        source = FolderSource(args.from_images, items, name=args.model or (args.weights and args.weights.name))
    elif args.ground_truth:
        if not 64 <= args.gt_size <= 1024:
            raise InvalidRequest(f"--gt-size must be between 64 and 1024, got {args.gt_size}", field="gt_size")
        source = GroundTruthSource(pack, args.gt_size)
    else:
        from zaoxiang.engine.registry import ModelRegistry, builtin_entry
        from zaoxiang.engine.runner import Runner

        settings = settings_from_args(args)
        if args.weights is not None:
            entry = builtin_entry(args.weights)
            if entry is None:
                raise InvalidRequest(f"--weights {args.weights}: no config.json + *.safetensors there", field="weights")
            registry, model_name = ModelRegistry([entry]), entry.name
        else:
            registry, model_name = registry_for(settings, args.model)
        runner = Runner(registry, settings.engine, settings.limits.to_limits())
        if args.batch_size > 1:
            source = BatchedRunnerSource(runner, model_name, args.steps, args.guidance, args.turbo, args.batch_size)
        else:
            source = RunnerSource(runner, model_name, args.steps, args.guidance, args.turbo)

    if args.save_images is not None:
        source = SavingSource(source, args.save_images, items)
    if args.generate_only:
        for index, _, lang, _, _ in generate_all(source, items, langs, seeds):
            if not args.quiet and lang == langs[-1]:
                print(f"\r{index + 1}/{len(items)} items", end="", file=sys.stderr, flush=True)
        print(f"wrote {len(items) * len(langs) * len(seeds)} images to {args.save_images}")
        return 0
    scorer = Scorer(ObjectClassifier.load(args.classifier))

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\r{done}/{total} items", end="" if done < total else "\n", file=sys.stderr, flush=True)

    out = args.out
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    report = evaluate(
        source, items, args.steps, args.guidance, seeds, langs, args.turbo, scorer=scorer,
        sheet=None if out is None else out / "contact_sheet.png",
        json_path=None if out is None else out / "report.json", on_item=progress,
    )
    table = report.table()
    print(table)
    if out is not None:
        (out / "table.md").write_text(table + "\n", encoding="utf-8")
        print(f"wrote {out / 'report.json'}, {out / 'table.md'}, {out / 'contact_sheet.png'}")
    if merge_path is not None:
        from zaoxiang.training.eval.harness import EvalReport

        try:
            into = EvalReport.model_validate_json(merge_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InvalidRequest(f"--merge-into {merge_path}: not an EvalReport ({str(exc).splitlines()[0]})",
                                 field="merge_into") from None
        if args.replace:
            into = into.without({c.category for c in report.categories})
        merged = into.merged(report)
        merged.save_json(merge_path)
        (merge_path.parent / "table.md").write_text(merged.table() + "\n", encoding="utf-8")
        print(merged.table())
        print(f"merged into {merge_path} and {merge_path.parent / 'table.md'}")
    return 0
