"""A synthetic stream of coloured shapes with bilingual captions, drawn on the fly with torch.

For smoke tests of the trainer (CPU tests, a first GPU run before a sprite pack is staged), never
for the shipped model. It yields batches with the same fields as ``zaoxiang.training.data.Batch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

COLOURS = {  # name: (English, Chinese, RGB in [0, 1])
    "red": ("red", "红色", (0.9, 0.1, 0.1)),
    "green": ("green", "绿色", (0.1, 0.75, 0.2)),
    "blue": ("blue", "蓝色", (0.15, 0.3, 0.95)),
    "yellow": ("yellow", "黄色", (0.95, 0.85, 0.1)),
    "white": ("white", "白色", (0.97, 0.97, 0.97)),
    "black": ("black", "黑色", (0.05, 0.05, 0.05)),
}
SHAPES = {"circle": "圆形", "square": "方块"}
SIDES = {"left": "左边", "right": "右边"}


@dataclass
class SyntheticBatch:
    images: torch.Tensor  # (B, 3, S, S) float32 in [-1, 1]
    captions: list[str]
    langs: list[str]
    specs: list[dict]


def caption(shape: str, colour: str, bg: str, side: str, lang: str) -> str:
    if lang == "zh":
        return f"{COLOURS[bg][1]}背景，{SIDES[side]}一个{COLOURS[colour][1]}{SHAPES[shape]}"
    return f"a {colour} {shape} on the {side}, {bg} background"


class SyntheticStream:
    def __init__(
        self, batch_size: int, image_size: int = 256, seed: int = 0, zh_fraction: float = 0.5,
        device: torch.device | str = "cpu",
    ) -> None:
        self.batch_size = batch_size
        self.image_size = image_size
        self.zh_fraction = zh_fraction
        self.device = torch.device(device)
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[SyntheticBatch]:
        while True:
            yield self.next_batch()

    def _pick(self, options: list[str]) -> str:
        return options[int(torch.randint(len(options), (1,), generator=self.gen))]

    def next_batch(self) -> SyntheticBatch:
        s = self.image_size
        ys, xs = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")  # (S, S)
        images, captions, langs, specs = [], [], [], []
        colours = list(COLOURS)
        for _ in range(self.batch_size):
            bg = self._pick(colours)
            colour = self._pick([c for c in colours if c != bg])
            shape, side = self._pick(list(SHAPES)), self._pick(list(SIDES))
            cx = 0.28 if side == "left" else 0.72
            cy = 0.5 + 0.1 * (float(torch.rand((), generator=self.gen)) - 0.5)
            r = 0.14 + 0.06 * float(torch.rand((), generator=self.gen))
            if shape == "circle":
                inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
            else:
                inside = ((xs - cx).abs() <= r) & ((ys - cy).abs() <= r)
            img = torch.tensor(COLOURS[bg][2]).view(3, 1, 1).expand(3, s, s).clone()
            img[:, inside] = torch.tensor(COLOURS[colour][2]).view(3, 1)
            lang = "zh" if float(torch.rand((), generator=self.gen)) < self.zh_fraction else "en"
            images.append(img * 2.0 - 1.0)
            captions.append(caption(shape, colour, bg, side, lang))
            langs.append(lang)
            specs.append({"shape": shape, "colour": colour, "background": bg, "side": side})
        return SyntheticBatch(torch.stack(images).to(self.device), captions, langs, specs)
