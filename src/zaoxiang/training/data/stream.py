"""TrainStream: an endless iterator of rendered, captioned training batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from zaoxiang.errors import InvalidRequest
from zaoxiang.training.data.drafts import Drafter, PrefetchedDrafts
from zaoxiang.training.data.pack import SpritePack
from zaoxiang.training.data.render import render_batch
from zaoxiang.training.data.sampler import DEFAULT_MIX
from zaoxiang.training.data.scenes import SceneSpec


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # (B, 3, size, size) float32 in [-1, 1], on the pack's device
    captions: list[str]
    langs: list[str]  # "en" | "zh" per caption
    specs: list[SceneSpec]


class TrainStream:
    """Batches of scenes (proportions: the data mix, sampler.DATA_MIXES; "v1": 30 % single emoji,
    50 % compositions, 20 % signs), captioned in Chinese with probability ``zh_fraction`` and English otherwise.
    The same (pack, seed, arguments) always yields the same sequence of batches, whether the specs
    and captions are drawn here (``workers=0``) or by a child process ahead of time (``workers=1``,
    drafts.PrefetchedDrafts: the GPU trainer's default, where drawing costs the step host time)."""

    def __init__(
        self,
        pack: SpritePack,
        batch_size: int,
        seed: int,
        zh_fraction: float = 0.5,
        split: Literal["train", "heldout"] = "train",
        size: int = 256,
        workers: int = 0,
        mix: str = DEFAULT_MIX,
    ) -> None:
        if batch_size < 1:
            raise InvalidRequest(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
        if not 0.0 <= zh_fraction <= 1.0:
            raise InvalidRequest(f"zh_fraction must be in [0, 1], got {zh_fraction}", field="zh_fraction")
        if workers not in (0, 1):
            # One child keeps the batch order (and so the run) reproducible; it draws ~5x faster
            # than a GPU step consumes (bench/train_profile.py's stream-alone pass).
            raise InvalidRequest(f"workers must be 0 or 1, got {workers}", field="workers")
        self.pack = pack
        self.batch_size = batch_size
        self.zh_fraction = zh_fraction
        self.size = size
        args = (pack, batch_size, seed, zh_fraction, split, mix)
        self.drafts: Drafter | PrefetchedDrafts = PrefetchedDrafts(*args) if workers else Drafter(*args)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        d = next(self.drafts)
        return Batch(images=render_batch(d.specs, self.pack, self.size), captions=d.captions, langs=d.langs,
                     specs=d.specs)

    def close(self) -> None:
        """End the data worker, if there is one."""
        if isinstance(self.drafts, PrefetchedDrafts):
            self.drafts.close()
