"""Typed job records: what the queue stores and the API shows."""

from __future__ import annotations

import enum
import secrets
import time

from pydantic import BaseModel, ConfigDict, Field

from zaoxiang.errors import ZaoxiangError
from zaoxiang.protocol import GenerationRequest

ANONYMOUS = "anonymous"  # owner of jobs submitted without a key (loopback only)


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class JobError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    field: str | None = None

    @classmethod
    def from_exc(cls, exc: ZaoxiangError) -> "JobError":
        return cls(code=exc.code, message=exc.message, field=exc.field)


class StoredImage(BaseModel):
    """One image a job produced: the store's content address plus what a client needs to show it."""

    model_config = ConfigDict(frozen=True)

    id: str  # sha256 of the file's bytes; the store's key
    index: int
    seed: int
    width: int
    height: int
    content_type: str


class Job(BaseModel):
    id: str
    owner: str = ANONYMOUS
    status: JobStatus = JobStatus.queued
    request: GenerationRequest  # as submitted (seed may be None)
    resolved: GenerationRequest | None = None  # filled by the worker: defaults and seed
    webhook: str | None = None
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    cache_hit: bool = False
    error: JobError | None = None
    images: list[StoredImage] = Field(default_factory=list)
    model_revision: str | None = None
    # The canary alias the request named when routing replaced its model (request.model).
    routed_from: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)


def request_input_keys(*requests: GenerationRequest | None) -> list[str]:
    """Store keys of the edit inputs (image, mask) the requests read."""
    keys: set[str] = set()
    for req in requests:
        if req is not None and req.edit is not None:
            keys.add(req.edit.image)
            if req.edit.mask is not None:
                keys.add(req.edit.mask)
    return sorted(keys)


def input_keys(job: Job) -> list[str]:
    """Store keys of the edit inputs the job reads: they stay in the store while a job names
    them, like its result images, and go with the last such job."""
    return request_input_keys(job.request, job.resolved)


def new_job_id() -> str:
    # 96 random bits: ids are not guessable, so they leak nothing even before the owner check.
    return "job_" + secrets.token_hex(12)
