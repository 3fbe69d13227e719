"""Batched compositor: SceneSpecs -> images, with torch ops only, on the pack's device.

Hand-written rather than via a drawing library because it must run on the GPU inside the training
loop (thousands of images/s) and on CPU for tests, with identical layout maths in both places.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from zaoxiang.errors import InvalidRequest
from zaoxiang.model.transfer import to_device
from zaoxiang.training.data.lexicon import COLOURS
from zaoxiang.training.data.pack import SignKey, SpritePack
from zaoxiang.training.data.scenes import SceneObject, SceneSpec

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


def _hash_noise(xx: torch.Tensor, yy: torch.Tensor, seed: torch.Tensor | float) -> torch.Tensor:
    # Classic sin-hash: cheap, device-agnostic pseudo-random value per pixel for stars.
    # ``seed`` enters pre-multiplied (seed * 0.1234, see _scenes) so per-image seeds batch.
    v = torch.sin(xx * 12.9898 + yy * 78.233 + seed) * 43758.5453
    return v - torch.floor(v)


def _lerp(a: tuple[int, int, int], b: tuple[int, int, int], t: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) colour between a and b by t (..., H, W) in [0, 1]."""
    # Python scalars, not a device tensor of the colours: no host-to-device copy per background.
    return torch.stack([ca / 255 + (cb - ca) / 255 * t for ca, cb in zip(a, b)], dim=-3)


def _scenes(scene: str, seeds: Sequence[int], size: int, device: torch.device) -> torch.Tensor:
    """(n, 3, size, size) procedural backgrounds in [0, 1] of one scene kind, one per seed.

    Batched over the images of one kind (a few dozen launches per kind per batch, not per image:
    the GPU trainer's renderer is bound by launches)."""
    n = len(seeds)
    ys = torch.linspace(0, 1, size, device=device).view(size, 1).expand(size, size)  # (H, W)
    xs = torch.linspace(0, 1, size, device=device).view(1, size).expand(size, size)  # (H, W)
    # Per-image constants computed in Python doubles, then one copy: the same float32 values as
    # when each image was drawn alone with Python-scalar arguments.
    phase = to_device(torch.tensor([(s % 1000) / 1000 * 2 * math.pi for s in seeds]), device).view(n, 1, 1)
    sky_light, sky_dark = (150, 200, 250), (60, 120, 220)
    if scene in ("sky_grass", "desert", "sea"):
        horizon = {"sky_grass": 0.62, "desert": 0.6, "sea": 0.5}[scene]
        sky = _lerp(sky_dark, sky_light, (ys / horizon).clamp(0, 1))  # (3, H, W)
        if scene == "sea":
            ground = _lerp((40, 110, 180), (15, 50, 110), ((ys - horizon) / (1 - horizon)).clamp(0, 1))
            waves = 0.06 * (torch.sin(ys * 90 + torch.sin(xs * 12 + phase) * 2) > 0.85).float()  # (n, H, W)
            ground = ground + waves.unsqueeze(1)  # (n, 3, H, W)
            edge = torch.full_like(xs, horizon)  # (H, W)
        else:
            amp, freq = (0.02, 7) if scene == "sky_grass" else (0.05, 4)
            edge = horizon + amp * torch.sin(xs * freq * 2 * math.pi / 3 + phase)  # (n, H, W)
            lo, hi = ((90, 190, 70), (40, 120, 40)) if scene == "sky_grass" else ((240, 210, 140), (200, 160, 90))
            ground = _lerp(lo, hi, ((ys - horizon) / (1 - horizon)).clamp(0, 1))  # (3, H, W)
        below = (ys > edge).unsqueeze(-3)  # (n or 1, 1, H, W)
        return torch.where(below, ground, sky).expand(n, 3, size, size)
    if scene == "night_sky":
        sky = _lerp((5, 8, 30), (25, 35, 80), ys)  # (3, H, W)
        seed = to_device(torch.tensor([float(s % 9973) * 0.1234 for s in seeds]), device).view(n, 1, 1)
        noise = _hash_noise(xs * size, ys * size, seed)  # (n, H, W)
        stars = (noise > 0.996).float().unsqueeze(1)  # (n, 1, H, W)
        return sky * (1 - stars) + stars * 0.95
    if scene == "sunset":
        upper = _lerp((90, 60, 150), (240, 110, 100), (ys / 0.6).clamp(0, 1))
        lower = _lerp((240, 110, 100), (255, 190, 90), ((ys - 0.6) / 0.4).clamp(0, 1))
        return torch.where((ys > 0.6).unsqueeze(0), lower, upper).expand(n, 3, size, size)
    raise InvalidRequest(f"unknown background scene {scene!r}", field="background.scene")


