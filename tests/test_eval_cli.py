"""`zaoxiang eval` end to end: the tiny preset with random weights through the engine, and the
ground-truth mode that proves the scorers."""

from __future__ import annotations

import json

import pytest
import torch

from zaoxiang.cli import main
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.serialization import save_weights


@pytest.fixture(scope="module")
def pack_path(small_eval_pack):
    return small_eval_pack  # tests/fixtures_tiny.py: built once per session


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    cfg = preset("tiny")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    save_weights(folder, cfg, MMDiT(cfg.transformer).state_dict(), Autoencoder(cfg.autoencoder).state_dict())
    return folder


def test_eval_tiny_model_end_to_end(pack_path, tiny_weights, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--weights", str(tiny_weights), "--pack", str(pack_path), "--n-per-category", "1",
               "--steps", "2", "--guidance", "1", "--device", "cpu", "--out", str(out), "--quiet",
               "--save-images", str(tmp_path / "images")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| identity" in printed and "| sign" in printed and "zh-en" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "builtin" and report["steps"] == 2 and report["langs"] == ["en", "zh"]
    assert {c["category"] for c in report["categories"]} == {"identity", "position", "count", "background", "sign"}
    assert len(report["items"]) == 5 * 2
    # Random weights draw noise: nothing recognisable, so identity and sign text cannot pass.
    by = {c["category"]: c["by_lang"] for c in report["categories"]}
    assert by["identity"] == {"en": 0.0, "zh": 0.0} and by["sign"] == {"en": 0.0, "zh": 0.0}
    assert (out / "contact_sheet.png").stat().st_size > 0 and (out / "table.md").is_file()

    # The saved images score the same when read back (generate on one machine, score on another).
    assert len(list((tmp_path / "images").glob("*.png"))) == 10
    again = tmp_path / "again"
    assert main(["eval", "--from-images", str(tmp_path / "images"), "--pack", str(pack_path), "--n-per-category", "1",
                 "--categories", "identity,position,count,background", "--out", str(again), "--quiet"]) == 0
    passes = lambda r: [(i["caption"], i["passed"]) for i in r["items"] if i["category"] != "sign"]  # noqa: E731
    assert passes(json.loads((again / "report.json").read_text())) == passes(report)


def test_eval_ground_truth_mode_scores_one(pack_path, capsys):
    rc = main(["eval", "--ground-truth", "--pack", str(pack_path), "--n-per-category", "1", "--langs", "en",
               "--categories", "identity,position,count,background", "--quiet"])
    assert rc == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "category" not in line]
    assert len(rows) == 5 and all("1.000" in r for r in rows)


@pytest.mark.parametrize("flag,value,field", [("--langs", "en,fr", "langs"), ("--seeds", "a", "seeds"),
                                              ("--n-per-category", "0", "n-per-category"),
                                              ("--categories", "mood", "categories"),
                                              ("--generate-only", None, "save-images")])
def test_eval_rejects_bad_flags(pack_path, capsys, flag, value, field):
    assert main(["eval", "--ground-truth", "--pack", str(pack_path), flag, *([value] if value else [])]) == 1
    assert field in capsys.readouterr().err


def test_merge_into_adds_categories_scored_elsewhere(pack_path, tmp_path, capsys):
    """The GPU machine scores four categories, sign is scored here: --merge-into joins them."""
    first = tmp_path / "gpu"
    common = ["eval", "--ground-truth", "--pack", str(pack_path), "--n-per-category", "2", "--quiet"]
    assert main([*common, "--categories", "background,count", "--out", str(first)]) == 0
    assert main([*common, "--categories", "position", "--merge-into", str(first)]) == 0
    report = json.loads((first / "report.json").read_text())
    assert [c["category"] for c in report["categories"]] == ["position", "count", "background"]
    assert len({(r["category"], r["index"]) for r in report["items"]}) == len({r["index"] for r in report["items"]})
    assert "position" in (first / "table.md").read_text()
    capsys.readouterr()
    # A category the report already has is refused, and the report is left as it was.
    before = (first / "report.json").read_text()
    assert main([*common, "--categories", "count", "--merge-into", str(first)]) == 1
    assert "count" in capsys.readouterr().err and (first / "report.json").read_text() == before
    assert main([*common, "--categories", "count", "--merge-into", str(tmp_path / "nowhere")]) == 1
    assert "merge-into" in capsys.readouterr().err


def test_merge_into_with_replace_swaps_a_category(pack_path, tmp_path, capsys):
    """--replace: a category re-scored elsewhere (say after a scorer fix) replaces the report's own."""
    first = tmp_path / "gpu"
    common = ["eval", "--ground-truth", "--pack", str(pack_path), "--quiet"]
    assert main([*common, "--n-per-category", "2", "--categories", "background,count", "--out", str(first)]) == 0
    assert main([*common, "--n-per-category", "3", "--categories", "count", "--merge-into", str(first), "--replace"]) == 0
    report = json.loads((first / "report.json").read_text())
    assert [c["category"] for c in report["categories"]] == ["count", "background"]
    by_category = {c: sum(r["category"] == c for r in report["items"]) for c in ("count", "background")}
    assert by_category == {"count": 3 * 2, "background": 2 * 2}  # three items now, in both languages
    assert len({(r["category"], r["index"]) for r in report["items"]}) == len({r["index"] for r in report["items"]})
