"""Job events across processes: Redis pub/sub.

Workers publish each event on ``P:ev:<job id>``; every API server holds one pattern
subscription (``P:ev:*``) and hands events to its local SSE subscribers, so the server that
holds a client's stream gets the events whichever worker runs the job and whichever server took
the submission. One pattern subscription instead of one channel per stream: no subscribe race
(it is in place before any client connects) and one connection per server; the price is that
each server sees every job's events, which at a few events per step per GPU is nothing for Redis.

Pub/sub is fire-and-forget: an event published while a server was disconnected is lost. Clients
never depend on it alone: the SSE route and ``Service.wait`` re-read the job from the queue, and
the last progress event of each running job is also kept in a key for polling clients.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

import redis
import redis.asyncio as aredis

from zaoxiang.service.events import EventBus, JobEvent, Subscribers

log = logging.getLogger(__name__)

PROGRESS_TTL_S = 3600


class RedisEventBus(EventBus):
    def __init__(self, client: redis.Redis, url: str, prefix: str = "zx") -> None:
        self.r = client
        self.url = url
        self.prefix = prefix
        self._subs = Subscribers()
        self._reader: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None

    def _channel(self, job_id: str) -> str:
        return f"{self.prefix}:ev:{job_id}"

    def _progress_key(self, job_id: str) -> str:
        return f"{self.prefix}:progress:{job_id}"

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Nothing to bind: the reader starts inside the loop on the first subscription."""

    # -- publishing (any thread, any process) ---------------------------------------------------

    def publish(self, event: JobEvent) -> None:
        data = event.model_dump_json(exclude_none=True)
        try:
            with self.r.pipeline(transaction=False) as p:
                p.publish(self._channel(event.job_id), data)
                if event.type == "progress":
                    p.set(self._progress_key(event.job_id), data, ex=PROGRESS_TTL_S)
                elif event.terminal:
                    p.delete(self._progress_key(event.job_id))
                p.execute()
        except redis.RedisError as exc:  # events are advisory: the job's state is in the queue
            log.warning("could not publish %s of %s: %s", event.type, event.job_id, exc)

    def latest_progress(self, job_id: str) -> JobEvent | None:
        try:
            data = self.r.get(self._progress_key(job_id))
        except redis.RedisError:
            return None
        return JobEvent.model_validate_json(data) if data else None

    # -- subscribing (the API server's event loop) ----------------------------------------------

    async def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._ready = asyncio.Event()
            self._reader = asyncio.get_running_loop().create_task(self._read_forever(self._ready))
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=5.0)  # type: ignore[union-attr]
        except asyncio.TimeoutError:
            log.warning("event subscription to Redis is not confirmed; falling back to polling")

    async def _read_forever(self, ready: asyncio.Event) -> None:
        pattern = f"{self.prefix}:ev:*"
        strip = len(self.prefix) + 4
        while True:
            client = aredis.from_url(self.url, decode_responses=True)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "psubscribe":
                        ready.set()
                    elif msg["type"] == "pmessage":
                        self._deliver(msg["channel"][strip:], msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting: reconnect; SSE falls back to re-reads
                log.warning("event subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:
                    pass

    def _deliver(self, job_id: str, data: str) -> None:
        if self._subs.wanted(job_id):  # parse only what a listener here waits for
            self._subs.deliver(JobEvent.model_validate_json(data))

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        await self._ensure_reader()
        async with self._subs.listen(job_id) as q:
            yield q

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