def backgrounds(specs: Sequence[SceneSpec], size: int, device: torch.device) -> torch.Tensor:
    """(B, 3, size, size) backgrounds in [0, 1]."""
    # Colours gathered in Python and copied once (per-image tensor ops cost host time per image).
    ends = [[0, 0, 0, 0, 0, 0]] * len(specs)  # top RGB, bottom RGB (0-255)
    scenes: dict[str, list[int]] = defaultdict(list)
    for i, spec in enumerate(specs):
        bg = spec.background
        if bg.kind == "scene":
            scenes[bg.scene].append(i)
        else:
            ends[i] = [*_RGB[bg.colours[0]], *_RGB[bg.colours[-1]]]
    ends_t = to_device(torch.tensor(ends, dtype=torch.float32), device) / 255  # (B, 6)
    top, bottom = ends_t[:, :3], ends_t[:, 3:]
    t = torch.linspace(0, 1, size, device=device).view(1, 1, size, 1)  # (1, 1, H, 1)
    out = (top.view(-1, 3, 1, 1) + (bottom - top).view(-1, 3, 1, 1) * t).expand(-1, -1, -1, size).contiguous()
    for scene, idxs in scenes.items():
        drawn = _scenes(scene, [specs[i].background.seed for i in idxs], size, device)  # (n, 3, H, W)
        out.index_copy_(0, to_device(torch.tensor(idxs, dtype=torch.long), device), drawn.contiguous())
    return out  # (B, 3, H, W)


def _mip_level(src_h: int, src_w: int, w: int, h: int) -> int:
    """How many 2x box-filter halvings bring a (src_h, src_w) sprite to within 2x of (h, w)."""
    level = 0
    while (src_w >> level) >= 2 * w and (src_h >> level) >= 2 * h:
        level += 1
    return level


def _premultiplied(table: torch.Tensor, rows: torch.Tensor, level: int) -> torch.Tensor:
    """(n, 4, S/2^level, S/2^level) premultiplied RGBA in [0, 1] of ``table``'s ``rows``."""
    rgba = table.index_select(0, rows).float() / 255  # (n, 4, S, S)
    # Premultiply before resizing so transparent pixels do not bleed dark fringes.
    rgba = torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], dim=1)
    # Box-filter down by powers of two to within 2x of the target, then plain bilinear: as
    # alias-free as antialias=True for these sizes and several times cheaper on CPU.
    for _ in range(level):
        rgba = F.avg_pool2d(rgba, 2)
    return rgba


def _composite_boxes(canvas: torch.Tensor, placed: list[tuple[int, Box]], pack: SpritePack) -> None:
    """Draw ``placed`` onto ``canvas`` (B, 3, H, W) box by box: touches only each box's pixels, so
    it is the cheaper path on a CPU, where a launch costs little."""
    size = canvas.shape[-1]
    groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for i, (_, box) in enumerate(placed):
        groups[(box.source, box.w, box.h)].append(i)
    resized: dict[int, torch.Tensor] = {}
    # Every group's table rows in one host-to-device copy (see model/transfer.py).
    order = [i for idxs in groups.values() for i in idxs]
    all_rows = to_device(torch.tensor([placed[i][1].row for i in order], dtype=torch.long), canvas.device)
    start = 0
    for (source, w, h), idxs in groups.items():
        table = pack.sprites if source == "sprite" else pack.signs
        rows = all_rows[start:start + len(idxs)]
        start += len(idxs)
        level = _mip_level(table.shape[-2], table.shape[-1], w, h)
        small = F.interpolate(_premultiplied(table, rows, level), size=(h, w), mode="bilinear",
                              align_corners=False)  # (n, 4, h, w)
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


