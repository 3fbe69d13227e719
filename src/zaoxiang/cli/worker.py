"""``zaoxiang worker``: one GPU worker of the Redis backend (one process per GPU).

It owns one device, claims jobs from Redis, runs them, stores images (S3), and reports
progress and results through Redis; it serves no HTTP. Run one per GPU:
    ZAOXIANG_SERVICE__BACKEND=redis zaoxiang worker --device cuda:0 --model flux=/models/FLUX.1-dev
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from zaoxiang.cli.common import add_model_flags, settings_from_args
from zaoxiang.errors import InvalidRequest
from zaoxiang.settings import Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run a GPU worker for the Redis backend (one per GPU)")
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH", help="register a diffusers folder (repeatable)")
    p.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="NAME",
        help="load this model at start, so it is advertised warm before the first job (repeatable)",
    )
    p.add_argument("--data-dir", type=Path, help="audit log and local files (default ~/.local/share/zaoxiang)")
    p.add_argument("--no-safety", action="store_true", help="turn off the image check, watermark and audit log")
    add_model_flags(p)
    p.set_defaults(func=run)


def settings_for(args: argparse.Namespace) -> Settings:
    settings = settings_from_args(args)
    update: dict[str, object] = {
        "models": list(settings.models) + list(args.model),
        "service": settings.service.model_copy(update={"with_worker": True}),
    }
    if args.data_dir is not None:
        update["data_dir"] = args.data_dir
    if args.no_safety:
        update["safety"] = settings.safety.model_copy(update={"enabled": False})
    return settings.model_copy(update=update)


async def _work(service: object, settings: Settings, stop: asyncio.Event) -> None:
    from zaoxiang.service.backends import worker_agent

    svc = service  # a zaoxiang.service.core.Service with run_worker=True
    svc.start(asyncio.get_running_loop())  # type: ignore[attr-defined]
    agent = worker_agent(svc, settings)
    name = svc.queue.consumer  # type: ignore[attr-defined]
    models = ", ".join(e.name for e in svc.runner.registry.list())  # type: ignore[attr-defined]
    print(f"zaoxiang worker {name} ready (models: {models})", flush=True)
    try:
        await stop.wait()
    finally:
        # Stop after the current step: a running job goes back to the queue, not counted.
        await asyncio.to_thread(svc.stop)  # type: ignore[attr-defined]
        if agent is not None:
            agent.stop()


def work(settings: Settings, runner: object | None = None, preload: list[str] = ()) -> int:
    """Run a worker until SIGTERM/SIGINT. ``runner`` replaces the default (tests)."""
    from zaoxiang.api.app import build_service, default_runner
    from zaoxiang.service.gate import default_gate

    if settings.service.backend != "redis":
        raise InvalidRequest(
            "zaoxiang worker needs the Redis backend: set ZAOXIANG_SERVICE__BACKEND=redis and "
            "ZAOXIANG_SERVICE__REDIS__URL (the embedded backend runs its worker inside `zaoxiang serve`)",
            field="service.backend",
        )
    runner = runner or default_runner(settings)
    for name in preload:
        runner.load(name)  # type: ignore[attr-defined]
    service, _ = build_service(settings, runner, default_gate(settings))  # type: ignore[arg-type]

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await _work(service, settings, stop)

    asyncio.run(main())
    return 0


def run(args: argparse.Namespace) -> int:
    return work(settings_for(args), preload=list(args.preload))
