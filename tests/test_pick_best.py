"""scripts/gpu/session10/pick_best.py: the rule that chose the base's sampling point in session 10
(written before the sweep ran) must pick what it says: the highest mean of the four position and
count rates, ties to fewer steps, then to guidance 4."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu" / "session10" / "pick_best.py"


@pytest.fixture()
def pick_best():
    spec = importlib.util.spec_from_file_location("pick_best", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_report(folder: Path, steps: int, guidance: float, position: tuple, count: tuple) -> None:
    out = folder / f"base-{steps}-g{guidance:g}"
    out.mkdir(parents=True)
    categories = [{"category": "position", "by_lang": {"en": position[0], "zh": position[1]}},
                  {"category": "count", "by_lang": {"en": count[0], "zh": count[1]}},
                  {"category": "identity", "by_lang": {"en": 0.0, "zh": 0.0}}]  # not part of the rule
    (out / "report.json").write_text(json.dumps({"steps": steps, "guidance": guidance, "categories": categories}))


def winner(pick_best, folder: Path, capsys) -> str:
    pick_best.main(str(folder))
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_highest_mean_of_position_and_count_wins(pick_best, tmp_path, capsys):
    write_report(tmp_path, 28, 4.0, (0.90, 0.90), (0.90, 0.90))
    write_report(tmp_path, 50, 5.0, (0.95, 0.90), (0.90, 0.90))
    assert winner(pick_best, tmp_path, capsys) == "50:5"


def test_ties_go_to_fewer_steps_then_guidance_4(pick_best, tmp_path, capsys):
    write_report(tmp_path, 50, 4.0, (0.90, 0.90), (0.90, 0.90))
    write_report(tmp_path, 40, 5.0, (0.90, 0.90), (0.90, 0.90))
    write_report(tmp_path, 40, 4.0, (0.90, 0.90), (0.90, 0.90))
    assert winner(pick_best, tmp_path, capsys) == "40:4"


def test_identity_does_not_count(pick_best, tmp_path, capsys):
    write_report(tmp_path, 28, 4.0, (0.91, 0.90), (0.90, 0.90))
    write_report(tmp_path, 40, 4.0, (0.90, 0.90), (0.90, 0.90))
    (tmp_path / "base-40-g4" / "report.json").write_text(
        (tmp_path / "base-40-g4" / "report.json").read_text().replace('"en": 0.0, "zh": 0.0', '"en": 1.0, "zh": 1.0'))
    assert winner(pick_best, tmp_path, capsys) == "28:4"
