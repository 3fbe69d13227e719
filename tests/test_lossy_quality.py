"""bench/lossy_quality.py end to end on tiny random weights (with a random turbo LoRA beside them),
a tiny pack and one item per category; plus its SSIM against values known in closed form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests._bench import bench_module
from tests._stub_text import StubTextEncoder
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.lora import random_lora, save_lora
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.serialization import save_weights



@pytest.fixture(scope="module")
def bench():
    yield from bench_module("lossy_quality")


@pytest.fixture(scope="module")
def pack_path(small_eval_pack):
    return small_eval_pack  # tests/fixtures_tiny.py: built once per session


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    cfg = preset("tiny")
    torch.manual_seed(0)
    dit = MMDiT(cfg.transformer)
    with torch.no_grad():  # non-zero gates, so every block matters and the cache has something to skip
        for p in dit.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    folder = tmp_path_factory.mktemp("tinyw")
    save_weights(folder, cfg, dit.state_dict(), Autoencoder(cfg.autoencoder).state_dict())
    save_lora(folder / "turbo_lora.safetensors", random_lora(dit, rank=4, std=0.2), rank=4, alpha=4.0,
              extra_metadata={"recommended_steps": "3", "recommended_guidance": "1.0"})
    return folder


def test_bench_end_to_end(bench, pack_path, weights, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "lossy.md"
    # Sign OCR costs seconds per image on 2 cores (and the eval tests cover it): left out here.
    args = bench.parse_args(["--weights", str(weights), "--pack", str(pack_path), "--n-per-category", "1",
                             "--device", "cpu", "--steps", "6", "--out", str(out),
                             "--categories", "identity,position,count,background"])
    report = bench.run_bench(args, text_encoder=StubTextEncoder(), log=lambda msg: None)

    rows = report["results"]
    modes = [m.name for m in bench.MODES]
    assert [r["mode"] for r in rows] == modes * 2 and [r["setting"] for r in rows] == ["default"] * 6 + ["turbo"] * 6
    by = {(r["setting"], r["mode"]): r for r in rows}
    for setting in ("default", "turbo"):
        lossless = by[(setting, "lossless")]
        assert lossless["status"] == "ok" and lossless["images"] == 8  # 4 categories x en, zh x 1 seed
        assert math.isinf(lossless["psnr_db"]) and lossless["ssim"] == 1.0 and lossless["blocks_skipped"] == 0.0
        assert set(lossless["pass_rate"]) == {"identity", "position", "count", "background"}
        assert all(0.0 <= v <= 1.0 for v in lossless["pass_rate"].values())
        assert by[(setting, "fp8")]["status"].startswith("skipped")  # CPU
        assert by[(setting, "fp8 + fbc 0.08")]["status"].startswith("skipped")
        for t in ("0.05", "0.08", "0.12"):
            assert by[(setting, f"fbc {t}")]["status"] == "ok"
    assert report["meta"]["settings"][1] == {"name": "turbo", "steps": 3, "guidance": 1.0}

    text = out.read_text()
    for mode in modes:
        assert f"| default | {mode} |" in text and f"| turbo | {mode} |" in text
    assert "| inf |" in text and "sign: n/a: not asked for" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["results"][0]["psnr_db"] == "inf" and len(saved["results"]) == 12


def test_lossy_modes_differ_from_lossless_and_fp8_runs_where_available(bench, pack_path, weights, monkeypatch):
    """A threshold high enough to skip (random weights change ≈ 1 per step) gives finite PSNR and a
    skipped share > 0, so the comparison measures something. fp8 is made "available" on the CPU
    (torch._scaled_mm runs there too, --fp8-cpu-reference) to drive the path the GPU takes. No tesseract:
    sign is n/a."""
    monkeypatch.setattr(bench, "MODES", (bench.Mode("lossless"), bench.Mode("fbc 1.0", first_block_cache=1.0),
                                         bench.Mode("fp8", fp8=True),
                                         bench.Mode("fp8 + fbc 1.0", first_block_cache=1.0, fp8=True)))
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    args = bench.parse_args(["--weights", str(weights), "--pack", str(pack_path), "--n-per-category", "1",
                             "--device", "cpu", "--steps", "8", "--categories", "background,sign",
                             "--fp8-cpu-reference"])
    report = bench.run_bench(args, text_encoder=StubTextEncoder(), log=lambda msg: None)
    assert report["meta"]["sign"].startswith("n/a: tesseract") and report["meta"]["categories"] == ["background"]
    assert report["meta"]["fp8"].startswith("CPU reference")
    by = {(r["setting"], r["mode"]): r for r in report["results"]}
    for setting in ("default", "turbo"):
        fbc, fp8, both = by[(setting, "fbc 1.0")], by[(setting, "fp8")], by[(setting, "fp8 + fbc 1.0")]
        assert fp8["status"] == "ok" and fp8["blocks_skipped"] == 0.0 and math.isfinite(fp8["psnr_db"])
        assert "fp8=on" in fp8["speed_report"] and "first_block_cache=on" in both["speed_report"]
        if setting == "default":  # 8 steps: the cache skips and changes pixels
            assert fbc["blocks_skipped"] > 0 and math.isfinite(fbc["psnr_db"]) and fbc["ssim"] < 1.0
            assert both["blocks_skipped"] > 0
        else:  # the adapter's 3 steps: few-step runs leave the cache off (model/fast.py)
            assert fbc["blocks_skipped"] == 0 and both["blocks_skipped"] == 0 and fbc["ssim"] == 1.0


def test_ssim_closed_forms(bench):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert bench.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # Constant images: the structure term is C2/C2, the luminance term (2xy + C1) / (x² + y² + C1).
    x, y = np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert bench.ssim(x, y) == pytest.approx((2 * 100 * 140 + c1) / (100**2 + 140**2 + c1), rel=1e-9)
    noisy = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert 0 < bench.ssim(a, noisy) < 0.99 and bench.ssim(a, noisy) == pytest.approx(bench.ssim(noisy, a))
    assert bench.psnr_from_mse(bench.mse(a, a)) == math.inf
    assert bench.psnr_from_mse(bench.mse(x, y)) == pytest.approx(10 * math.log10(255**2 / 40**2))


def test_bad_arguments_are_refused(bench):
    for argv in (["--n-per-category", "0"], ["--seeds", "a"], ["--modes", "fbc 0.05"], ["--modes", "lossless,zz"],
                 ["--categories", "colour"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
