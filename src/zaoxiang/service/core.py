"""The service façade the API routes call: submit, look up, wait, cancel, fetch images.

Routes stay thin (parse → call one method here → format); everything that touches the queue,
the cache, the store or the worker goes through this object, built once per app from settings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from zaoxiang.engine.edit_inputs import Put
from zaoxiang.engine.pipelines.base import ModelDefaults
from zaoxiang.engine.runner import Runner
from zaoxiang.protocol import GenerationRequest, Limits
from zaoxiang.service.auth import Authenticator
from zaoxiang.service.cache import ResultCache, request_key
from zaoxiang.service.canary import CanaryRouter
from zaoxiang.service.events import EventBus, JobEvent
from zaoxiang.service.exceptions import ImageNotFound, JobNotFound
from zaoxiang.service.gate import Gate
from zaoxiang.service.jobs import Job, JobStatus, StoredImage, new_job_id, request_input_keys
from zaoxiang.service.queue.base import JobQueue, Page
from zaoxiang.service.ratelimit import RateLimiter
from zaoxiang.service.store.base import ImageStore, check_key
from zaoxiang.service.webhooks import WebhookSender
from zaoxiang.service.worker import Worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataPaths:
    """Where the embedded backends keep their files under the data directory."""

    root: Path
    db: Path = field(init=False)
    keys: Path = field(init=False)
    images: Path = field(init=False)
    secret: Path = field(init=False)
    webhook_secret: Path = field(init=False)

    def __post_init__(self) -> None:
        root = Path(self.root)
        object.__setattr__(self, "db", root / "jobs.sqlite3")
        object.__setattr__(self, "keys", root / "keys.sqlite3")
        object.__setattr__(self, "images", root / "images")
        object.__setattr__(self, "secret", root / "server_secret")
        object.__setattr__(self, "webhook_secret", root / "webhook_secret")


@dataclass(frozen=True)
class Readiness:
    """Whether the service takes jobs. ``code`` is stable across releases so clients can act on it
    (the studio shows its own words for it); ``message`` is for people reading the API."""

    ok: bool
    code: str  # ready | worker_not_running | no_model_installed | database_unavailable
    message: str


class Service:
    def __init__(
        self,
        runner: Runner,
        queue: JobQueue,
        store: ImageStore,
        cache: ResultCache,
        bus: EventBus,
        auth: Authenticator,
        limiter: RateLimiter,
        gate: Gate,
        webhooks: WebhookSender,
        limits: Limits,
        retention_s: float,
        previews: bool = True,
        max_attempts: int = 2,
        cleanup_interval_s: float = 3600.0,
        run_worker: bool = True,
        router: CanaryRouter | None = None,
    ) -> None:
        self.runner = runner
        # False for an API-only server of the Redis backend: `zaoxiang worker` processes run jobs.
        self.run_worker = run_worker
        self.router = router
        self.queue = queue
        self.store = store
        self.cache = cache
        self.bus = bus
        self.auth = auth
        self.limiter = limiter
        self.gate = gate
        self.webhooks = webhooks
        self.limits = limits
        self.retention_s = retention_s
        self.max_attempts = max_attempts
        self.worker = Worker(
            runner,
            queue,
            store,
            cache,
            bus,
            gate=gate,
            previews=previews,
            on_finished=self._on_finished,
            cleanup=self.cleanup,
            cleanup_interval_s=cleanup_interval_s,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        bind = getattr(self.bus, "bind", None)
        if bind is not None:
            bind(loop)
        self.webhooks.bind(loop)
        rec = self.queue.recover(self.max_attempts)
        if rec.requeued or rec.failed:
            log.warning("recovered after a crash: %d jobs requeued, %d failed", len(rec.requeued), len(rec.failed))
        if self.run_worker:
            self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.webhooks.cancel_all()

    def ready(self) -> Readiness:
        if self.run_worker and not self.worker.alive():
            return Readiness(False, "worker_not_running", "the worker is not running")
        if not self.runner.registry.list():
            return Readiness(False, "no_model_installed", "no model is installed")
        try:
            self.queue.depth()
        except Exception as exc:  # any database failure means not ready, with the reason
            return Readiness(False, "database_unavailable", f"the job database is not available: {type(exc).__name__}")
        return Readiness(True, "ready", "ready")

    # -- jobs -----------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, owner: str, webhook: str | None = None) -> tuple[Job, int | None]:
        """Validate, then answer from the cache or queue the job. Returns the job and its position.
        A refused edit (rate limit, full queue, unknown model, ...) takes its stored uploads with it."""
        try:
            return self._submit(request, owner, webhook)
        except BaseException:
            self.discard_inputs(request_input_keys(request))
            raise

    @contextmanager
    def uploads(self) -> Iterator[Put]:
        """The store ``put`` for one request's edit uploads: when the request fails before a job
        names them (a bad field checked after the image was stored), they are removed again."""
        keys: list[str] = []

        def put(data: bytes) -> str:
            keys.append(self.store.put(data))
            return keys[-1]

        try:
            yield put
        except BaseException:
            self.discard_inputs(keys)
            raise

    def discard_inputs(self, keys: list[str]) -> None:
        """Delete the uploads no job names. Known race: an identical upload of a concurrent request,
        stored but not yet submitted, shares the key and goes too (that job then fails with
        "no stored input"); keeping refused uploads forever is the worse trade on a busy server."""
        for key in self.queue.unreferenced(keys) if keys else []:
            self.store.delete(key)

    def _submit(self, request: GenerationRequest, owner: str, webhook: str | None) -> tuple[Job, int | None]:
        routed_from = None
        if self.router is not None:
            request, routed_from = self.router.route(request, self.runner.registry.default)
        self.limits.check(request)
        self.runner.registry.get(request.model)  # unknown model → 404 now, not after queueing
        self.runner.loras.check_names(request)  # unknown LoRA → 422 now (its file is read when it runs)
        self.gate.check_prompt(request, owner)
        self.limiter.take(owner)
        hit = self._cached(request, owner, webhook, routed_from)
        if hit is not None:
            return hit, None
        job = Job(id=new_job_id(), owner=owner, request=request, webhook=webhook, routed_from=routed_from)
        position = self.queue.submit(job)
        self.bus.publish(JobEvent(type="queued", job_id=job.id, queue_position=position))
        self.worker.notify()
        return job, position

    def _cached(self, request: GenerationRequest, owner: str, webhook: str | None, routed_from: str | None = None) -> Job | None:
        """A seeded request whose result is stored finishes at once, without queueing.

        Filling the model's defaults needs the pipeline's ``defaults``; the API side never loads a
        model (the worker owns the device), so this fast path works once the worker has loaded the
        model. Otherwise the worker checks the cache itself after resolving.
        """
        if request.seed is None:
            return None
        entry = self.runner.registry.get(request.model)
        defaults = self.worker.known_defaults.get(entry.name)
        if defaults is None:
            return None
        resolved = fill_defaults(request, entry.name, defaults)
        revision = self.runner.registry.revision(entry)
        try:
            key = request_key(resolved, revision, self.runner.cache_dtype)
        except ValueError:
            return None
        images = self.cache.get(key)
        if images is None:
            return None
        now = time.time()
        job = Job(
            id=new_job_id(),
            owner=owner,
            request=request,
            resolved=resolved,
            webhook=webhook,
            status=JobStatus.succeeded,
            created_at=now,
            started_at=now,
            finished_at=now,
            cache_hit=True,
            images=images,
            model_revision=revision,
            routed_from=routed_from,
        )
        self.queue.insert_finished(job)
        self._on_finished(job)
        return job

    def get(self, job_id: str, owner: str | None) -> Job:
        """A job of ``owner`` (any when None). Someone else's job is "not found", never "forbidden"."""
        job = self.queue.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFound(f"no job {job_id!r}", field="id")
        return job

    def list(self, owner: str | None, status: JobStatus | None, limit: int, cursor: str | None) -> Page:
        return self.queue.list(owner, status=status, limit=limit, cursor=cursor)

    def position(self, job: Job) -> int | None:
        return self.queue.position(job.id) if job.status is JobStatus.queued else None

    def cancel(self, job_id: str, owner: str | None) -> Job:
        self.get(job_id, owner)
        job = self.queue.request_cancel(job_id)
        if job.status is JobStatus.cancelled:
            self.bus.publish(JobEvent(type="cancelled", job_id=job.id, error=job.error))
            self._on_finished(job)
        else:
            self.worker.cancel(job_id)
        return job

    def delete_job(self, job_id: str, owner: str | None) -> list[str]:
        """Delete a finished job now, with the images no other job (of any key) still uses, and
        the cache entries that point at those images, so the same request later runs again
        instead of answering with a missing file. Returns the deleted image ids."""
        gone = self.queue.delete(job_id, owner)
        for key in gone:
            self.store.delete(key)
        self.cache.forget_images(gone)
        return gone

    async def wait(self, job_id: str, timeout: float) -> Job:
        """The job once it is finished, or as it stands when ``timeout`` runs out."""
        async with self.bus.subscribe(job_id) as events:
            job = self.queue.get(job_id)
            deadline = time.monotonic() + timeout
            while job is not None and not job.status.terminal:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    ev = await asyncio.wait_for(events.get(), timeout=min(left, 1.0))
                    if not ev.terminal:
                        continue
                except asyncio.TimeoutError:
                    pass  # re-read below: another process (or a missed event) may have finished it
                job = self.queue.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}", field="id")
        return job

    # -- images ---------------------------------------------------------------------------------

    def image(self, image_id: str, owner: str | None) -> tuple[StoredImage, bytes]:
        check_key(image_id)
        info = self.queue.image_visible(image_id, owner)
        if info is None:
            raise ImageNotFound("no such image", field="id")
        return info, self.store.get(image_id)

    def image_redirect(self, image_id: str, owner: str | None, expires_s: int) -> str | None:
        """A direct URL to the image in object storage (presigned), when the store gives one and
        the caller may see the image; None when the API serves the bytes itself."""
        check_key(image_id)
        if self.queue.image_visible(image_id, owner) is None:
            raise ImageNotFound("no such image", field="id")
        return self.store.public_url(image_id, expires_s)

    # -- housekeeping ---------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        gone = self.queue.cleanup(time.time() - self.retention_s)
        for key in gone:
            self.store.delete(key)
        self.cache.forget_images(gone)
        if gone:
            log.info("retention: deleted %d stored files (images and edit inputs)", len(gone))
        return gone

    def _on_finished(self, job: Job) -> None:
        if job.webhook:
            payload = {"event": f"job.{job.status.value}", "job": public_job(job)}
            self.webhooks.schedule(job.webhook, f"job.{job.status.value}", payload)


def fill_defaults(request: GenerationRequest, model: str, d: ModelDefaults) -> GenerationRequest:
    """The same filling as ``Runner.resolve`` for a request that already has a seed."""
    return request.model_copy(
        update={
            "model": model,
            "width": request.width or d.width,
            "height": request.height or d.height,
            "steps": request.steps or d.steps,
            "guidance": d.guidance if request.guidance is None else request.guidance,
        }
    )


def public_job(job: Job) -> dict:
    """The job as clients see it (no owner)."""
    return job.model_dump(mode="json", exclude={"owner", "cancel_requested"})
