"""``evaluate``: generate the held-out prompts in each language, score every image, build a report.

Images come from an ``ImageSource``: by default the engine's ``Runner`` (so evaluation measures
what users get: same request validation, defaults, seeds and decode guard), ``BatchedRunnerSource``
(the built-in model only: the same resolved requests, many items per batched denoise — the same
images, many times faster on a GPU), or ``GroundTruthSource`` (the data builder's own renders: a
perfect generator, used to prove the scorers measure images).

A source may also offer ``images_many(units, seeds)`` and a ``batch_size``: ``generate_all`` then
hands it several (item, lang) units per call.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict, Field

from zaoxiang.errors import InvalidRequest
from zaoxiang.training.data.evalset import EVAL_CATEGORIES, EvalItem

LANGS = ("en", "zh")
MAX_BATCH_SIZE = 256
# (item, lang, prompt): one caption of one item, drawn once per seed.
Unit = tuple[EvalItem, str, str]
# Caption fonts, first found wins: the shipped Noto Sans CJK SC subset (every character a caption can
# hold; the GPU machines have no CJK fonts), then the system's full Noto CJK collection (face 2 is
# SC), then Pillow's built-in bitmap font (Latin only).
CAPTION_FONTS: tuple[tuple[Path, int], ...] = (
    (Path(__file__).parent / "fonts" / "NotoSansCJKsc-Regular-captions.otf", 0),
    (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"), 2),
)


class ImageSource(Protocol):
    name: str

    def images(self, item: EvalItem, lang: str, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        """One image per seed for ``prompt`` (the item's caption in ``lang``)."""
        ...


class RunnerSource:
    """Generates through the engine: one ``GenerationRequest`` per run of consecutive seeds."""

    def __init__(self, runner, model: str | None, steps: int | None, guidance: float | None, turbo: bool = False) -> None:
        self.runner, self.model, self.steps, self.guidance, self.turbo = runner, model, steps, guidance, turbo
        self.name = runner.registry.get(model).name
        self.resolved: tuple[int, float] | None = None  # (steps, guidance) the engine ran: defaults/turbo filled in

    def images(self, item: EvalItem, lang: str, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        from zaoxiang.protocol import GenerationRequest

        out: list[Image.Image] = []
        for first, n in _consecutive_runs(seeds, self.runner.limits.max_images):
            req = GenerationRequest(prompt=prompt, model=self.model, steps=self.steps, guidance=self.guidance,
                                    seed=first, n=n, turbo=self.turbo)
            result = self.runner.run(req)
            self.resolved = (int(result.request.steps), float(result.request.guidance))
            out += result.images
        return out


class BatchedRunnerSource:
    """The built-in model, ``batch_size`` images (different prompts, each its own seed) per
    ``BuiltinPipeline.generate_batch`` call. Every image's request goes through the Runner's own
    ``resolve`` (limits, model defaults, turbo steps/guidance, LoRA hashes, negative prompt,
    validation) and the Runner's LoRA activation, so it gets what ``RunnerSource`` would give it;
    only the batching differs (pixels within ±1 from batch-size-dependent float rounding).

    Not thread-safe against other users of the same Runner: the harness drives its runner alone.
    With a lossy speed profile (first block cache) the cache decides per batch, so images then
    depend on their batch neighbours.
    """

    def __init__(self, runner, model: str | None, steps: int | None, guidance: float | None, turbo: bool = False,
                 batch_size: int = 16) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InvalidRequest(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}",
                                 field="batch_size")
        entry = runner.registry.get(model)
        if entry.kind != "builtin":
            raise InvalidRequest(f"batch_size {batch_size} > 1 works with the built-in model only; {entry.name!r} is a "
                                 f"{entry.family} model: use batch_size 1", field="batch_size")
        self.runner, self.model, self.steps, self.guidance, self.turbo = runner, entry.name, steps, guidance, turbo
        self.resolved: tuple[int, float] | None = None  # (steps, guidance) of the last batch: defaults/turbo filled in
        self.batch_size, self.name = batch_size, entry.name

    def images(self, item: EvalItem, lang: str, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        return self.images_many([(item, lang, prompt)], seeds)[0]

    def images_many(self, units: Sequence[Unit], seeds: Sequence[int]) -> list[list[Image.Image]]:
        """Per unit, one image per seed; the (prompt, seed) jobs run ``batch_size`` at a time."""
        jobs = [(prompt, seed) for _, _, prompt in units for seed in seeds]
        flat: list[Image.Image] = []
        for start in range(0, len(jobs), self.batch_size):
            flat += self._batch(jobs[start : start + self.batch_size])
        k = len(seeds)
        return [flat[i * k : (i + 1) * k] for i in range(len(units))]

    def _batch(self, jobs: Sequence[tuple[str, int]]) -> list[Image.Image]:
        from zaoxiang.engine.lora import applied_loras
        from zaoxiang.protocol import GenerationRequest

        runner = self.runner
        entry = runner.registry.get(self.model)
        pipe, _ = runner.load(entry.name)
        if not hasattr(pipe, "generate_batch"):
            raise InvalidRequest(f"model {entry.name!r} cannot generate in batches: use batch_size 1", field="batch_size")
        reqs = [runner.resolve(GenerationRequest(prompt=prompt, model=self.model, steps=self.steps,
                                                 guidance=self.guidance, seed=seed, n=1, turbo=self.turbo), pipe)
                for prompt, seed in jobs]
        # Only prompt and seed differ between jobs: steps, guidance, negative prompt, sampler and
        # LoRAs (turbo included) resolve the same for all, so the first request's values hold for all.
        first = reqs[0]
        self.resolved = (int(first.steps), float(first.guidance))
        adapters = runner.loras.activate(first.loras, entry.path, entry.name)
        with applied_loras(pipe, adapters):  # the base model is restored however the batch ends
            return pipe.generate_batch(
                [r.prompt for r in reqs], [int(r.seed) for r in reqs], int(first.steps), float(first.guidance),
                first.negative_prompt, shift=first.sampler.shift,
            )


class GroundTruthSource:
    """The data builder's render of each item's spec: what a perfect generator would draw."""

    name = "ground-truth"

    def __init__(self, pack, size: int = 256) -> None:
        self.pack, self.size = pack, size

    def images(self, item: EvalItem, lang: str, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        from zaoxiang.training.data.render import render_batch

        img = render_batch([item.spec], self.pack, self.size)[0]  # (3, S, S) in [-1, 1]
        pix = ((img + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()  # (S, S, 3)
        return [Image.fromarray(pix) for _ in seeds]


def image_names(items: Sequence[EvalItem]) -> dict[int, str]:
    """id(item) -> file stem ``<category>-<rank in category>``: stable when a later run selects
    fewer categories or fewer items per category from the same eval set."""
    seen: dict[str, int] = defaultdict(int)
    out = {}
    for it in items:
        out[id(it)] = f"{it.category}-{seen[it.category]:04d}"
        seen[it.category] += 1
    return out


class SavingSource:
    """Wraps a source and writes every image it makes to ``folder`` (for scoring elsewhere: the GPU
    machine has no Tesseract, the CPU machine is slow to generate)."""

    def __init__(self, inner: ImageSource, folder: Path | str, items: Sequence[EvalItem]) -> None:
        self.inner, self.folder, self.name = inner, Path(folder), inner.name
        self._names = image_names(items)
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def batch_size(self) -> int:
        return getattr(self.inner, "batch_size", 1)

    def images(self, item: EvalItem, lang: str, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        return self.images_many([(item, lang, prompt)], seeds)[0]

    def images_many(self, units: Sequence[Unit], seeds: Sequence[int]) -> list[list[Image.Image]]:
        out = unit_images(self.inner, units, seeds)
        for (item, lang, _), images in zip(units, out):
            for seed, image in zip(seeds, images):
                image.save(self.folder / f"{self._names[id(item)]}-{lang}-{seed}.png")
        return out


class FolderSource:
    """Images saved by SavingSource, for the same item list, languages and seeds."""

    def __init__(self, folder: Path | str, items: Sequence[EvalItem], name: str | None = None) -> None:
        self.folder = Path(folder)
        self.name = name or self.folder.name
        self._names = image_names(items)
        if not self.folder.is_dir():
            raise InvalidRequest(f"image folder {self.folder} does not exist", field="from_images")

    def images(self, item: EvalItem, lang: str, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        out = []
        for seed in seeds:
            path = self.folder / f"{self._names[id(item)]}-{lang}-{seed}.png"
            if not path.is_file():
                raise InvalidRequest(f"{path} is missing: generate with the same items, langs and seeds",
                                     field="from_images")
            with Image.open(path) as im:
                out.append(im.convert("RGB"))
        return out


def unit_images(source: ImageSource, units: Sequence[Unit], seeds: Sequence[int]) -> list[list[Image.Image]]:
    """``source.images_many`` where the source batches, else one ``images`` call per unit."""
    many = getattr(source, "images_many", None)
    if many is not None:
        return many(units, seeds)
    return [source.images(item, lang, prompt, seeds) for item, lang, prompt in units]


def generate_all(
    source: ImageSource, items: Sequence[EvalItem], langs: Sequence[str], seeds: Sequence[int],
) -> Iterator[tuple[int, EvalItem, str, str, list[Image.Image]]]:
    """(index, item, lang, prompt, one image per seed) for every item and language, in order. A
    source with ``batch_size`` B gets about B // len(seeds) units per call (at least one)."""
    units = [(index, item, lang, item.caption_en if lang == "en" else item.caption_zh)
             for index, item in enumerate(items) for lang in langs]
    per_call = max(1, getattr(source, "batch_size", 1) // len(seeds))
    for start in range(0, len(units), per_call):
        chunk = units[start : start + per_call]
        results = unit_images(source, [(item, lang, prompt) for _, item, lang, prompt in chunk], seeds)
        for (index, item, lang, prompt), images in zip(chunk, results):
            yield index, item, lang, prompt, images


def _consecutive_runs(seeds: Sequence[int], max_n: int) -> list[tuple[int, int]]:
    # The runner gives image i the seed ``seed + i``, so consecutive seeds batch into one request.
    runs: list[tuple[int, int]] = []
    for s in seeds:
        if runs and runs[-1][0] + runs[-1][1] == s and runs[-1][1] < max_n:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((s, 1))
    return runs


# -- the report ------------------------------------------------------------------------------------


class ItemResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int  # position in the evaluated item list
    category: str
    lang: str
    seed: int
    caption: str
    passed: bool
    detail: dict = Field(default_factory=dict)


class CategoryScore(BaseModel):
    category: str
    n: int  # images per language
    by_lang: dict[str, float]  # pass rate per language
    zh_minus_en: float | None  # None unless both languages ran
    both_pass: float | None  # share of (item, seed) where the en and the zh image both pass
    agree: float | None  # share where both pass or both fail


class EvalReport(BaseModel):
    model: str
    steps: int | None
    guidance: float | None
    turbo: bool
    seeds: list[int]
    langs: list[str]
    classifier_heldout_accuracy: float | None
    categories: list[CategoryScore]
    items: list[ItemResult]

    def score(self, category: str, lang: str) -> float:
        for c in self.categories:
            if c.category == category:
                return c.by_lang[lang]
        raise KeyError(category)

    def mean(self, lang: str) -> float:
        """Macro average over categories (each category weighs the same)."""
        vals = [c.by_lang[lang] for c in self.categories]
        return sum(vals) / len(vals) if vals else 0.0

    def table(self) -> str:
        """Category × language pass rates, plus the zh−en gap and zh/en agreement."""
        both = len(self.langs) == 2
        head = ["category", "n", *self.langs] + (["zh-en", "both pass", "agree"] if both else [])
        rows = []
        for c in self.categories:
            row = [c.category, str(c.n), *(f"{c.by_lang[lang]:.3f}" for lang in self.langs)]
            if both:
                row += [f"{c.zh_minus_en:+.3f}", f"{c.both_pass:.3f}", f"{c.agree:.3f}"]
            rows.append(row)
        mean = ["mean", "", *(f"{self.mean(lang):.3f}" for lang in self.langs)]
        if both:
            mean += [f"{self.mean('zh') - self.mean('en'):+.3f}", "", ""]
        rows.append(mean)
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = lambda r: "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |"  # noqa: E731
        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        title = (f"model {self.model}, steps {self.steps}, guidance {self.guidance}, turbo {self.turbo}, "
                 f"seeds {self.seeds}; classifier held-out accuracy {self.classifier_heldout_accuracy}")
        return "\n".join([title, "", fmt(head), sep, *map(fmt, rows)])

    def save_json(self, path: Path | str) -> None:
        Path(path).write_text(self.model_dump_json(indent=1), encoding="utf-8")

    def without(self, categories: set[str]) -> EvalReport:
        """This report less ``categories`` (their items and summaries), e.g. before a re-scored copy
        of them is merged back in."""
        items = [r for r in self.items if r.category not in categories]
        return self.model_copy(update={"items": items, "categories": summarise(items, self.langs)})

    def merged(self, other: EvalReport) -> EvalReport:
        """This report plus ``other``'s categories: how categories scored elsewhere join one report
        (the GPU machine scores identity..background; sign needs Tesseract, so its saved images are
        scored on another machine). Both must describe the same run (model settings, seeds,
        languages; a setting one side left unrecorded (None) takes the other's) and share no
        category. ``other``'s item indices follow this report's."""
        for field in ("turbo", "seeds", "langs"):
            if getattr(self, field) != getattr(other, field):
                raise InvalidRequest(f"cannot merge reports with different {field}: {getattr(self, field)} vs "
                                     f"{getattr(other, field)}", field=field)
        settings = {}
        for field in ("steps", "guidance"):
            a, b = getattr(self, field), getattr(other, field)
            if a is not None and b is not None and a != b:
                raise InvalidRequest(f"cannot merge reports with different {field}: {a} vs {b}", field=field)
            settings[field] = a if a is not None else b
        shared = {c.category for c in self.categories} & {c.category for c in other.categories}
        if shared:
            raise InvalidRequest(f"both reports score {', '.join(sorted(shared))}; merge only adds categories",
                                 field="categories")
        offset = 1 + max((r.index for r in self.items), default=-1)
        items = self.items + [r.model_copy(update={"index": r.index + offset}) for r in other.items]
        return self.model_copy(update={
            **settings, "items": items, "categories": summarise(items, self.langs),
            "classifier_heldout_accuracy": self.classifier_heldout_accuracy or other.classifier_heldout_accuracy,
        })


def summarise(items: list[ItemResult], langs: Sequence[str]) -> list[CategoryScore]:
    by: dict[tuple[str, str], list[bool]] = defaultdict(list)
    pairs: dict[str, dict[tuple[int, int], dict[str, bool]]] = defaultdict(lambda: defaultdict(dict))
    for r in items:
        by[(r.category, r.lang)].append(r.passed)
        pairs[r.category][(r.index, r.seed)][r.lang] = r.passed
    out = []
    for cat in [c for c in EVAL_CATEGORIES if any(r.category == c for r in items)]:
        rates = {lang: sum(by[(cat, lang)]) / max(1, len(by[(cat, lang)])) for lang in langs}
        gap = both = agree = None
        if set(langs) >= {"en", "zh"}:
            ps = [p for p in pairs[cat].values() if "en" in p and "zh" in p]
            gap = rates["zh"] - rates["en"]
            both = sum(p["en"] and p["zh"] for p in ps) / max(1, len(ps))
            agree = sum(p["en"] == p["zh"] for p in ps) / max(1, len(ps))
        out.append(CategoryScore(category=cat, n=len(by[(cat, langs[0])]), by_lang=rates, zh_minus_en=gap,
                                 both_pass=both, agree=agree))
    return out


# -- evaluate ------------------------------------------------------------------------------------


def _source_for(model_name_or_runner, steps, guidance, turbo, batch_size: int = 1) -> ImageSource:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidRequest(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}", field="batch_size")

    def runner_source(runner, name):
        if batch_size == 1:
            return RunnerSource(runner, name, steps, guidance, turbo)
        return BatchedRunnerSource(runner, name, steps, guidance, turbo, batch_size)

    if hasattr(model_name_or_runner, "images"):
        if batch_size != 1:
            raise InvalidRequest("batch_size applies when evaluate builds the source from a model or a Runner; "
                                 "give the ImageSource its own batch size", field="batch_size")
        return model_name_or_runner
    if hasattr(model_name_or_runner, "run") and hasattr(model_name_or_runner, "registry"):
        return runner_source(model_name_or_runner, None)
    if model_name_or_runner is None or isinstance(model_name_or_runner, str):
        from zaoxiang.engine.registry import ModelRegistry, builtin_entry
        from zaoxiang.engine.runner import Runner

        name = model_name_or_runner
        if name is not None and (Path(name) / "config.json").is_file():  # a built-in weights folder
            entry = builtin_entry(Path(name))
            registry = ModelRegistry([entry])
            name = entry.name
        else:
            registry = ModelRegistry.discover([name] if name and Path(name).is_dir() else [])
            name = Path(name).resolve().name if name and Path(name).is_dir() else name
        return runner_source(Runner(registry), name)
    raise InvalidRequest(f"cannot evaluate {type(model_name_or_runner).__name__}: pass a model name, a Runner "
                         "or an ImageSource", field="model")


def evaluate(
    model_name_or_runner,
    items: Sequence[EvalItem],
    steps: int | None,
    guidance: float | None,
    seeds: Sequence[int],
    langs: Sequence[str] = LANGS,
    turbo: bool = False,
    *,
    scorer=None,
    sheet: Path | str | None = None,
    sheet_items: int = 24,
    json_path: Path | str | None = None,
    on_item: Callable[[int, int], None] | None = None,
    batch_size: int = 1,
) -> EvalReport:
    """Generate every item in every language for every seed, score each image, summarise.

    ``model_name_or_runner``: a registered model name, a built-in weights folder, a diffusers
    folder, a ``Runner`` (uses its default model) or any ``ImageSource``. ``scorer`` defaults to
    ``Scorer(ObjectClassifier.load())``. ``sheet`` / ``json_path`` write a contact sheet PNG of the
    first ``sheet_items`` items (first seed, every language) and the full report. ``batch_size``
    > 1 (built-in model only) generates that many images per batched call (``BatchedRunnerSource``).
    """
    if not items:
        raise InvalidRequest("no evaluation items", field="items")
    if not seeds:
        raise InvalidRequest("at least one seed is needed", field="seeds")
    bad = [lang for lang in langs if lang not in LANGS]
    if bad or not langs or len(set(langs)) != len(langs):
        raise InvalidRequest(f"langs must be distinct values of {LANGS}, got {list(langs)}", field="langs")
    if scorer is None:
        from zaoxiang.training.eval.classifier import ObjectClassifier
        from zaoxiang.training.eval.scoring import Scorer

        scorer = Scorer(ObjectClassifier.load())
    source = _source_for(model_name_or_runner, steps, guidance, turbo, batch_size)

    results: list[ItemResult] = []
    tiles: list[tuple[Image.Image, str, bool]] = []
    for index, item, lang, prompt, images in generate_all(source, items, langs, list(seeds)):
        for seed, image in zip(seeds, images):
            s = scorer.score(image, item)
            results.append(ItemResult(index=index, category=item.category, lang=lang, seed=seed, caption=prompt,
                                      passed=s.passed, detail=s.detail))
        if sheet is not None and index < sheet_items:
            tiles.append((images[0], f"[{item.category}] {prompt}", results[-len(images)].passed))
        if on_item is not None and lang == langs[-1]:
            on_item(index + 1, len(items))

    # The report states what ran: the model's (or the turbo adapter's) defaults when none were asked for.
    resolved = getattr(source, "resolved", None)
    if resolved is not None:
        steps, guidance = (steps if steps is not None else resolved[0]), (guidance if guidance is not None else resolved[1])
    report = EvalReport(
        model=source.name, steps=steps, guidance=guidance, turbo=turbo, seeds=list(seeds), langs=list(langs),
        classifier_heldout_accuracy=getattr(getattr(scorer, "classifier", None), "heldout_accuracy", None),
        categories=summarise(results, langs), items=results,
    )
    if json_path is not None:
        report.save_json(json_path)
    if sheet is not None:
        contact_sheet(tiles, sheet, cols=2 * len(langs))
    return report


def contact_sheet(tiles: list[tuple[Image.Image, str, bool]], path: Path | str, cols: int = 4, tile: int = 192) -> None:
    """A PNG grid: each image with its caption under it (✓/✗ = scorer verdict)."""
    if not tiles:
        return
    font = caption_font(13)
    text_h = 58
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tile, rows * (tile + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, caption, passed) in enumerate(tiles):
        x, y = (i % cols) * tile, (i // cols) * (tile + text_h)
        sheet.paste(img.convert("RGB").resize((tile - 8, tile - 8), Image.Resampling.LANCZOS), (x + 4, y + 4))
        lines = wrap_text(draw, ("PASS " if passed else "FAIL ") + caption, font, tile - 8)[:3]
        for j, line in enumerate(lines):
            draw.text((x + 4, y + tile + j * 18), line, font=font, fill=(0, 110, 0) if passed and j == 0 else (20, 20, 20))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def caption_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The first of ``CAPTION_FONTS`` (path, face index) that loads, else Pillow's default font. A
    character the chosen font lacks draws as its missing-glyph box."""
    for path, index in CAPTION_FONTS:
        try:
            return ImageFont.truetype(str(path), size, index=index)
        except OSError:  # absent or unreadable: try the next
            continue
    return ImageFont.load_default()


def wrap_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    # Character-wise wrapping: Chinese captions have no spaces to break at.
    lines, cur = [], ""
    for ch in text:
        if draw.textlength(cur + ch, font=font) > width:
            lines.append(cur)
            cur = ch
        else:
            cur += ch
    return lines + [cur] if cur else lines


def dump_table_json(report: EvalReport) -> str:
    """The summary without per-item rows (for logs and bench files)."""
    return json.dumps(report.model_dump(exclude={"items"}), ensure_ascii=False, indent=1)
