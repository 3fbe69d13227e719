"""HTTP shapes of the native API (they are what the OpenAPI spec shows)."""

from __future__ import annotations

from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.jobs import Job, JobStatus


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class NotReadyDetail(ErrorDetail):
    """``code`` is always ``not_ready``; ``reason`` says why, as a stable code a client can act on
    or translate (the studio does), while ``message`` says it in English."""

    reason: str = Field(
        description="worker_not_running | no_model_installed | database_unavailable", examples=["no_model_installed"]
    )


class NotReadyBody(BaseModel):
    error: NotReadyDetail


class JobCreate(GenerationRequest):
    """A generation request plus delivery options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: AnyHttpUrl | None = Field(
        default=None, description="POSTed the finished job, signed with X-Zaoxiang-Signature"
    )

    def generation(self) -> GenerationRequest:
        return GenerationRequest.model_validate(self.model_dump(exclude={"webhook"}))


class ImageView(BaseModel):
    id: str
    url: str
    index: int
    seed: int
    width: int
    height: int
    content_type: str


class JobUrls(BaseModel):
    job: str
    events: str
    cancel: str


class ProgressView(BaseModel):
    step: int
    total: int


class JobView(BaseModel):
    id: str
    status: JobStatus
    queue_position: int | None = Field(description="queued jobs that run before this one (0 = next); null unless queued")
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    cache_hit: bool
    request: GenerationRequest
    resolved: GenerationRequest | None
    model_revision: str | None
    error: ErrorDetail | None
    images: list[ImageView]
    progress: ProgressView | None
    timings: dict[str, float]
    urls: JobUrls


class JobList(BaseModel):
    data: list[JobView]
    next_cursor: str | None


class ModelView(BaseModel):
    id: str
    object: str = "model"
    name: str
    family: str
    kind: str
    revision: str
    default: bool
    warm: bool
    # Whether the model's packaged turbo LoRA is installed (what "turbo": true applies).
    turbo: bool = False
    # The one square size the model draws (the built-in model: 256); None: any multiple of 16.
    native_size: int | None = None


class LoraView(BaseModel):
    """A LoRA adapter requests may name in ``loras`` (besides "turbo", each model's own)."""

    name: str
    size_bytes: int


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelView]
    loras: list[LoraView] = Field(default_factory=list)


class Health(BaseModel):
    status: str
    detail: str | None = None


def job_view(job: Job, base: str, position: int | None, progress: Any = None) -> JobView:
    base = base.rstrip("/")
    return JobView(
        id=job.id,
        status=job.status,
        queue_position=position,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
        cache_hit=job.cache_hit,
        request=job.request,
        resolved=job.resolved,
        model_revision=job.model_revision,
        error=ErrorDetail(**job.error.model_dump()) if job.error else None,
        images=[ImageView(url=f"{base}/v1/images/{im.id}", **im.model_dump()) for im in job.images],
        progress=ProgressView(step=progress.step, total=progress.total) if progress is not None else None,
        timings=job.timings,
        urls=JobUrls(
            job=f"{base}/v1/jobs/{job.id}",
            events=f"{base}/v1/jobs/{job.id}/events",
            cancel=f"{base}/v1/jobs/{job.id}",
        ),
    )
