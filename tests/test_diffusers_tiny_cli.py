"""``zaoxiang tiny-model``: writes a folder the registry recognises; refuses to overwrite."""

from __future__ import annotations

import json

import pytest

from zaoxiang.cli import main
from zaoxiang.engine.registry import inspect_folder


def test_tiny_model_writes_a_diffusers_folder(tmp_path, capsys):
    out = tmp_path / "tiny-sd3"
    assert main(["tiny-model", "sd3", str(out)]) == 0
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "StableDiffusion3Pipeline"
    entry = inspect_folder(out)
    assert entry.family == "sd3"
    assert "tiny random sd3" in capsys.readouterr().out


def test_tiny_model_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["tiny-model", "flux", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_tiny_model_rejects_unknown_family(tmp_path):
    with pytest.raises(SystemExit):
        main(["tiny-model", "dalle", str(tmp_path / "x")])
