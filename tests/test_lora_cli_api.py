"""LoRA through the front ends: ``generate --lora FILE[:SCALE]`` / ``--turbo``, and the native API
(``GET /v1/models`` lists LoRAs; an unknown name is a 422 naming ``loras.0.name``)."""

import httpx
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.service_support import fake_runner, live_server, make_settings
from zaoxiang.api.app import default_runner
from zaoxiang.cli import main
from zaoxiang.engine.lora import LoraLibrary
from zaoxiang.engine.metadata import read_metadata
from zaoxiang.settings import Settings


def _flux_lora(path, seed):
    gen = torch.Generator().manual_seed(seed)
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(4, 32, generator=gen) * 0.3,
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(32, 4, generator=gen) * 0.3},
              str(path))
    return path


def test_generate_with_lora_files_and_turbo(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ZAOXIANG_LORA_DIR", raising=False)
    folder = tiny_model_dir("flux")
    lora = _flux_lora(tmp_path / "my:style.safetensors", 1)  # a ':' in the name is not a scale
    common = ["generate", "a red apple", "--model", str(folder), "--size", "64x64", "--steps", "2", "--seed", "1",
              "--quiet", "--device", "cpu"]
    assert main([*common, "-o", str(tmp_path / "base.png")]) == 0
    assert main([*common, "--lora", f"{lora}:0.8", "--lora", str(lora), "-o", str(tmp_path / "lora.png")]) == 0
    base, styled = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("base", "lora"))
    assert not np.array_equal(base, styled)
    meta = read_metadata((tmp_path / "lora.png").read_bytes())["zaoxiang"]
    loras = meta["request"]["loras"]
    assert [(x["name"], x["scale"]) for x in loras] == [("my:style", 0.8), ("my:style", 1.0)]
    assert len(loras[0]["sha256"]) == 64
    capsys.readouterr()
    assert main([*common, "--lora", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x.png")]) == 1
    assert "missing.safetensors" in capsys.readouterr().err
    assert main([*common, "--turbo", "-o", str(tmp_path / "x.png")]) == 1
    assert "turbo" in capsys.readouterr().err


def test_api_lists_loras_and_refuses_unknown_names(tmp_path):
    loras = tmp_path / "loras"
    loras.mkdir()
    _flux_lora(loras / "ink.safetensors", 2)
    assert [i.name for i in default_runner(Settings.load(lora_dir=loras, builtin=False)).loras.list()] == ["ink"]
    runner = fake_runner(tmp_path)
    runner.loras = LoraLibrary(loras)
    with live_server(make_settings(tmp_path / "data"), runner) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        models = c.get("/v1/models").json()
        assert [x["name"] for x in models["loras"]] == ["ink"] and models["data"][0]["turbo"] is False
        r = c.post("/v1/jobs", json={"prompt": "apple", "loras": [{"name": "../ink"}]})
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["field"] == "loras.0.name" and "ink" in err["message"]
        r = c.post("/v1/jobs", json={"prompt": "apple", "loras": [{"name": "ink", "scale": 0.5}]})
        assert r.status_code in (200, 202)
