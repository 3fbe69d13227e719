"""bench/quality.py builds bench/quality.md from eval reports and training metrics (synthetic here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from zaoxiang.errors import InvalidRequest
from zaoxiang.training.eval.harness import CategoryScore, EvalReport

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_quality", module)
    spec.loader.exec_module(module)
    return module


def _report(scores: dict[str, tuple[float, float]], steps: int, guidance: float, turbo: bool) -> EvalReport:
    cats = [CategoryScore(category=c, n=20, by_lang={"en": en, "zh": zh}, zh_minus_en=zh - en, both_pass=None,
                          agree=None) for c, (en, zh) in scores.items()]
    return EvalReport(model="builtin", steps=steps, guidance=guidance, turbo=turbo, seeds=[0, 1], langs=["en", "zh"],
                      classifier_heldout_accuracy=0.94, categories=cats, items=[])


BASE = {"identity": (0.92, 0.90), "position": (0.96, 0.90), "count": (0.80, 0.85),
        "background": (1.00, 1.00), "sign": (0.70, 0.55)}
TURBO = {"identity": (0.88, 0.90), "position": (0.96, 0.95), "count": (0.85, 0.85),
         "background": (0.95, 0.95), "sign": (0.65, 0.60)}


def _write_eval_dir(folder: Path, report: EvalReport, colour: str) -> Path:
    folder.mkdir(parents=True)
    report.save_json(folder / "report.json")
    Image.new("RGB", (32, 16), colour).save(folder / "contact_sheet.png")
    return folder


def _write_metrics(path: Path, stages: dict[str, list[tuple[int, float]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for stage, rows in stages.items():
            for step, loss in rows:
                f.write(json.dumps({"stage": stage, "step": step, "loss": loss, "lr": 1e-4, "samples_per_s": 1.0,
                                    "time": 0.0}) + "\n")
    return path


def _row(md: str, category: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {category} |"))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.fixture()
def built(tmp_path, quality):
    base = _write_eval_dir(tmp_path / "eval-base", _report(BASE, 28, 4.0, False), "red")
    turbo = _write_eval_dir(tmp_path / "eval-turbo", _report(TURBO, 4, 1.0, True), "blue")
    run1 = _write_metrics(tmp_path / "run1" / "metrics.jsonl",
                          {"ae": [(50, 0.5), (100, 0.2)], "dit": [(50, 2.0), (100, 1.0), (150, 0.5)]})
    run2 = _write_metrics(tmp_path / "run2" / "metrics.jsonl", {"dit": [(50, 0.45), (100, 0.4)]})
    hist = tmp_path / "history"
    hist.mkdir()
    _report({c: (0.1, 0.1) for c in BASE}, 28, 4.0, False).save_json(hist / "step-500.json")
    (hist / "1000").mkdir()
    _report({c: (0.5, 0.4) for c in BASE}, 28, 4.0, False).save_json(hist / "1000" / "report.json")
    out = tmp_path / "bench" / "quality.md"
    assets = quality.build(base, turbo, [run1, run2], hist, out, command="python bench/quality.py ...")
    return out, assets


def test_table_numbers_targets_misses_and_gaps(built):
    out, _ = built
    md = out.read_text(encoding="utf-8")
    row = _row(md, "identity")
    assert row[1] == "≥ 0.90"
    assert row[2] == "0.920 ✓" and row[3] == "0.900 ✓"
    assert row[4] == "0.880 ✗ miss 2.0"  # turbo en below 0.90
    assert row[6] == "-2.0 ✓"  # base zh-en
    assert row[8] == "-4.0 ✗ miss 1.0"  # turbo-base en: 4 points down, 1 past the allowed 3
    row = _row(md, "position")
    assert row[3] == "0.900 ✗ miss 5.0"
    assert row[6] == "-6.0 ✗ miss 3.0"  # base zh-en gap 6 points
    row = _row(md, "count")
    assert row[2] == "0.800 ✗ miss 5.0"
    assert row[8] == "+5.0 ✓"  # turbo above base is no miss
    row = _row(md, "sign")
    assert row[1] == "≥ 0.60" and row[3] == "0.550 ✗ miss 5.0" and row[5] == "0.600 ✓"
    assert row[6] == "-15.0 ✗ miss 12.0"
    mean = _row(md, "mean")
    assert mean[2] == f"{sum(v[0] for v in BASE.values()) / 5:.3f}"
    # 5 categories x (4 scores + 2 zh-en + 2 turbo-base); misses counted by hand from BASE/TURBO.
    assert "**Targets met: 28 of 40.**" in md
    assert "steps 28, guidance 4.0, turbo False" in md and "steps 4, guidance 1.0, turbo True" in md
    assert "Notes:" not in md  # a clean base/turbo pair raises no notes


def test_plots_and_contact_sheets_are_written(built):
    out, assets = built
    md = out.read_text(encoding="utf-8")
    assert assets == out.parent / "quality"
    for name in ("loss.png", "eval_history.png", "base_contact_sheet.png", "turbo_contact_sheet.png"):
        assert (assets / name).stat().st_size > 1000 or name.endswith("contact_sheet.png")
        assert f"quality/{name}" in md
        with Image.open(assets / name) as im:
            assert im.width > 0 and im.height > 0
    with Image.open(assets / "base_contact_sheet.png") as im:
        assert im.convert("RGB").getpixel((0, 0)) == (255, 0, 0)  # the base sheet, not the turbo one
    with Image.open(assets / "loss.png") as im:  # a real plot: many distinct colours, not a blank canvas
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 20
    assert "| 500 | 0.100 | 0.100 |" in md and "| 1000 | 0.500 | 0.400 |" in md


def test_runs_join_with_offsets(quality, tmp_path):
    run1 = _write_metrics(tmp_path / "a" / "metrics.jsonl", {"dit": [(50, 2.0), (100, 1.0), (150, 0.5)]})
    # --resume from an older checkpoint appends replayed steps 100.. to the same file
    resumed = _write_metrics(tmp_path / "b" / "metrics.jsonl",
                             {"dit": [(50, 2.0), (100, 1.0), (150, 0.9), (100, 0.8), (150, 0.7), (200, 0.6)]})
    init_from = _write_metrics(tmp_path / "c" / "metrics.jsonl", {"dit": [(50, 0.5), (100, 0.4)]})
    continued = _write_metrics(tmp_path / "d" / "metrics.jsonl", {"dit": [(400, 0.3)]})
    curve = quality.join_metrics([run1])["dit"]
    assert curve.steps == [50, 100, 150]
    curve = quality.join_metrics([resumed])["dit"]
    assert curve.steps == [50, 100, 150, 200] and curve.losses == [2.0, 0.8, 0.7, 0.6]
    curve = quality.join_metrics([run1, init_from, continued])["dit"]
    assert curve.steps == [50, 100, 150, 200, 250, 400]  # init_from shifted by 150; 400 > 250 continues
    assert [s for s, _ in curve.run_starts] == [50, 200, 400]


def test_missing_category_is_reported_as_missed(quality, tmp_path):
    partial = {c: v for c, v in TURBO.items() if c != "sign"}
    base = _write_eval_dir(tmp_path / "eval-base", _report(BASE, 28, 4.0, False), "red")
    turbo = tmp_path / "turbo.json"
    _report(partial, 8, 1.0, True).save_json(turbo)  # a bare JSON: no contact sheet beside it
    metrics = _write_metrics(tmp_path / "m.jsonl", {"dit": [(50, 1.0), (100, 0.5)]})
    out = tmp_path / "quality.md"
    quality.build(base, turbo, [metrics], None, out)
    md = out.read_text(encoding="utf-8")
    row = _row(md, "sign")
    assert row[4] == "— (not evaluated)" and row[5] == "— (not evaluated)"
    assert row[7] == "—" and row[8] == "—"
    assert "The turbo report has no `sign` score in `en` (not evaluated): counted as missed." in md
    assert "The turbo report ran 8 steps, not 4." in md
    assert "turbo: no contact_sheet.png beside" in md
    assert "No `--eval-history` folder was given." in md
    assert (tmp_path / "quality" / "loss.png").stat().st_size > 1000


def test_bad_inputs_name_the_field(quality, tmp_path):
    base = _write_eval_dir(tmp_path / "eval-base", _report(BASE, 28, 4.0, False), "red")
    metrics = _write_metrics(tmp_path / "m.jsonl", {"dit": [(50, 1.0)]})
    with pytest.raises(InvalidRequest) as e:
        quality.build(base, tmp_path / "nowhere", [metrics], None, tmp_path / "q.md")
    assert e.value.field == "turbo_report"
    (tmp_path / "junk.json").write_text('{"model": 1}')
    with pytest.raises(InvalidRequest) as e:
        quality.build(base, tmp_path / "junk.json", [metrics], None, tmp_path / "q.md")
    assert e.value.field == "turbo_report"
    (tmp_path / "bad.jsonl").write_text('{"stage": "dit"}\n')
    with pytest.raises(InvalidRequest) as e:
        quality.build(base, base, [tmp_path / "bad.jsonl"], None, tmp_path / "q.md")
    assert e.value.field == "metrics" and "bad.jsonl:1" in e.value.message
    with pytest.raises(InvalidRequest) as e:
        quality.build(base, base, [metrics], tmp_path / "empty-history-missing", tmp_path / "q.md")
    assert e.value.field == "eval_history"
    assert quality.main(["--base-report", str(base), "--turbo-report", str(base), "--out", str(tmp_path / "q.md")]) == 2


def test_status_note_goes_under_the_title_and_a_missing_one_names_the_field(quality, tmp_path):
    base = _write_eval_dir(tmp_path / "eval-base", _report(BASE, 28, 4.0, False), "red")
    metrics = _write_metrics(tmp_path / "m.jsonl", {"dit": [(50, 1.0), (100, 0.5)]})
    note = tmp_path / "status.md"
    note.write_text("**Not shipped yet:** objects are blobs.\n", encoding="utf-8")
    out = tmp_path / "q.md"
    quality.build(base, base, [metrics], None, out, command="x", status=note)
    text = out.read_text(encoding="utf-8")
    assert text.index("**Not shipped yet:** objects are blobs.") < text.index("## Evaluation on held-out prompts")
    with pytest.raises(InvalidRequest) as e:
        quality.build(base, base, [metrics], None, out, status=tmp_path / "missing.md")
    assert e.value.field == "status"
