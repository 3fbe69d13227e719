"""Memory plans: which mode does what on which device, and the tiling decision (no models needed)."""

from __future__ import annotations

import logging

import pytest
import torch

from zaoxiang.engine.memory import decode_with_memory_plan, place_pipeline, plan_memory

CPU, GPU = torch.device("cpu"), torch.device("cuda:0")
THRESHOLD = 1536 * 1536


def test_auto_tiles_only_above_threshold():
    plan = plan_memory("auto", GPU, THRESHOLD)
    assert plan.offload == "none" and plan.retry_tiled_on_oom
    assert plan.tile_for(1536, 1536)[0] is False
    tiled, why = plan.tile_for(2048, 1536)
    assert tiled and str(THRESHOLD) in why


@pytest.mark.parametrize(
    "mode, offload, always_tiles, retries",
    [("none", "none", False, False), ("vae_tiling", "none", True, False),
     ("model_offload", "model", False, True), ("sequential_offload", "sequential", False, True)],
)
def test_modes_on_gpu(mode, offload, always_tiles, retries):
    plan = plan_memory(mode, GPU, THRESHOLD)
    assert plan.offload == offload and plan.retry_tiled_on_oom is retries
    assert plan.tile_for(64, 64)[0] is always_tiles
    assert mode in plan.reason


@pytest.mark.parametrize("mode", ["model_offload", "sequential_offload"])
def test_offload_is_ignored_on_cpu_with_a_reason(mode):
    plan = plan_memory(mode, CPU, THRESHOLD)
    assert plan.offload == "none" and "ignored" in plan.reason


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError):
        plan_memory("everything", CPU, THRESHOLD)


class FakeVae:
    def __init__(self):
        self.use_tiling = False
        self.use_slicing = False

    def enable_tiling(self):
        self.use_tiling = True

    def disable_tiling(self):
        self.use_tiling = False

    def enable_slicing(self):
        self.use_slicing = True


class FakePipe:
    def __init__(self):
        self.vae = FakeVae()
        self.calls = []

    def to(self, device):
        self.calls.append(("to", str(device)))

    def enable_model_cpu_offload(self, device):
        self.calls.append(("model_offload", str(device)))

    def enable_sequential_cpu_offload(self, device):
        self.calls.append(("sequential_offload", str(device)))


@pytest.mark.parametrize(
    "mode, device, call",
    [("auto", CPU, ("to", "cpu")), ("model_offload", CPU, ("to", "cpu")),
     ("model_offload", GPU, ("model_offload", "cuda:0")), ("sequential_offload", GPU, ("sequential_offload", "cuda:0"))],
)
def test_place_pipeline_logs_and_places(mode, device, call, caplog):
    pipe = FakePipe()
    with caplog.at_level(logging.INFO, logger="zaoxiang.engine.memory"):
        place_pipeline(pipe, plan_memory(mode, device, THRESHOLD), device)
    assert pipe.calls == [call]
    assert any("memory plan" in r.getMessage() and mode in r.getMessage() for r in caplog.records)


def test_vae_tiling_mode_also_slices():
    pipe = FakePipe()
    place_pipeline(pipe, plan_memory("vae_tiling", CPU, THRESHOLD), CPU)
    assert pipe.vae.use_slicing


def test_oom_retry_tiles_once_then_restores():
    vae, seen = FakeVae(), []

    def decode():
        seen.append(vae.use_tiling)
        if not vae.use_tiling:
            raise torch.OutOfMemoryError("simulated")
        return torch.zeros(1)

    decode_with_memory_plan(decode, vae, plan_memory("auto", GPU, THRESHOLD), 1024, 1024)
    assert seen == [False, True] and vae.use_tiling is False


def test_oom_when_already_tiled_propagates():
    vae = FakeVae()

    def decode():
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(torch.OutOfMemoryError):
        decode_with_memory_plan(decode, vae, plan_memory("vae_tiling", GPU, THRESHOLD), 64, 64)
    assert vae.use_tiling is False
