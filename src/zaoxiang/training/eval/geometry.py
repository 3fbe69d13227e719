"""Where a SceneSpec says things are, in fractions of the canvas, for cropping and checking.

The boxes come from the data builder's own layout maths (``render.region`` / ``render.cells``), so
evaluation asks about exactly the places the captions describe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zaoxiang.training.data.render import SIGN_WIDTH, cells, region
from zaoxiang.training.data.scenes import SceneSpec

Frac = tuple[float, float, float, float]  # (x0, y0, x1, y1) in [0, 1]


@dataclass(frozen=True)
class ObjectPlace:
    concept_id: str
    count: int
    position: str
    region: Frac  # the part of the canvas the object's position owns in this layout
    cells: tuple[Frac, ...]  # one per copy


def object_places(spec: SceneSpec) -> list[ObjectPlace]:
    positions = frozenset(spec.positions)
    out = []
    for obj in spec.objects:
        reg = region(obj.position, positions)
        out.append(ObjectPlace(obj.concept_id, obj.count, obj.position, reg, tuple(cells(obj, reg))))
    return out


def sign_box(spec: SceneSpec, aspect: float = 2.0) -> Frac:
    """The sign's box; ``aspect`` is the sign sprite's width / height (192 / 96 in the pack)."""
    sign = spec.sign
    if sign is None:
        raise ValueError("spec has no sign")
    x0, y0, x1, y1 = region(sign.position, frozenset({sign.position}))
    w = (x1 - x0) * SIGN_WIDTH[sign.size]
    h = w / aspect
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def square_around(box: Frac, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> Frac:
    """A square of side min(w, h) * scale centred on ``box`` (moved by ``shift`` sides)."""
    x0, y0, x1, y1 = box
    side = min(x1 - x0, y1 - y0) * scale
    cx, cy = (x0 + x1) / 2 + shift[0] * side, (y0 + y1) / 2 + shift[1] * side
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def crop(images: torch.Tensor, boxes: list[Frac], rows: list[int], size: int) -> torch.Tensor:
    """(N, C, size, size) crops of ``images`` (B, C, H, W) at fractional ``boxes`` of image ``rows``.

    Out-of-canvas parts are filled by border replication (grid_sample "border"), which on these
    flat backgrounds looks like more background rather than a black edge.
    """
    if not boxes:
        return images.new_zeros(0, images.shape[1], size, size)
    b = torch.tensor(boxes, dtype=torch.float32, device=images.device)  # (N, 4)
    lin = torch.linspace(0, 1, size, device=images.device)  # (S,)
    xs = b[:, 0:1] + (b[:, 2:3] - b[:, 0:1]) * lin  # (N, S)
    ys = b[:, 1:2] + (b[:, 3:4] - b[:, 1:2]) * lin  # (N, S)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1) * 2 - 1  # (N, S, S, 2)
    src = images[torch.tensor(rows, device=images.device)]  # (N, C, H, W)
    # Downscale first with antialiasing so a large crop does not alias when sampled at ``size``.
    side = max(b[:, 2].sub(b[:, 0]).max().item(), 1e-3) * images.shape[-1]
    if side > 2 * size:
        factor = size / side
        h, w = max(size, round(images.shape[-2] * factor)), max(size, round(images.shape[-1] * factor))
        src = F.interpolate(src, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)
