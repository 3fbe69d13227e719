"""TrainStream: an endless iterator of rendered, captioned training batches."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from zaoxiang.errors import InvalidRequest
from zaoxiang.training.data.captions import caption
from zaoxiang.training.data.pack import SpritePack
from zaoxiang.training.data.render import render_batch
from zaoxiang.training.data.sampler import SceneSampler
from zaoxiang.training.data.scenes import SceneSpec


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # (B, 3, size, size) float32 in [-1, 1], on the pack's device
    captions: list[str]
    langs: list[str]  # "en" | "zh" per caption
    specs: list[SceneSpec]


class TrainStream:
    """Batches of scenes (proportions: sampler.KIND_WEIGHTS — 30 % single emoji, 50 % compositions,
    20 % signs), captioned in Chinese with probability ``zh_fraction`` and English otherwise.
    The same (pack, seed, arguments) always yields the same sequence of batches."""

    def __init__(
        self,
        pack: SpritePack,
        batch_size: int,
        seed: int,
        zh_fraction: float = 0.5,
        split: Literal["train", "heldout"] = "train",
        size: int = 256,
    ) -> None:
        if batch_size < 1:
            raise InvalidRequest(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
        if not 0.0 <= zh_fraction <= 1.0:
            raise InvalidRequest(f"zh_fraction must be in [0, 1], got {zh_fraction}", field="zh_fraction")
        self.pack = pack
        self.batch_size = batch_size
        self.zh_fraction = zh_fraction
        self.size = size
        self.sampler = SceneSampler(pack, split=split, seed=seed)
        # A separate stream for captions, so caption changes never shift the scene sequence.
        self.caption_rng = random.Random(f"captions-{seed}")

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        specs = self.sampler.sample_batch(self.batch_size)
        langs = ["zh" if self.caption_rng.random() < self.zh_fraction else "en" for _ in specs]
        captions = [caption(s, lang, self.caption_rng, self.pack) for s, lang in zip(specs, langs)]
        return Batch(images=render_batch(specs, self.pack, self.size), captions=captions, langs=langs, specs=specs)
