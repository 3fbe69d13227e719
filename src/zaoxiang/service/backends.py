"""Build the service's backends from settings.

``service.backend = "embedded"`` (the default): SQLite queue and cache, in-memory rate limits
and event bus, images on local disk (or S3 when ``store_backend = "s3"``).
``service.backend = "redis"``: queue, cache index, rate limits and events in Redis, so any
number of API servers and `zaoxiang worker` processes share them; images belong in S3 then
(a local directory only works when every process shares it, e.g. one host or NFS).
"""

from __future__ import annotations

import os
import socket
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.service.cache import ResultCache, SqliteResultCache
from zaoxiang.service.events import EventBus, JobEvent, LocalEventBus
from zaoxiang.service.queue.base import JobQueue
from zaoxiang.service.queue.sqlite import SqliteJobQueue
from zaoxiang.service.ratelimit import RateLimiter, TokenBucketLimiter
from zaoxiang.service.store.base import ImageStore
from zaoxiang.service.store.local import LocalImageStore
from zaoxiang.settings import Settings


@dataclass
class Backends:
    queue: JobQueue
    store: ImageStore
    cache: ResultCache
    bus: EventBus
    limiter: RateLimiter
    redis: Any = None  # the redis.Redis client when backend=redis


def worker_name(device: str) -> str:
    """Unique per process and readable in `redis-cli`: host, device, pid, a random tail."""
    return f"{socket.gethostname()}:{device}:{os.getpid()}:{secrets.token_hex(3)}"


def build_store(settings: Settings, images_dir: Path) -> ImageStore:
    if settings.service.store_backend == "s3":
        from zaoxiang.service.store.s3 import S3ImageStore

        return S3ImageStore(settings.service.s3)
    return LocalImageStore(images_dir)


def build_backends(
    settings: Settings,
    db: Path,
    images_dir: Path,
    registry: ModelRegistry,
    consumer: str | None = None,
    warm: Any = None,
) -> Backends:
    """``consumer``: this process's worker name (Redis only; None for an API-only server).
    ``warm``: a callable listing the models this process has loaded (the runner's)."""
    s = settings.service
    store = build_store(settings, images_dir)
    if s.backend == "embedded":
        return Backends(
            queue=SqliteJobQueue(db, max_queued=s.max_queued),
            store=store,
            cache=SqliteResultCache(db, store),
            bus=LocalEventBus(),
            limiter=TokenBucketLimiter(s.rate_per_minute / 60.0, s.rate_burst),
        )

    import redis

    from zaoxiang.service.cache_redis import RedisResultCache
    from zaoxiang.service.events_redis import RedisEventBus
    from zaoxiang.service.queue.redis import RedisJobQueue
    from zaoxiang.service.ratelimit_redis import RedisTokenBucketLimiter

    rs = s.redis
    client = redis.Redis.from_url(rs.url, decode_responses=True, health_check_interval=30, socket_keepalive=True)
    bus = RedisEventBus(client, rs.url, rs.prefix)
    names = [e.name for e in registry.list()]
    queue = RedisJobQueue(
        client,
        prefix=rs.prefix,
        model_of=lambda job: registry.get(job.request.model).name,
        max_queued=s.max_queued,
        max_attempts=s.max_attempts,
        consumer=consumer,
        models=lambda: names,
        warm=warm or (lambda: ()),
        claim_timeout_s=rs.claim_timeout_s,
        cold_claim_delay_s=rs.cold_claim_delay_s,
        block_s=rs.block_s,
        on_reclaim_failed=lambda job: bus.publish(JobEvent(type="failed", job_id=job.id, error=job.error)),
    )
    return Backends(
        queue=queue,
        store=store,
        cache=RedisResultCache(client, store, rs.prefix, ttl_s=s.retention_hours * 3600.0),
        bus=bus,
        limiter=RedisTokenBucketLimiter(client, s.rate_per_minute / 60.0, s.rate_burst, rs.prefix),
        redis=client,
    )


def canary_router(settings: Settings, registry: ModelRegistry) -> Any:
    """The canary router when aliases are configured (every target must be registered)."""
    if not settings.service.canary:
        return None
    from zaoxiang.service.canary import CanaryRouter

    router = CanaryRouter(settings.service.canary, settings.service.canary_mode)
    router.check(e.name for e in registry.list())
    return router


def shared_secret(b: Backends, path: Path) -> bytes:
    """The secret that signs image URLs. With Redis every API server must share it (a URL one
    server signs is checked by another): the first server to start stores one, all use it."""
    from zaoxiang.service.auth import load_or_create_secret

    local = load_or_create_secret(path)
    if b.redis is None:
        return local
    key = f"{b.queue.k.p}:server_secret"  # type: ignore[attr-defined]
    b.redis.set(key, local.hex(), nx=True)
    return bytes.fromhex(b.redis.get(key))


def worker_agent(service: Any, settings: Settings) -> Any:
    """Start the heartbeat / warm-model / cancel agent when this process runs a Redis worker."""
    from zaoxiang.service.queue.redis import RedisJobQueue

    queue = service.queue
    if not (service.run_worker and isinstance(queue, RedisJobQueue)):
        return None
    from zaoxiang.service.worker_agent import WorkerAgent

    # An idle worker waits inside claim() (blocking on Redis); no extra sleep between claims.
    service.worker.poll_s = 0.05
    return WorkerAgent(
        queue,
        cancel_job=service.worker.cancel,
        warm_models=service.runner.warm_models,
        device=str(service.runner.policy.device),
        heartbeat_s=settings.service.redis.heartbeat_s,
    ).start()
