"""Batched compositor: SceneSpecs -> images, with torch ops only, on the pack's device.

Hand-written rather than via a drawing library because it must run on the GPU inside the training
loop (thousands of images/s) and on CPU for tests, with identical layout maths in both places.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zaoxiang.errors import InvalidRequest
from zaoxiang.model.transfer import to_device
from zaoxiang.training.data.lexicon import COLOURS
from zaoxiang.training.data.pack import SignKey, SpritePack
from zaoxiang.training.data.scenes import Background, SceneObject, SceneSpec

_RGB = {c.id: c.rgb for c in COLOURS}
SIZE_FACTOR = {"small": 0.5, "medium": 0.72, "large": 0.95}
SIGN_WIDTH = {"small": 0.5, "medium": 0.7, "large": 0.9}
_REGION_MARGIN = 0.03  # keeps sprites off the image border and off each other


@dataclass(frozen=True)
class Box:
    """A placed sprite in pixels: source tensor ("sprite" | "sign"), row, top-left corner, size."""

    source: str
    row: int
    x: int
    y: int
    w: int
    h: int


def region(position: str, positions: frozenset[str]) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in [0, 1] of the canvas part that ``position`` owns in this layout."""
    if positions == {"left", "center", "right"}:
        x0 = {"left": 0.0, "center": 1 / 3, "right": 2 / 3}[position]
        box = (x0, 0.0, x0 + 1 / 3, 1.0)
    else:
        box = {
            "center": (0.0, 0.0, 1.0, 1.0), "left": (0.0, 0.0, 0.5, 1.0), "right": (0.5, 0.0, 1.0, 1.0),
            "top": (0.0, 0.0, 1.0, 0.5), "bottom": (0.0, 0.5, 1.0, 1.0),
        }[position]
    m = _REGION_MARGIN
    return (box[0] + m, box[1] + m, box[2] - m, box[3] - m)


