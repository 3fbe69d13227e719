"""Data-parallel training (training/distributed.py): gradient averaging and a 2-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from zaoxiang.training.distributed import DATA_SEED_STRIDE, DistContext, average_gradients, context_from_env


def test_context_from_env_reads_the_launcher_variables():
    ctx = context_from_env({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "2"})
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (2, 4, True, False)
    assert ctx.data_seed(7) == 7 + 2 * DATA_SEED_STRIDE
    assert ctx.device(torch.device("cuda")) == torch.device("cuda", 2)
    assert ctx.device(torch.device("cpu")) == torch.device("cpu")
    single = context_from_env({})
    assert (single.enabled, single.is_main, single.data_seed(7)) == (False, True, 7)


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "x"}, {"WORLD_SIZE": "0"}])
def test_context_from_env_rejects_bad_values(env):
    with pytest.raises(ValueError):
        context_from_env(env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _average_worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(2, 2))
    frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    a.grad = torch.full((3,), float(rank + 1))  # rank 0: 1, rank 1: 2 -> mean 1.5
    if rank == 1:  # unused on rank 0: counts as zero there -> mean 0.5 * 4
        b.grad = torch.full((2, 2), 4.0)
    average_gradients([a, b, frozen], DistContext(rank=rank, world_size=world, local_rank=rank))
    torch.save({"a": a.grad, "b": b.grad, "frozen": frozen.grad}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_average_gradients_means_over_processes_and_counts_missing_as_zero(tmp_path):
    mp.start_processes(_average_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(got["a"], torch.full((3,), 1.5))
        assert torch.equal(got["b"], torch.full((2, 2), 2.0))
        assert got["frozen"] is None


def test_average_gradients_is_a_no_op_for_one_process():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([1.0, 3.0])
    average_gradients([p], DistContext())
    assert torch.equal(p.grad, torch.tensor([1.0, 3.0]))


@pytest.mark.slow
def test_two_process_training_run_writes_one_log_and_checkpoint(tmp_path):
    out = tmp_path / "ae"
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_PORT=str(_free_port()))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", env["MASTER_PORT"],
           "-m", "zaoxiang.cli.train", "--preset", "tiny", "--stage", "ae", "--steps", "6", "--pack", "synthetic",
           "--device", "cpu", "--batch-size", "2", "--out", str(out), "--log-every", "2", "--ckpt-every", "3",
           "--sample-every", "0", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]  # written once, by the main process only
    assert "x 2 processes" in proc.stderr
    ckpt = torch.load(out / "latest.pt", map_location="cpu", weights_only=False)
    assert ckpt["step"] == 6
    assert ckpt["model"]["latent_std"].ne(1).any()  # the ae end (latent statistics) ran on the main process
