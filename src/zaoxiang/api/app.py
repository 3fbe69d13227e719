"""The FastAPI app factory. Everything the app needs is built here from ``Settings`` and kept on
``app.state``; there are no module globals, so tests can build as many apps as they like."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import asyncio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from zaoxiang import __version__
from zaoxiang.api import (
    routes_a1111,
    routes_a1111_edit,
    routes_edit,
    routes_native,
    routes_openai,
    routes_openai_edit,
    routes_studio,
)
from zaoxiang.api.errors import BodyLimitMiddleware, install_error_handlers
from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.service.auth import Authenticator, KeyStore, is_loopback, load_or_create_secret
from zaoxiang.service.backends import build_backends, canary_router, shared_secret, worker_agent, worker_name
from zaoxiang.service.core import DataPaths, Service
from zaoxiang.service.gate import Gate, default_gate
from zaoxiang.service.webhooks import WebhookSender
from zaoxiang.settings import Settings

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

FALLBACK_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>zaoxiang 造相</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>zaoxiang 造相</h1>
<p>The generation service is running. The web studio is not installed in this build.</p>
<p><a href="/docs">API reference (OpenAPI)</a> · <a href="/openapi.json">openapi.json</a> ·
<a href="/v1/models">models</a></p>
</body></html>
"""


def default_runner(settings: Settings) -> Runner:
    registry = ModelRegistry.discover(
        settings.models, settings.models_dir, default=settings.default_model, include_builtin=settings.builtin
    )
    from zaoxiang.engine.lora import LoraLibrary

    return Runner(registry, settings.engine, settings.limits.to_limits(), loras=LoraLibrary(settings.lora_dir))


def keys_required(settings: Settings) -> bool:
    return settings.service.auth == "required" or not is_loopback(settings.service.host)


def build_service(settings: Settings, runner: Runner, gate: Gate) -> tuple[Service, bytes]:
    s = settings.service
    paths = DataPaths(Path(settings.data_dir).expanduser())
    # backend=redis: an API-only server unless asked to run a worker too (`serve --with-worker`).
    run_worker = s.backend == "embedded" or s.with_worker
    consumer = worker_name(str(runner.policy.device)) if s.backend == "redis" and run_worker else None
    b = build_backends(settings, paths.db, paths.images, runner.registry, consumer=consumer, warm=runner.warm_models)
    webhook_secret = s.webhook_secret.encode() if s.webhook_secret else load_or_create_secret(paths.webhook_secret)
    service = Service(
        runner=runner,
        queue=b.queue,
        store=b.store,
        cache=b.cache,
        bus=b.bus,
        auth=Authenticator(KeyStore(paths.keys), required=keys_required(settings)),
        limiter=b.limiter,
        gate=gate,
        webhooks=WebhookSender(webhook_secret, s.webhook_attempts, s.webhook_backoff_s, s.webhook_timeout_s),
        limits=settings.limits.to_limits(),
        retention_s=s.retention_hours * 3600.0,
        previews=s.previews,
        max_attempts=s.max_attempts,
        cleanup_interval_s=s.cleanup_interval_s,
        run_worker=run_worker,
        router=canary_router(settings, runner.registry),
    )
    return service, shared_secret(b, paths.secret)


def create_app(settings: Settings, runner: Runner | None = None, gate: Gate | None = None) -> FastAPI:
    service, server_secret = build_service(settings, runner or default_runner(settings), gate or default_gate(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start(asyncio.get_running_loop())
        agent = worker_agent(service, settings)
        try:
            yield
        finally:
            # The worker stops within one step; a job it was running goes back to the queue.
            await asyncio.to_thread(service.stop)
            if agent is not None:
                agent.stop()

    app = FastAPI(
        title="zaoxiang",
        version=__version__,
        description="造相 text-to-image service: native jobs API, OpenAI- and AUTOMATIC1111-compatible endpoints.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.server_secret = server_secret
    install_error_handlers(app)
    if settings.service.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.service.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Prefer"],
            expose_headers=["Location", "Retry-After", "Preference-Applied"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.service.max_body_bytes)
    app.include_router(routes_openai.router)  # first: /v1/images/generations before /v1/images/{id}
    app.include_router(routes_openai_edit.router)
    app.include_router(routes_native.router)
    app.include_router(routes_edit.router)
    app.include_router(routes_a1111.router)
    app.include_router(routes_a1111_edit.router)
    app.include_router(routes_studio.router)
    _mount_web(app)
    return app


def _mount_web(app: FastAPI) -> None:
    """The studio's static files when built; otherwise a page at ``/`` that links to the docs.

    Each top-level file gets its own GET route and each folder its own mount, rather than one
    catch-all mount at ``/``: a catch-all would answer a GET on a POST-only API route with 404
    instead of 405 Method Not Allowed."""
    index = WEB_DIR / "index.html"
    if not index.is_file():

        @app.get("/", include_in_schema=False)
        def fallback() -> HTMLResponse:
            return HTMLResponse(FALLBACK_PAGE)

        return
    for folder in sorted(p for p in WEB_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        app.mount(f"/{folder.name}", StaticFiles(directory=folder), name=f"web-{folder.name}")
    for file in sorted(p for p in WEB_DIR.iterdir() if p.is_file()):
        paths = ["/", "/index.html"] if file == index else [f"/{file.name}"]
        for path in paths:
            app.add_api_route(path, _static_file(file), methods=["GET", "HEAD"], include_in_schema=False)


def _static_file(path: Path):
    def serve() -> FileResponse:
        return FileResponse(path)

    return serve
