"""bench/train_profile.py on CPU (tiny preset, synthetic pack, stub e5): every phase is timed and
counted, the phased step is the trainer's step, and profiler events land in the right phase."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch.autograd import DeviceType

from tests._bench import bench_module

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py

CPU_ARGS = ["--preset", "tiny", "--pack", "synthetic", "--stub-text", "--no-compile", "--device", "cpu"]
# Every phase of a single-process step (allreduce exists only under torchrun).
EXPECTED = ("sample", "caption", "render", "ae_encode", "text_tokenize", "text_forward", "dit_inputs", "dit_forward",
            "dit_backward", "clip", "optimizer", "ema")  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    yield from bench_module("train_profile")


def test_end_to_end_cpu(bench, tmp_path):
    out = tmp_path / "profile"
    argv = CPU_ARGS + ["--warmup", "1", "--steps", "2", "--profile-steps", "1", "--free-steps", "2",
                       "--out-dir", str(out)]
    assert bench.main(argv) == 0
    md = (out / "train-profile.md").read_text(encoding="utf-8")
    data = json.loads((out / "train-profile.json").read_text(encoding="utf-8"))

    phases = {p["name"]: p for p in data["phases"]}
    assert set(phases) == set(EXPECTED)  # no all-reduce in one process
    for name in EXPECTED:
        assert phases[name]["wall_ms"] > 0 and phases[name]["host_ms"] > 0, name
        assert f"| {name} |" in md
        assert len(data["raw_wall_ms"][name]) == 2  # one per timed step
    for name in ("render", "ae_encode", "text_forward", "dit_forward", "dit_backward", "optimizer"):
        assert phases[name]["ops"] > 0, name
    assert phases["sample"]["ops"] == 0  # pure Python: the op count is not a constant
    assert phases["dit_backward"]["ops"] > phases["dit_inputs"]["ops"]
    assert sum(p["share"] for p in data["phases"]) == pytest.approx(1.0)
    assert data["phase_sum_ms"] == pytest.approx(sum(p["wall_ms"] for p in data["phases"]))

    modes = [f["mode"] for f in data["free_running"]]
    assert [m.split(":")[0] for m in modes] == ["loop", "trainer only", "stream only"]
    assert all(f["samples_per_s"] > 0 and f["steps"] == 2 for f in data["free_running"])
    assert data["samples_per_s"] == data["free_running"][0]["samples_per_s"] > 0
    assert data["config"]["compile"] is False and data["config"]["batch_size"] == 8
    assert "samples/s" in md


def test_phased_step_is_the_trainer_step(bench, tmp_path):
    """Same state in, same loss and weights out: the phases replay train_step(next(stream)) and
    nothing else (a phase that drifted from trainer.py would change the numbers here)."""
    args = bench.parse_args(CPU_ARGS + ["--out-dir", str(tmp_path)])
    a, b = bench.build(args), bench.build(args)
    for _ in range(2):  # the second step runs with optimizer state and a warmed EMA
        loss_a = bench.phased_step(a, bench.PhaseClock(a.device))
        loss_b = b.trainer.train_step(next(b.stream))
        assert torch.equal(loss_a, loss_b)
    assert a.trainer.step == b.trainer.step == 2
    for (name, pa), pb in zip(a.trainer.model.named_parameters(), b.trainer.model.parameters()):
        assert torch.equal(pa, pb), name
    for pa, pb in zip(a.trainer.ema.module.parameters(), b.trainer.ema.module.parameters()):
        assert torch.equal(pa, pb)
    assert next(a.stream).captions == next(b.stream).captions  # the data streams stayed in step


def test_builds_the_base_preset_with_the_text_features_it_reads(bench, tmp_path):
    """The base transformer reads e5's word rows too (768-wide features): the bench must give its
    trainer the encoder features the CLI gives (session 4's GPU preflight failed on exactly this)."""
    args = bench.parse_args(["--preset", "base", "--pack", "synthetic", "--stub-text", "--no-compile",
                             "--batch-size", "1", "--out-dir", str(tmp_path)])
    setup = bench.build(args)
    cfg = setup.trainer.model_config.transformer
    assert cfg.text_embed_dim > 0 and setup.trainer.text_encoder.feature_dim == cfg.text_input_dim


def test_needs_a_text_encoder(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--pack", "synthetic"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--pack", "synthetic", "--stub-text", "--steps", "0"])


@dataclass
class _Range:
    start: float
    end: float


@dataclass
class _Event:
    name: str
    device_type: DeviceType
    time_range: _Range
    thread: int = 1


def _ev(name, start, end, device=DeviceType.CPU, thread=1):
    return _Event(name, device, _Range(start, end), thread)


def test_count_phase_events_assigns_by_range(bench):
    """The CUDA side of the counter (not reachable on CPU CI): kernels, copies, hidden syncs and
    top-level ops go to the phase whose range holds their start, per step."""
    p = bench.RANGE_PREFIX
    events = [
        _ev(p + "render", 0, 100), _ev(p + "dit_forward", 100, 300),
        _ev(p + "render", 1000, 1100), _ev(p + "dit_forward", 1100, 1300),  # step 2
        _ev(p + "render", 5, 90, DeviceType.CUDA),  # the range's GPU annotation: not a kernel
        _ev("aten::linear", 110, 150), _ev("aten::addmm", 111, 149),  # nested: one top-level op
        _ev("aten::mm", 120, 140, thread=2),  # another thread (autograd's): its own top level
        _ev("aten::add", 10, 20), _ev("aten::add", 1010, 1020),
        _ev("cudaStreamSynchronize", 30, 40), _ev("cudaDeviceSynchronize", 95, 100),  # bench's own: ignored
        _ev("ampere_sgemm", 150, 250, DeviceType.CUDA), _ev("ampere_sgemm", 1150, 1250, DeviceType.CUDA),
        _ev("Memcpy HtoD (Pinned -> Device)", 20, 22, DeviceType.CUDA),
        _ev("aten::zeros", 500, 510),  # between phases: belongs to none
    ]
    out = bench.count_phase_events(events, steps=2)
    assert set(out) == {"render", "dit_forward"}
    assert out["dit_forward"].kernels == 1 and out["dit_forward"].gpu_ms == pytest.approx(0.1)
    assert out["dit_forward"].ops == 1  # (linear + mm on thread 2) / 2 steps
    assert out["render"].ops == 1 and out["render"].syncs == 0.5 and out["render"].copies == 0.5
    assert out["render"].kernels == 0


def test_the_data_worker_pass_runs_the_loop_with_a_child_process(bench, tmp_path):
    args = bench.parse_args(CPU_ARGS + ["--batch-size", "2", "--out-dir", str(tmp_path)])
    setup = bench.build(args)
    runs = bench.free_running(setup, 2, data_worker=True)
    assert [r.mode.split(":")[0] for r in runs] == ["loop", "trainer only", "stream only", "loop, data worker"]
    assert all(r.samples_per_s > 0 for r in runs) and setup.trainer.step == 2 + 2 + 2
