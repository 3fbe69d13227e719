"""The worker gives the runner its idle moments (deferred compiles, engine.compile_vae_at = idle)."""

from __future__ import annotations

import threading

from zaoxiang.service.worker import Worker


class EmptyQueue:
    def __init__(self) -> None:
        self.claims = 0

    def claim(self):
        self.claims += 1
        return None


class IdleRunner:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self.done = threading.Event()

    def idle(self) -> bool:
        self.calls += 1
        if self.calls >= 3:
            self.done.set()
        if self.fail:
            raise RuntimeError("compile failed")
        return False


def _run(runner: IdleRunner) -> EmptyQueue:
    queue = EmptyQueue()
    worker = Worker(runner, queue, store=None, cache=None, bus=None, poll_s=0.01)  # type: ignore[arg-type]
    worker.start()
    try:
        assert runner.done.wait(5), "the worker never called runner.idle"
    finally:
        worker.stop()
    assert not worker.alive()
    return queue


def test_an_idle_worker_calls_runner_idle_between_claims():
    runner = IdleRunner()
    queue = _run(runner)
    assert queue.claims >= runner.calls >= 3  # once per empty claim


def test_a_failing_idle_task_does_not_stop_the_worker():
    runner = IdleRunner(fail=True)
    _run(runner)  # three calls, each raising: the loop went on
    assert runner.calls >= 3
