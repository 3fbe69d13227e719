"""Job events and the bus that carries them from the worker thread to SSE clients.

The vocabulary is small and fixed: ``queued``, ``started``, ``progress {step, total, preview?}``,
``succeeded``, ``failed``, ``cancelled``. The worker thread publishes with
``loop.call_soon_threadsafe`` so subscribers live entirely on the event loop and never need locks.
A Redis backend (pub/sub) can implement the same two methods across processes.
"""

from __future__ import annotations

import asyncio
import base64
from abc import ABC, abstractmethod
from contextlib import asynccontextmanager
from typing import AsyncIterator, Literal

from pydantic import BaseModel

from zaoxiang.service.jobs import JobError, StoredImage

EventType = Literal["queued", "started", "progress", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobEvent(BaseModel):
    type: EventType
    job_id: str
    queue_position: int | None = None
    step: int | None = None
    total: int | None = None
    preview: str | None = None  # base64 PNG of the current latents, when previews are on
    images: list[StoredImage] | None = None
    error: JobError | None = None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL

    @classmethod
    def progress(cls, job_id: str, step: int, total: int, preview: bytes | None) -> "JobEvent":
        b64 = base64.b64encode(preview).decode("ascii") if preview else None
        return cls(type="progress", job_id=job_id, step=step, total=total, preview=b64)


class EventBus(ABC):
    @abstractmethod
    def publish(self, event: JobEvent) -> None:
        """Deliver to every subscriber of ``event.job_id``. Safe to call from any thread."""

    @abstractmethod
    def subscribe(self, job_id: str) -> "AsyncIterator[asyncio.Queue[JobEvent]]":
        """Async context manager yielding a queue of this job's events from now on."""

    def latest_progress(self, job_id: str) -> JobEvent | None:
        """The last progress event of a running job (for polling clients), if known."""
        return None


class Subscribers:
    """This process's listeners (SSE connections), one asyncio queue each, keyed by job id.
    Shared by every bus: only how events arrive differs between them."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[JobEvent]]] = {}

    def wanted(self, job_id: str) -> bool:
        return bool(self._queues.get(job_id))

    def deliver(self, event: JobEvent) -> None:
        for q in self._queues.get(event.job_id, ()):
            q.put_nowait(event)

    @asynccontextmanager
    async def listen(self, job_id: str) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        q: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._queues.setdefault(job_id, set()).add(q)
        try:
            yield q
        finally:
            queues = self._queues.get(job_id)
            if queues is not None:
                queues.discard(q)
                if not queues:
                    del self._queues[job_id]


class LocalEventBus(EventBus):
    """In-process bus: one asyncio loop, subscribers keyed by job id."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._subs = Subscribers()
        self._progress: dict[str, JobEvent] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: JobEvent) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(event)
        else:
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: JobEvent) -> None:
        if event.type == "progress":
            self._progress[event.job_id] = event
        elif event.terminal:
            self._progress.pop(event.job_id, None)
        self._subs.deliver(event)

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        async with self._subs.listen(job_id) as q:
            yield q

    def latest_progress(self, job_id: str) -> JobEvent | None:
        return self._progress.get(job_id)
