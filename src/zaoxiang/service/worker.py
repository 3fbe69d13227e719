"""The worker: one thread that owns the Runner (and so the device).

It claims jobs from the queue, answers seeded repeats from the result cache, runs the rest with
one per-step hook (progress events out, cancellation in), passes every image through the safety
gate, encodes it with its metadata, stores it, and records the outcome. Events cross to the
asyncio side only through the event bus (``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from zaoxiang.engine.metadata import encode_image
from zaoxiang.engine.runner import Runner
from zaoxiang.errors import Cancelled, ZaoxiangError
from zaoxiang.protocol import GenerationResult, ProgressEvent
from zaoxiang.service.cache import ResultCache, request_key
from zaoxiang.service.events import EventBus, JobEvent
from zaoxiang.service.gate import Gate, NoGate
from zaoxiang.service.jobs import Job, JobError, JobStatus, StoredImage
from zaoxiang.service.queue.base import JobQueue
from zaoxiang.service.store.base import ImageStore

log = logging.getLogger(__name__)

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def encode_for_store(image: Any, result: GenerationResult, index: int, created_at: float) -> bytes:
    """The stored file for one image: the requested format with the metadata embedded.

    The store is content-addressed and a retried job (its worker presumed dead) keeps its seed, so a
    second execution must make the same bytes, or the first attempt's upload is left behind as an
    object no job names. So the file carries the job's creation time, not the encoding time, and no
    wall-clock timings (the job record keeps those)."""
    created = datetime.fromtimestamp(created_at, timezone.utc)
    return encode_image(image, result, index, result.request.output_format, created=created, timings=False)


@dataclass
class Current:
    """What the worker is doing now, for polling clients (A1111 ``/progress``)."""

    job_id: str
    owner: str
    started: float
    step: int = 0
    total: int = 0
    preview: bytes | None = None


class Worker:
    def __init__(
        self,
        runner: Runner,
        queue: JobQueue,
        store: ImageStore,
        cache: ResultCache,
        bus: EventBus,
        gate: Gate | None = None,
        previews: bool = True,
        on_finished: Callable[[Job], None] | None = None,
        poll_s: float = 1.0,
        cleanup: Callable[[], None] | None = None,
        cleanup_interval_s: float = 3600.0,
    ) -> None:
        self.runner = runner
        self.queue = queue
        self.store = store
        self.cache = cache
        self.bus = bus
        self.gate = gate or NoGate()
        self.previews = previews
        self.on_finished = on_finished
        self.poll_s = poll_s
        self._cleanup = cleanup
        self._cleanup_interval_s = cleanup_interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancels: dict[str, threading.Event] = {}
        self._cancels_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.current: Current | None = None
        # Each model's defaults once the worker has loaded it, so the API side can compute a
        # seeded request's cache key without touching the device.
        self.known_defaults: dict[str, Any] = {}

    # -- lifecycle (called from the API side) ---------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="zaoxiang-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current step: a running job goes back to the queue, not counted."""
        self._stop.set()
        self._wake.set()
        with self._cancels_lock:
            for ev in self._cancels.values():
                ev.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """A job was queued: skip the poll wait."""
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """Stop a running job within one step. The queue's cancel flag must be set first: the
        worker registers its event before reading that flag, so one of the two always sees the other."""
        with self._cancels_lock:
            ev = self._cancels.get(job_id)
        if ev is not None:
            ev.set()

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        last_cleanup = 0.0
        while not self._stop.is_set():
            if self._cleanup is not None and time.monotonic() - last_cleanup > self._cleanup_interval_s:
                last_cleanup = time.monotonic()
                self._safe(self._cleanup)
            try:
                job = self.queue.claim()
            except Exception:  # a locked or broken DB must not kill the only worker
                log.exception("could not claim a job")
                job = None
            if job is None:
                # Nothing queued: the moment for deferred compiles (engine.compile_vae_at = "idle").
                self._safe(self.runner.idle)
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            self._process(job)

    @staticmethod
    def _safe(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("background task failed")

    def _process(self, job: Job) -> None:
        cancel = threading.Event()
        with self._cancels_lock:
            self._cancels[job.id] = cancel
        self.current = Current(job_id=job.id, owner=job.owner, started=time.time())
        try:
            fresh = self.queue.get(job.id)
            if fresh is not None and fresh.cancel_requested:
                cancel.set()
            self.bus.publish(JobEvent(type="started", job_id=job.id))
            final = self._execute(job, cancel)
        except Cancelled as exc:
            if self._stop.is_set() and not self._cancel_requested(job.id):
                self.queue.release(job.id)
                log.info("job %s returned to the queue at shutdown", job.id)
                return
            final = self.queue.mark_cancelled(job.id, exc.message)
        except ZaoxiangError as exc:
            final = self.queue.fail(job.id, JobError.from_exc(exc))
        except Exception as exc:  # the client gets a code and a message, the log the traceback
            log.exception("job %s failed", job.id)
            final = self.queue.fail(
                job.id, JobError(code="internal_error", message=f"generation failed ({type(exc).__name__})")
            )
        finally:
            with self._cancels_lock:
                self._cancels.pop(job.id, None)
            self.current = None
        self._finish(final)

    def _cancel_requested(self, job_id: str) -> bool:
        job = self.queue.get(job_id)
        return job is not None and job.cancel_requested

    def _execute(self, job: Job, cancel: threading.Event) -> Job:
        if cancel.is_set():
            raise Cancelled("cancelled before it started")
        entry = self.runner.registry.get(job.request.model)
        pipe, _ = self.runner.load(entry.name)
        self.known_defaults[entry.name] = pipe.defaults
        # A retried job keeps the seed its first attempt drew, so a second execution (a worker
        # presumed dead) makes the same bytes: the same content-addressed images, not new ones.
        resolved = self.runner.resolve(job.resolved or job.request, pipe)
        revision = self.runner.registry.revision(entry)
        self.queue.set_resolved(job.id, resolved, revision)
        key = request_key(resolved, revision, self.runner.cache_dtype)
        if job.request.seed is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return self.queue.succeed(job.id, hit, cache_hit=True, timings={})

        def on_progress(ev: ProgressEvent) -> None:
            if self.current is not None:
                self.current.step, self.current.total, self.current.preview = ev.step, ev.total, ev.preview
            self.bus.publish(JobEvent.progress(job.id, ev.step, ev.total, ev.preview))

        result = self.runner.run(
            resolved, on_progress=on_progress, cancel=cancel, previews=self.previews, inputs=self.store.get
        )
        images = self.gate.check_images(list(result.images), result.request, job.id)
        stored: list[StoredImage] = []
        for i, image in enumerate(images):
            data = encode_for_store(image, result, i, job.created_at)
            stored.append(
                StoredImage(
                    id=self.store.put(data),
                    index=i,
                    seed=result.seeds[i],
                    width=image.width,
                    height=image.height,
                    content_type=CONTENT_TYPES[result.request.output_format],
                )
            )
        done = self.queue.succeed(job.id, stored, cache_hit=False, timings=result.timings.as_dict())
        self.cache.put(key, stored)
        return done

    def _finish(self, job: Job) -> None:
        if job.status is JobStatus.succeeded:
            event = JobEvent(type="succeeded", job_id=job.id, images=job.images)
        elif job.status is JobStatus.cancelled:
            event = JobEvent(type="cancelled", job_id=job.id, error=job.error)
        else:
            event = JobEvent(type="failed", job_id=job.id, error=job.error)
        self.bus.publish(event)
        record = {
            "job_id": job.id,
            "owner": job.owner,
            "status": job.status.value,
            "prompt": job.request.prompt,
            "negative_prompt": job.request.negative_prompt,
        }
        self._safe(lambda: self.gate.audit(record))
        if self.on_finished is not None:
            self._safe(lambda: self.on_finished(job))  # type: ignore[misc]
