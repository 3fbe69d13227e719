"""A batch's scene specs and captions, drawn in this process or in a child process ahead of time.

On a GPU the training process's one Python thread both issues the step's kernels and draws the next
batch: after the encoders were compiled, a 256-image step on an H100 spent ~14 ms of its ~88 ms in
``SceneSampler.sample_batch`` and ``caption`` alone, with the GPU waiting on the host
(``bench/train_profile.py``, docs/training/run4-2026-11-21/profile-h100-after). Drawing is pure
Python over the pack's catalogue, so a child process can do it a few batches ahead; rendering stays
in the training process, which owns the pack's pixels on the GPU.

Both sources yield the same sequence for the same (pack, batch size, seed, zh_fraction, split, mix): the
child runs the very same ``Drafter``.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import random
from dataclasses import dataclass
from typing import Literal

from zaoxiang.errors import ZaoxiangError
from zaoxiang.training.data.captions import caption
from zaoxiang.training.data.pack import SpritePack
from zaoxiang.training.data.sampler import DEFAULT_MIX, SceneSampler, data_mix
from zaoxiang.training.data.scenes import SceneSpec

POLL_S = 5.0  # how long the consumer waits between checks that the child is still alive


class DataWorkerError(ZaoxiangError):
    """The data worker process died; the training run cannot get batches."""

    code = "data_worker_failed"


@dataclass(frozen=True)
class Draft:
    """One batch before rendering."""

    specs: list[SceneSpec]
    langs: list[str]  # "en" | "zh" per caption
    captions: list[str]


class Drafter:
    """Scene specs (``SceneSampler``) and their captions, one batch per ``next()``."""

    def __init__(
        self, pack: SpritePack, batch_size: int, seed: int, zh_fraction: float, split: Literal["train", "heldout"],
        mix: str = DEFAULT_MIX,
    ) -> None:
        self.pack = pack
        self.batch_size = batch_size
        self.zh_fraction = zh_fraction
        self.sampler = SceneSampler(pack, split=split, seed=seed, mix=mix)
        # A separate stream for captions, so caption changes never shift the scene sequence.
        self.caption_rng = random.Random(f"captions-{seed}")

    def __iter__(self) -> Drafter:
        return self

    def __next__(self) -> Draft:
        specs = self.sampler.sample_batch(self.batch_size)
        langs = ["zh" if self.caption_rng.random() < self.zh_fraction else "en" for _ in specs]
        captions = [caption(s, lang, self.caption_rng, self.pack) for s, lang in zip(specs, langs)]
        return Draft(specs, langs, captions)


def _produce(pack: SpritePack, args: tuple, out: mp.Queue, stop) -> None:  # runs in the child
    drafter = Drafter(pack, *args)
    while not stop.is_set():
        draft = next(drafter)
        while not stop.is_set():
            try:
                out.put(draft, timeout=0.5)
                break
            except queue.Full:
                continue


class PrefetchedDrafts:
    """The same drafts as ``Drafter``, made by a child process up to ``depth`` batches ahead.

    The child is started with ``spawn`` (the parent may hold CUDA state, which ``fork`` must not
    copy) and as a daemon, so it ends with the training process; ``close()`` ends it earlier.
    """

    def __init__(
        self, pack: SpritePack, batch_size: int, seed: int, zh_fraction: float, split: Literal["train", "heldout"],
        mix: str = DEFAULT_MIX, depth: int = 4,
    ) -> None:
        data_mix(mix)  # an unknown mix fails here, not as a dead child
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue(maxsize=depth)
        self._stop = ctx.Event()
        args = (batch_size, seed, zh_fraction, split, mix)
        self._proc = ctx.Process(target=_produce, args=(pack.catalog_only(), args, self._queue, self._stop),
                                 name="zaoxiang-data", daemon=True)
        self._proc.start()

    def __iter__(self) -> PrefetchedDrafts:
        return self

    def __next__(self) -> Draft:
        while True:
            try:
                return self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if not self._proc.is_alive():
                    raise DataWorkerError(f"the data worker process exited (code {self._proc.exitcode})") from None

    def close(self) -> None:
        self._stop.set()
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._queue.close()
