"""``zaoxiang serve``: the API (and the web studio) plus one in-process worker."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from zaoxiang.cli.common import add_model_flags, settings_from_args
from zaoxiang.settings import Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP API, web studio and a worker")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; any other address requires API keys)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--data-dir", type=Path, help="jobs, images and keys live here (default ~/.local/share/zaoxiang)")
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH", help="register a diffusers folder (repeatable)")
    p.add_argument(
        "--no-safety",
        action="store_true",
        help="turn off the prompt filter, image check, watermark and audit log (on by default)",
    )
    p.add_argument(
        "--with-worker",
        action="store_true",
        help="backend=redis: also run a worker in this process (default: API only; workers are `zaoxiang worker`)",
    )
    add_model_flags(p)
    p.set_defaults(func=run)


def settings_for(args: argparse.Namespace) -> Settings:
    settings = settings_from_args(args)
    service = settings.service.model_copy(
        update={k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    )
    if getattr(args, "with_worker", False):
        service = service.model_copy(update={"with_worker": True})
    update: dict[str, object] = {"service": service, "models": list(settings.models) + list(args.model)}
    if args.data_dir is not None:
        update["data_dir"] = args.data_dir
    if args.no_safety:
        update["safety"] = settings.safety.model_copy(update={"enabled": False})
    return settings.model_copy(update=update)


def serve(settings: Settings, runner: object | None = None) -> int:
    """Build the app and run it until interrupted. ``runner`` replaces the default (tests)."""
    import uvicorn

    from zaoxiang.api.app import create_app, keys_required

    app = create_app(settings, runner)  # type: ignore[arg-type]
    svc = app.state.service
    host, port = settings.service.host, settings.service.port
    models = ", ".join(e.name for e in svc.runner.registry.list()) or "none"
    mode = "" if svc.run_worker else "; API only, jobs run on `zaoxiang worker` processes"
    print(f"zaoxiang serving on http://{host}:{port}  (models: {models}; data: {settings.data_dir}{mode})", flush=True)
    if keys_required(settings) and not svc.auth.keys.any_active():
        print("warning: API keys are required on this address and none exist; create one with `zaoxiang keys create`")
    uvicorn.run(app, host=host, port=port, log_level="info" if log.isEnabledFor(logging.INFO) else "warning")
    return 0


def run(args: argparse.Namespace) -> int:
    return serve(settings_for(args))