def _composite_layers(canvas: torch.Tensor, placed: list[tuple[int, Box]], pack: SpritePack) -> None:
    """Draw ``placed`` onto ``canvas`` (B, 3, H, W) in passes: pass k draws every image's k-th box
    at once, one ``grid_sample`` per (source, mip level) over whole canvases.

    The same pixels as ``_composite_boxes`` (bilinear at the same source coordinates, clamped at
    the sprite's border like ``F.interpolate``), in a few hundred launches per batch instead of
    several per box: on a GPU the box-by-box path spends its time launching kernels."""
    device, size = canvas.device, canvas.shape[-1]
    depth: dict[int, int] = defaultdict(int)
    entries = []  # (source, level, layer, image, box)
    for b, box in placed:
        table = pack.sprites if box.source == "sprite" else pack.signs
        entries.append((box.source, _mip_level(table.shape[-2], table.shape[-1], box.w, box.h), depth[b], b, box))
        depth[b] += 1
    # Sorted by (source, level, layer): a (source, level) group is one contiguous gather and
    # pooling, a (group, layer) run one contiguous slice of it.
    entries.sort(key=lambda e: e[:3])
    params = to_device(torch.tensor([[b, box.x, box.y, box.w, box.h, box.row] for *_, b, box in entries],
                                    dtype=torch.long), device)  # (N, 6)
    group_start: dict[tuple[str, int], int] = {}
    runs: dict[int, list[tuple[str, int, int, int]]] = defaultdict(list)  # layer -> (source, level, a, c)
    for i, (source, level, layer, _, _) in enumerate(entries):
        group_start.setdefault((source, level), i)
        run = runs[layer]
        if run and run[-1][:2] == (source, level) and run[-1][3] == i:
            run[-1] = (source, level, run[-1][2], i + 1)
        else:
            run.append((source, level, i, i + 1))
    mips = {}
    for (source, level), g0 in group_start.items():
        g1 = g0 + sum(1 for e in entries if e[:2] == (source, level))
        table = pack.sprites if source == "sprite" else pack.signs
        mips[(source, level)] = _premultiplied(table, params[g0:g1, 5], level)  # (n, 4, s, s)
    pix = torch.arange(size, device=device, dtype=torch.float32) + 0.5  # (S,) pixel centres
    for layer in sorted(runs):
        for source, level, a, c in runs[layer]:
            p = params[a:c]  # (m, 6): image, x, y, w, h, row
            x, y, w, h = p[:, 1:5].float().unbind(1)  # (m,) each
            # Normalised sampling coordinates (align_corners=False): pixel u of a box of width w
            # reads source x (u + 0.5) * S / w - 0.5, the coordinate F.interpolate uses.
            gx = 2 * (pix[None] - x[:, None]) / w[:, None] - 1  # (m, W)
            gy = 2 * (pix[None] - y[:, None]) / h[:, None] - 1  # (m, H)
            grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (m, H, W, 2)
            g0 = group_start[(source, level)]
            src = mips[(source, level)][a - g0:c - g0]  # (m, 4, s, s)
            drawn = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
            inside = ((gx > -1) & (gx < 1))[:, None, None, :] & ((gy > -1) & (gy < 1))[:, None, :, None]
            drawn = drawn * inside  # (m, 4, H, W), zero outside each box
            ids = p[:, 0]
            under = canvas.index_select(0, ids)  # (m, 3, H, W)
            canvas.index_copy_(0, ids, under * (1 - drawn[:, 3:4]) + drawn[:, :3])


def render_batch(
    specs: Sequence[SceneSpec], pack: SpritePack, size: int = 256, method: Literal["auto", "boxes", "layers"] = "auto",
) -> torch.Tensor:
    """(B, 3, size, size) float32 in [-1, 1] on ``pack.device``; a pure function of the specs.

    ``method``: how sprites are drawn — ``boxes`` one box at a time (cheap on a CPU), ``layers``
    every image's k-th box at once (few launches, for a GPU); ``auto`` picks by device. Both give
    the same pixels up to float rounding."""
    if not specs:
        raise InvalidRequest("render_batch needs at least one spec", field="specs")
    if not 16 <= size <= 2048:
        raise InvalidRequest(f"size must be between 16 and 2048, got {size}", field="size")
    if method not in ("auto", "boxes", "layers"):
        raise InvalidRequest(f"method must be auto, boxes or layers, got {method!r}", field="method")
    device = pack.device
    canvas = backgrounds(specs, size, device)  # (B, 3, H, W)
    placed: list[tuple[int, Box]] = [(b, box) for b, spec in enumerate(specs) for box in layout(spec, pack, size)]
    if placed:
        if method == "layers" or (method == "auto" and device.type == "cuda"):
            _composite_layers(canvas, placed, pack)
        else:
            _composite_boxes(canvas, placed, pack)
    return canvas.clamp_(0, 1).mul_(2).sub_(1)
