"""CPU tests of bench/real_arch.py's runner: every row path on the tiny configs, fail-soft rows, the time budget."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FAILING = "forward: + regional compile"


def _real_arch():
    spec = importlib.util.spec_from_file_location("real_arch", REPO / "bench" / "real_arch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("real_arch", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run of two models (Z-Image: the RoPE rewrite; Qwen: an extra CFG setting) with every
    optional row on and one row made to fail."""
    out = tmp_path_factory.mktemp("bench") / "r.md"
    rc = _real_arch().main(["--tiny", "--only", "zimage", "--only", "qwen", "--lossy", "--stock-compile",
                            "--fail-row", FAILING, "--out", str(out)])
    assert rc == 0
    return out, json.loads(out.with_suffix(".json").read_text())


def _rows(results, key):
    return {r["mode"] + (f" {r['steps']}" if r["mode"] in ("stock eager", "zaoxiang lossless") else ""): r
            for res in results if res["key"] == key for r in res["rows"]}


def test_failing_row_is_recorded_and_the_run_goes_on(tiny_run):
    out, results = tiny_run
    for key in ("zimage", "qwen"):
        rows = _rows(results, key)
        failed = rows[FAILING]
        assert not failed["ok"] and failed["note"].startswith("ERROR RuntimeError: injected failure")
        assert failed["forward_ms"] is None
        after = rows["forward: + real RoPE"] if key == "zimage" else rows["VAE: stock decode"]
        assert after["ok"] and (after["forward_ms"] or after["vae_ms"])
        assert rows["zaoxiang lossless 2"]["ok"] and rows["zaoxiang lossless 2"]["e2e_s"] > 0
    assert "ERROR RuntimeError: injected failure" in out.read_text()


def test_every_row_path_runs_in_order_with_predictions(tiny_run):
    _, results = tiny_run
    z = [r["mode"] for r in results[0]["rows"]]
    assert z == ["stock eager", "stock + torch.compile", "forward: stock eager", FAILING, "forward: + real RoPE",
                 "forward: + CUDA graphs", "VAE: stock decode", "VAE: + channels-last, cudnn.benchmark",
                 "VAE: + compiled decoder", "zaoxiang lossless", "zaoxiang lossless, tiled VAE",
                 "zaoxiang + first-block cache 0.08", "zaoxiang + fp8 matmuls"]
    rows = _rows(results, "zimage")
    assert rows["forward: + real RoPE"]["note"].startswith("on: real_rope")
    assert all(r["predicted"] for r in results[0]["rows"])  # every Z-Image row has its prediction
    q = _rows(results, "qwen")
    assert q["stock eager 3"]["e2e_s"] > 0 and q["zaoxiang lossless 3"]["e2e_s"] > 0  # the extra CFG setting
    assert q["zaoxiang + first-block cache 0.08"]["e2e_s"] > 0
    for res in results:  # the lossless checks still hold on the tiny configs
        assert res["checks"]["one_forward_rel_l2"] <= 1e-2
        assert all(v["latents_rel_l2"] <= 3e-2 for v in res["checks"].values() if isinstance(v, dict))


def _session(budget: float):
    ra = _real_arch()
    args = argparse.Namespace(time_budget_s=budget, fail_row=[])
    return ra, ra.Session(args, torch.device("cpu"), flush=lambda: None)


def test_out_of_memory_row_is_recorded_and_the_next_row_runs():
    ra, session = _session(1e9)
    result = ra.ModelResult("x")

    def oom(row):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    assert session.row(result, ra.Row("x", "a", 1, 0.0, 64), oom) is False
    assert session.row(result, ra.Row("x", "b", 1, 0.0, 64), lambda row: setattr(row, "e2e_s", 1.0)) is True
    a, b = result.rows
    assert not a.ok and a.note.startswith("ERROR OOM: CUDA out of memory")
    assert b.ok and b.e2e_s == 1.0


def test_spent_budget_skips_optional_rows_only():
    ra, session = _session(0.0)
    result = ra.ModelResult("x")
    ran = []
    session.row(result, ra.Row("x", "optional", 1, 0.0, 64), lambda row: ran.append("optional"), optional=True)
    session.row(result, ra.Row("x", "required", 1, 0.0, 64), lambda row: ran.append("required"))
    assert ran == ["required"]
    assert result.rows[0].note.startswith("skipped: time budget 0 s spent") and not result.rows[0].ok


def test_error_note_is_type_and_first_200_chars():
    ra = _real_arch()
    note = ra._error_note("ValueError", ValueError("x" * 500), "")
    assert note == "ERROR ValueError: " + "x" * 200


def test_every_real_ladder_row_has_a_prediction():
    ra = _real_arch()
    for key, spec in ra.REAL.items():
        modes = ["stock eager", "zaoxiang lossless", "forward: stock eager", "forward: + regional compile",
                 "forward: + CUDA graphs", "VAE: stock decode", "VAE: + compiled decoder"]
        modes += ["forward: + real RoPE"] if spec.family == "z-image" else []
        for mode in modes:
            assert ra.prediction(key, mode, spec.steps), (key, mode)
