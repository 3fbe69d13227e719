"""The job queue interface.

A queue is the source of truth for job state. Backends must make ``claim`` atomic across
processes (two workers never get the same job) and must keep jobs across restarts.
Ordering is FIFO per owner with round-robin fairness between owners: the owner who was served
least recently goes next, so one key's burst cannot starve another's single job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.jobs import Job, JobError, JobStatus, StoredImage


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None  # pass back as ``cursor`` for the next (older) page


@dataclass(frozen=True)
class Recovery:
    requeued: list[str]  # ran at a crash and will be tried again
    failed: list[str]  # ran at a crash and had used up their attempts


class JobQueue(ABC):
    @abstractmethod
    def submit(self, job: Job) -> int:
        """Persist a queued job and link its edit inputs (``jobs.input_keys``) in the same write;
        return its queue position (0 = next). Raise QueueFull when full."""

    @abstractmethod
    def insert_finished(self, job: Job) -> None:
        """Record a job that never queued (a cache hit) so it can be fetched and listed."""

    @abstractmethod
    def claim(self) -> Job | None:
        """Atomically take the next job by the fairness order, mark it running, count an attempt."""

    @abstractmethod
    def get(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def list(self, owner: str | None, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None) -> Page:
        """Newest first. ``owner=None`` lists every owner's jobs."""

    @abstractmethod
    def position(self, job_id: str) -> int | None:
        """How many queued jobs run before this one; None when it is not queued."""

    @abstractmethod
    def depth(self) -> int:
        """Queued jobs now."""

    @abstractmethod
    def set_resolved(self, job_id: str, resolved: GenerationRequest, model_revision: str) -> None: ...

    @abstractmethod
    def succeed(self, job_id: str, images: list[StoredImage], cache_hit: bool, timings: dict[str, float]) -> Job: ...

    @abstractmethod
    def fail(self, job_id: str, error: JobError) -> Job: ...

    @abstractmethod
    def request_cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once; flag a running one (the worker stops it). Returns the job."""

    @abstractmethod
    def mark_cancelled(self, job_id: str, message: str) -> Job: ...

    @abstractmethod
    def release(self, job_id: str) -> None:
        """Put a running job back at its place in the queue without counting the attempt
        (the server is shutting down cleanly)."""

    @abstractmethod
    def recover(self, max_attempts: int) -> Recovery:
        """After a crash: jobs left ``running`` go back to the queue or fail with a reason."""

    @abstractmethod
    def cleanup(self, older_than: float) -> list[str]:
        """Delete finished jobs that ended before ``older_than`` (epoch s); return the store keys
        (result images and edit inputs) no remaining job references as either (the caller deletes
        them from the store)."""

    @abstractmethod
    def delete(self, job_id: str, owner: str | None) -> list[str]:
        """Delete one finished job of ``owner`` (any owner when None) now; return the store keys
        (result images and edit inputs) no remaining job references as either (the caller deletes
        them from the store). Raise JobNotFound
        when there is no such job or it is another owner's, JobNotFinished while it is queued
        or running."""

    @abstractmethod
    def unreferenced(self, keys: list[str]) -> list[str]:
        """Those of ``keys`` that no job names as a result image or an edit input (sorted)."""

    @abstractmethod
    def image_visible(self, image_id: str, owner: str | None) -> StoredImage | None:
        """The image if a job of ``owner`` (any owner when None) produced it."""

    def close(self) -> None:
        """Release connections."""