def cells(obj: SceneObject, reg: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    """One cell per copy of ``obj`` inside its region, following its arrangement."""
    x0, y0, x1, y1 = reg
    w, h = x1 - x0, y1 - y0
    n = obj.count
    if n == 1:
        return [reg]
    if obj.arrangement == "grid" and n == 4:
        return [(x0 + i * w / 2, y0 + j * h / 2, x0 + (i + 1) * w / 2, y0 + (j + 1) * h / 2) for j in (0, 1) for i in (0, 1)]
    if obj.arrangement == "grid" and n == 3:  # triangle: two above, one centred below
        top = [(x0 + i * w / 2, y0, x0 + (i + 1) * w / 2, y0 + h / 2) for i in (0, 1)]
        return top + [(x0 + w / 4, y0 + h / 2, x0 + 3 * w / 4, y1)]
    if obj.arrangement == "column" or (obj.arrangement == "grid" and h > w):
        return [(x0, y0 + i * h / n, x1, y0 + (i + 1) * h / n) for i in range(n)]
    return [(x0 + i * w / n, y0, x0 + (i + 1) * w / n, y1) for i in range(n)]


def layout(spec: SceneSpec, pack: SpritePack, size: int) -> list[Box]:
    """Every sprite of ``spec`` placed in pixels, in drawing order."""
    if spec.kind == "sign":
        sign = spec.sign
        row = pack.sign_index.get(SignKey(sign.text, sign.lang, sign.style))
        if row is None:
            raise InvalidRequest(f"sign {sign.text!r} ({sign.style}) is not in the sprite pack", field="sign")
        x0, y0, x1, y1 = region(sign.position, frozenset({sign.position}))
        sh, sw = pack.signs.shape[-2:]
        w = (x1 - x0) * SIGN_WIDTH[sign.size]
        h = w * sh / sw
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return [Box("sign", row, round((cx - w / 2) * size), round((cy - h / 2) * size), round(w * size), round(h * size))]

    positions = frozenset(spec.positions)
    boxes = []
    for obj in spec.objects:
        row = pack.sprite_index.get((obj.concept_id, spec.style))
        if row is None:
            raise InvalidRequest(f"concept {obj.concept_id} has no {spec.style} sprite in the pack", field="objects")
        for cx0, cy0, cx1, cy1 in cells(obj, region(obj.position, positions)):
            side = min(cx1 - cx0, cy1 - cy0) * SIZE_FACTOR[obj.size]
            free_x, free_y = (cx1 - cx0) - side, (cy1 - cy0) - side
            x = cx0 + free_x / 2 * (1 + obj.jitter[0])
            y = cy0 + free_y / 2 * (1 + obj.jitter[1])
            px = max(1, round(side * size))
            boxes.append(Box("sprite", row, round(x * size), round(y * size), px, px))
    return boxes


def _hash_noise(xx: torch.Tensor, yy: torch.Tensor, seed: float) -> torch.Tensor:
    # Classic sin-hash: cheap, device-agnostic pseudo-random value per pixel for stars.
    v = torch.sin(xx * 12.9898 + yy * 78.233 + seed * 0.1234) * 43758.5453
    return v - torch.floor(v)


def _lerp(a: tuple[int, int, int], b: tuple[int, int, int], t: torch.Tensor) -> torch.Tensor:
    """(3, H, W) colour between a and b by t (H, W) in [0, 1]."""
    # Python scalars, not a device tensor of the colours: no host-to-device copy per background.
    return torch.stack([ca / 255 + (cb - ca) / 255 * t for ca, cb in zip(a, b)])


def _scene(bg: Background, size: int, device: torch.device) -> torch.Tensor:
    """(3, size, size) procedural background in [0, 1]."""
    ys = torch.linspace(0, 1, size, device=device).view(size, 1).expand(size, size)  # (H, W)
    xs = torch.linspace(0, 1, size, device=device).view(1, size).expand(size, size)  # (H, W)
    phase = (bg.seed % 1000) / 1000 * 2 * math.pi
    sky_light, sky_dark = (150, 200, 250), (60, 120, 220)
    if bg.scene in ("sky_grass", "desert", "sea"):
        horizon = {"sky_grass": 0.62, "desert": 0.6, "sea": 0.5}[bg.scene]
        sky = _lerp(sky_dark, sky_light, (ys / horizon).clamp(0, 1))
        if bg.scene == "sea":
            ground = _lerp((40, 110, 180), (15, 50, 110), ((ys - horizon) / (1 - horizon)).clamp(0, 1))
            waves = 0.06 * (torch.sin(ys * 90 + torch.sin(xs * 12 + phase) * 2) > 0.85).float()
            ground = ground + waves.unsqueeze(0)
            edge = torch.full_like(xs, horizon)
        else:
            amp, freq = (0.02, 7) if bg.scene == "sky_grass" else (0.05, 4)
            edge = horizon + amp * torch.sin(xs * freq * 2 * math.pi / 3 + phase)
            lo, hi = ((90, 190, 70), (40, 120, 40)) if bg.scene == "sky_grass" else ((240, 210, 140), (200, 160, 90))
            ground = _lerp(lo, hi, ((ys - horizon) / (1 - horizon)).clamp(0, 1))
        return torch.where((ys > edge).unsqueeze(0), ground, sky)
    if bg.scene == "night_sky":
        sky = _lerp((5, 8, 30), (25, 35, 80), ys)
        n = _hash_noise(xs * size, ys * size, float(bg.seed % 9973))
        stars = (n > 0.996).float().unsqueeze(0)  # (1, H, W)
        return sky * (1 - stars) + stars * 0.95
    if bg.scene == "sunset":
        upper = _lerp((90, 60, 150), (240, 110, 100), (ys / 0.6).clamp(0, 1))
        lower = _lerp((240, 110, 100), (255, 190, 90), ((ys - 0.6) / 0.4).clamp(0, 1))
        return torch.where((ys > 0.6).unsqueeze(0), lower, upper)
    raise InvalidRequest(f"unknown background scene {bg.scene!r}", field="background.scene")


def backgrounds(specs: Sequence[SceneSpec], size: int, device: torch.device) -> torch.Tensor:
    """(B, 3, size, size) backgrounds in [0, 1]."""
    top = torch.zeros(len(specs), 3)
    bottom = torch.zeros(len(specs), 3)
    scenes: list[int] = []
    for i, spec in enumerate(specs):
        bg = spec.background
        if bg.kind == "scene":
            scenes.append(i)
            continue
        top[i] = torch.tensor(_RGB[bg.colours[0]], dtype=torch.float32) / 255
        bottom[i] = torch.tensor(_RGB[bg.colours[-1]], dtype=torch.float32) / 255
    top, bottom = to_device(top, device), to_device(bottom, device)
    t = torch.linspace(0, 1, size, device=device).view(1, 1, size, 1)  # (1, 1, H, 1)
    out = (top.view(-1, 3, 1, 1) + (bottom - top).view(-1, 3, 1, 1) * t).expand(-1, -1, -1, size).contiguous()
    for i in scenes:
        out[i] = _scene(specs[i].background, size, device)
    return out  # (B, 3, H, W)


def render_batch(specs: Sequence[SceneSpec], pack: SpritePack, size: int = 256) -> torch.Tensor:
    """(B, 3, size, size) float32 in [-1, 1] on ``pack.device``; a pure function of the specs."""
    if not specs:
        raise InvalidRequest("render_batch needs at least one spec", field="specs")
    if not 16 <= size <= 2048:
        raise InvalidRequest(f"size must be between 16 and 2048, got {size}", field="size")
    device = pack.device
    canvas = backgrounds(specs, size, device)  # (B, 3, H, W)

    placed: list[tuple[int, Box]] = [(b, box) for b, spec in enumerate(specs) for box in layout(spec, pack, size)]
    # Resize all sprites of one source and pixel size in one interpolate call (few distinct sizes).
    groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for i, (_, box) in enumerate(placed):
        groups[(box.source, box.w, box.h)].append(i)
    resized: dict[int, torch.Tensor] = {}
    # Every group's table rows in one host-to-device copy (one small copy per group would each
    # wait for the GPU's queue to drain: see model/transfer.py).
    order = [i for idxs in groups.values() for i in idxs]
    all_rows = to_device(torch.tensor([placed[i][1].row for i in order], dtype=torch.long), device)  # (n_boxes,)
    start = 0
    for (source, w, h), idxs in groups.items():
        table = pack.sprites if source == "sprite" else pack.signs
        rows = all_rows[start:start + len(idxs)]
        start += len(idxs)
        rgba = table.index_select(0, rows).float() / 255  # (n, 4, S, S)
        # Premultiply before resizing so transparent pixels do not bleed dark fringes.
        rgba = torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], dim=1)
        # Box-filter down by powers of two to within 2x of the target, then plain bilinear: as
        # alias-free as antialias=True for these sizes and several times cheaper on CPU.
        while rgba.shape[-1] >= 2 * w and rgba.shape[-2] >= 2 * h:
            rgba = F.avg_pool2d(rgba, 2)
        small = F.interpolate(rgba, size=(h, w), mode="bilinear", align_corners=False)  # (n, 4, h, w)
        for k, i in enumerate(idxs):
            resized[i] = small[k]

    for i, (b, box) in enumerate(placed):  # drawing order: later objects on top
        x0, y0 = max(box.x, 0), max(box.y, 0)
        x1, y1 = min(box.x + box.w, size), min(box.y + box.h, size)
        if x1 <= x0 or y1 <= y0:
            continue
        src = resized[i][:, y0 - box.y:y1 - box.y, x0 - box.x:x1 - box.x]  # (4, h', w')
        dst = canvas[b, :, y0:y1, x0:x1]  # (3, h', w') view
        dst.mul_(1 - src[3:4]).add_(src[:3])
    return canvas.clamp_(0, 1).mul_(2).sub_(1)
