"""The step loop every training stage shares: steps, metrics log, progress bar, grids, checkpoints.

A stage supplies ``train_step(batch) -> loss`` (which advances ``step``; the loss a detached
0-dim tensor the loop reads once per log window), ``save()`` and a grid
hook; the loop owns the bookkeeping, so the ae/dit trainer and the turbo distiller log and
checkpoint the same way (``metrics.jsonl`` records: stage, step, loss, lr, samples_per_s, time).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch

from zaoxiang.training.distributed import DistContext, any_process


STOP_FILE = "STOP"  # in the run directory: end the run at the next log step (see LoopConfig.stop_file)


class Stage(Protocol):
    step: int
    stream: Iterator[Any]
    device: torch.device
    scheduler: Any  # torch LR scheduler: get_last_lr()

    def train_step(self, batch: Any) -> torch.Tensor: ...  # detached 0-dim loss, left on the device

    def save(self) -> Any: ...


@dataclass(frozen=True)
class LoopConfig:
    stage: str
    run_dir: Path
    steps: int
    batch_size: int
    log_every: int
    sample_every: int  # 0 = never
    ckpt_every: int  # 0 = only at the end (the caller saves)
    progress: bool
    # Data-parallel runs (training/distributed.py): batch_size is per process; only the main
    # process logs, draws grids and checkpoints (every process holds the same weights).
    dist: DistContext = DistContext()
    # Creating this file ends the run cleanly at the next log step (checked there, agreed between
    # processes): how a run on a rented GPU stops at a wall-clock point rather than a step count.
    stop_file: Path | None = None

    @property
    def is_main(self) -> bool:
        return self.dist.is_main


def run_loop(stage: Stage, cfg: LoopConfig, on_grid: Callable[[Any], None]) -> list[dict[str, Any]]:
    """Train ``stage`` up to ``cfg.steps`` total steps (resumed steps count); the metric records."""
    if cfg.is_main:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    bar = None
    if cfg.progress and cfg.is_main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=stage.step, desc=f"train {cfg.stage}", dynamic_ncols=True)
    # The window's loss stays a device tensor until a log step: reading it every step would stall
    # the host once per step and stop it queueing the next batch's work while the GPU computes.
    window_loss: torch.Tensor | float = 0.0
    window_n, window_t = 0, time.perf_counter()
    try:
        metrics = (cfg.run_dir / "metrics.jsonl").open("a", encoding="utf-8") if cfg.is_main else contextlib.nullcontext()
        with metrics as mlog:
            while stage.step < cfg.steps:
                batch = next(stage.stream)
                window_loss = window_loss + stage.train_step(batch)
                window_n += 1
                if bar is not None:
                    bar.update(1)
                log_now = stage.step % cfg.log_every == 0 or stage.step == cfg.steps
                save_now = cfg.is_main and (
                    (cfg.sample_every and stage.step % cfg.sample_every == 0)
                    or (cfg.ckpt_every and stage.step % cfg.ckpt_every == 0)
                )
                if log_now or save_now:
                    # Once per log window (and before any grid or checkpoint, which must not be
                    # drawn from or keep non-finite weights): the host waits for the GPU here.
                    mean_loss = float(window_loss) / window_n
                    if not math.isfinite(mean_loss):
                        raise FloatingPointError(
                            f"loss is {mean_loss} in the {window_n} steps up to step {stage.step}"
                        )
                if log_now:
                    elapsed = time.perf_counter() - window_t
                    rec = {
                        "stage": cfg.stage,
                        "step": stage.step,
                        "loss": mean_loss,
                        "lr": stage.scheduler.get_last_lr()[0],
                        "samples_per_s": window_n * cfg.batch_size * cfg.dist.world_size / max(elapsed, 1e-9),
                        "time": time.time(),
                    }
                    records.append(rec)
                    if mlog is not None:
                        mlog.write(json.dumps(rec) + "\n")
                        mlog.flush()
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", sps=f"{rec['samples_per_s']:.0f}")
                    window_loss, window_n, window_t = 0.0, 0, time.perf_counter()
                    if cfg.stop_file is not None and any_process(cfg.stop_file.exists(), cfg.dist, stage.device):
                        if cfg.is_main:
                            cfg.stop_file.unlink(missing_ok=True)  # honoured once: a later --resume trains on
                        break
                if cfg.is_main and cfg.sample_every and stage.step % cfg.sample_every == 0:
                    on_grid(batch)
                if cfg.is_main and cfg.ckpt_every and stage.step % cfg.ckpt_every == 0:
                    stage.save()
    finally:
        if bar is not None:
            bar.close()
    return records
