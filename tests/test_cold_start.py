"""bench/cold_start.py: a fresh compile cache per run, the result written, the target verdict."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cold():
    spec = importlib.util.spec_from_file_location("cold_start", REPO / "bench" / "cold_start.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cold_start"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_run_uses_an_empty_cache_writes_results_and_cleans_up(cold, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unchanged")  # restored after the test
    monkeypatch.setenv("TRITON_CACHE_DIR", "unchanged")
    root = tmp_path / "caches"
    root.mkdir()
    assert cold.main(["--tiny", "--only", "zimage", "--out-dir", str(tmp_path), "--cache-root", str(root)]) == 0
    assert Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]).parent.parent == root  # a new folder under the root
    assert list(root.iterdir()) == []  # and removed afterwards
    data = json.loads((tmp_path / "results-cpu-tiny-cold-zimage.json").read_text())
    assert data["fresh_cache"] is True and data["cold_s"] > 0 and data["warm_e2e_s"] > 0
    assert data["target_s"] is None  # tiny configs are not the models
    assert "| zimage |" in (tmp_path / "results-cpu-tiny-cold-zimage.md").read_text()


def test_render_says_met_or_missed_by_how_much(cold):
    base = dict(model="flux", device="NVIDIA H100", size=1024, steps=28, guidance=3.5, fresh_cache=True, build_s=12.0,
                warm_e2e_s=3.8, speed="compile_blocks=on", target_s=30.0)
    assert "met (≤ 30 s)" in cold.render(cold.ColdResult(cold_s=24.0, **base))
    assert "missed by 5.5 s (target ≤ 30 s)" in cold.render(cold.ColdResult(cold_s=35.5, **base))


@pytest.mark.parametrize("argv, message", [
    (["--only", "flux", "--size", "32"], "--size must be between 64 and 4096"),
    (["--only", "flux", "--steps", "0"], "--steps must be between 1 and 200"),
])
def test_bad_arguments_name_the_flag_and_limit(cold, argv, message, capsys):
    with pytest.raises(SystemExit):
        cold.parse_args(argv)
    assert message in capsys.readouterr().err


def test_unknown_model_is_refused_by_name(cold, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unchanged")
    monkeypatch.setenv("TRITON_CACHE_DIR", "unchanged")
    with pytest.raises(SystemExit, match="unknown model 'sdxl'"):
        cold.measure("sdxl", tiny=True, size=None, steps=None, fresh=True)


def test_cache_dir_is_emptied_kept_and_reused_with_keep_cache(cold, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unchanged")
    monkeypatch.setenv("TRITON_CACHE_DIR", "unchanged")
    cache = tmp_path / "zxc"
    (cache / "inductor").mkdir(parents=True)
    (cache / "inductor" / "stale").write_text("from an earlier run")
    args = ["--tiny", "--only", "zimage", "--out-dir", str(tmp_path), "--cache-dir", str(cache)]
    assert cold.main(args) == 0
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache / "inductor")
    assert cache.is_dir() and not (cache / "inductor" / "stale").exists()  # emptied first, then kept
    (cache / "marker").write_text("kept")
    assert cold.main(args + ["--keep-cache"]) == 0
    assert (cache / "marker").exists()  # --keep-cache reuses it as it is
    data = json.loads((tmp_path / "results-cpu-tiny-cold-zimage-warmcache.json").read_text())
    assert data["fresh_cache"] is False
    assert "compile cache of an earlier run" in (tmp_path / "results-cpu-tiny-cold-zimage-warmcache.md").read_text()


def test_set_changes_one_switch_and_names_the_file(cold, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unchanged")
    monkeypatch.setenv("TRITON_CACHE_DIR", "unchanged")
    argv = ["--tiny", "--only", "zimage", "--out-dir", str(tmp_path), "--cache-root", str(tmp_path),
            "--set", "compile_vae=off", "--set", "real_rope=off"]
    assert cold.main(argv) == 0
    data = json.loads((tmp_path / "results-cpu-tiny-cold-zimage-compile_vae-off-real_rope-off.json").read_text())
    assert "real_rope=off" in data["speed"]


@pytest.mark.parametrize("pair, message", [
    ("compile_vae", "expected KEY=on|off"),
    ("fp9=on", "expected KEY=on|off"),
    ("compile=off", "expected KEY=on|off"),  # not a switch: a mode
    ("compile_vae=no", "the value must be 'on' or 'off', got 'no'"),
])
def test_set_refuses_what_is_not_a_switch(cold, pair, message):
    with pytest.raises(SystemExit, match=message):
        cold.parse_overrides([pair])


def test_engine_sequence_times_the_idle_work_apart(cold, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unchanged")
    monkeypatch.setenv("TRITON_CACHE_DIR", "unchanged")
    argv = ["--tiny", "--only", "flux", "--out-dir", str(tmp_path), "--cache-root", str(tmp_path), "--engine-sequence"]
    assert cold.main(argv) == 0
    data = json.loads((tmp_path / "results-cpu-tiny-cold-flux-engine.json").read_text())
    assert data["engine_sequence"] is True and data["idle_s"] is not None and data["idle_s"] >= 0
    assert "idle s = decoder compile + warm-up" in (tmp_path / "results-cpu-tiny-cold-flux-engine.md").read_text()
