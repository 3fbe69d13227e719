"""Shared helpers for the service/API tests: a fake-model runner and a live uvicorn server.

The live server is the real app on a real socket (uvicorn in a thread), so streaming (SSE),
the lifespan and the worker thread behave exactly as in ``zaoxiang serve``.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import uvicorn

from tests.fakes import ColourPipeline, fake_entry
from zaoxiang.api.app import create_app
from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.settings import EngineSettings, Settings


class SlowColour(ColourPipeline):
    """The colour pipeline with a pause per step, so tests can watch progress and cancel."""

    def __init__(self, entry, step_delay: float = 0.0, steps: int = 3):
        super().__init__(entry)
        self.step_delay = step_delay
        self.defaults = type(self.defaults)(width=64, height=64, steps=steps, guidance=1.0)

    def preview(self, latents):
        from PIL import Image

        rgb = tuple(int(v * 255) for v in latents[0].clamp(0, 1).tolist())  # latents: (B, 3)
        return Image.new("RGB", (8, 8), rgb)

    def generate(self, ctx):
        if self.step_delay:
            outer = ctx.step

            def slow(i, total, lat):
                time.sleep(self.step_delay)
                outer(i, total, lat)

            ctx.step = slow
        return super().generate(ctx)


def fake_runner(tmp: Path, names: tuple[str, ...] = ("fake",), step_delay: float = 0.0, steps: int = 3) -> Runner:
    registry = ModelRegistry([fake_entry(n, tmp) for n in names])
    return Runner(
        registry,
        EngineSettings(device="cpu"),
        loader=lambda entry, policy, settings: SlowColour(entry, step_delay=step_delay, steps=steps),
    )


def make_settings(data_dir: Path, **service: Any) -> Settings:
    return Settings.load(data_dir=data_dir, service={"host": "127.0.0.1", **service})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Live:
    url: str
    app: Any


@contextmanager
def live_server(settings: Settings, runner: Runner | None = None, **kw: Any) -> Iterator[Live]:
    """Serve ``create_app(settings, runner)`` on a free loopback port."""
    app = create_app(settings, runner, **kw)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Live(url=f"http://127.0.0.1:{port}", app=app)
    finally:
        server.should_exit = True
        thread.join(30)


def wait_status(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job['status']}")
        time.sleep(0.05)


def sse_events(client: httpx.Client, url: str, timeout: float = 30.0) -> list[tuple[str, dict]]:
    """Read an SSE stream to its end; return (event, data) pairs."""
    import json

    out: list[tuple[str, dict]] = []
    event = None
    with client.stream("GET", url, timeout=timeout) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                out.append((event or "message", json.loads(line[len("data: ") :])))
    return out

