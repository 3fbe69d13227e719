"""The native API: jobs, their events, images, models, health."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from zaoxiang.api.deps import get_owner, get_service, prefer_wait, signature_valid
from zaoxiang.api.schemas import (
    ErrorBody,
    Health,
    JobCreate,
    JobList,
    JobView,
    LoraView,
    ModelList,
    ModelView,
    NotReadyBody,
    NotReadyDetail,
    job_view,
)
from zaoxiang.engine.lora import TURBO_FILE
from zaoxiang.service.core import Service
from zaoxiang.service.events import JobEvent
from zaoxiang.service.jobs import Job, JobStatus

router = APIRouter()

ERRORS = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    404: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
    429: {"model": ErrorBody},
}
JOB_ID = Path(pattern=r"^job_[0-9a-f]{24}$", description="job id", examples=["job_0123456789abcdef01234567"])
KEEPALIVE_S = 15.0


def _base(request: Request) -> str:
    return str(request.base_url)


def _view(svc: Service, job: Job, request: Request) -> JobView:
    progress = svc.bus.latest_progress(job.id) if job.status is JobStatus.running else None
    return job_view(job, _base(request), svc.position(job), progress)


@router.post("/v1/jobs", status_code=202, response_model=JobView, responses={200: {"model": JobView}, **ERRORS}, tags=["jobs"])
async def create_job(
    body: JobCreate,
    request: Request,
    owner: str = Depends(get_owner),
    prefer: str | None = Header(default=None, description="`wait=N`: hold the response up to N s for the result"),
) -> JSONResponse:
    """Queue a generation. 202 with the queued job; 200 when it is already finished (a cache hit,
    or ``Prefer: wait`` and it finished in time)."""
    svc = get_service(request)
    job, _ = svc.submit(body.generation(), owner, str(body.webhook) if body.webhook else None)
    headers = {"Location": f"/v1/jobs/{job.id}"}
    wait = prefer_wait(prefer, request.app.state.settings.service.max_wait_s)
    if wait is not None and not job.status.terminal:
        job = await svc.wait(job.id, wait)
        headers["Preference-Applied"] = f"wait={wait:g}"
    status = 200 if job.status.terminal else 202
    return JSONResponse(_view(svc, job, request).model_dump(mode="json"), status_code=status, headers=headers)


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=ERRORS, tags=["jobs"])
def get_job(request: Request, job_id: str = JOB_ID, owner: str = Depends(get_owner)) -> JobView:
    svc = get_service(request)
    return _view(svc, svc.get(job_id, owner), request)


@router.get("/v1/jobs", response_model=JobList, responses=ERRORS, tags=["jobs"])
def list_jobs(
    request: Request,
    owner: str = Depends(get_owner),
    status: JobStatus | None = Query(default=None),
    limit: int = Query(default=20, ge=1, le=100),
    cursor: str | None = Query(default=None, pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page"),
) -> JobList:
    """Your jobs, newest first."""
    svc = get_service(request)
    page = svc.list(owner, status, limit, cursor)
    return JobList(data=[_view(svc, j, request) for j in page.jobs], next_cursor=page.next_cursor)


@router.delete(
    "/v1/jobs/{job_id}",
    response_model=JobView,
    responses={204: {"description": "purged"}, 409: {"model": ErrorBody}, **ERRORS},
    tags=["jobs"],
)
async def cancel_job(
    request: Request,
    job_id: str = JOB_ID,
    owner: str = Depends(get_owner),
    purge: bool = Query(default=False, description="delete the finished job and the images no other job uses"),
) -> JobView | Response:
    """Cancel a queued job at once, or a running one within one denoising step. Answers with the
    job as it stands once cancelled (or after 10 s, still running with the cancel pending).
    With ``purge=true``: delete a finished job now (204), 409 ``job_not_finished`` while it is
    queued or running."""
    svc = get_service(request)
    if purge:
        svc.delete_job(job_id, owner)
        return Response(status_code=204)
    job = svc.cancel(job_id, owner)
    if not job.status.terminal:
        job = await svc.wait(job_id, 10.0)
    return _view(svc, job, request)


def _sse(event: JobEvent, seq: int) -> str:
    data = event.model_dump(mode="json", exclude_none=True)
    return f"id: {seq}\nevent: {event.type}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _snapshot(svc: Service, job: Job) -> list[JobEvent]:
    """What a client joining now needs to catch up: the current state as events."""
    if job.status is JobStatus.queued:
        return [JobEvent(type="queued", job_id=job.id, queue_position=svc.position(job))]
    if job.status is JobStatus.running:
        evs = [JobEvent(type="started", job_id=job.id)]
        if (p := svc.bus.latest_progress(job.id)) is not None:
            evs.append(p)
        return evs
    kind = job.status.value
    return [JobEvent(type=kind, job_id=job.id, images=job.images or None, error=job.error)]  # type: ignore[arg-type]


@router.get(
    "/v1/jobs/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}, **ERRORS},
    tags=["jobs"],
)
async def job_events(request: Request, job_id: str = JOB_ID, owner: str = Depends(get_owner)) -> StreamingResponse:
    """Server-Sent Events: ``queued``, ``started``, ``progress`` {step, total, preview?},
    then one of ``succeeded``, ``failed``, ``cancelled``, after which the stream ends."""
    svc = get_service(request)
    svc.get(job_id, owner)

    async def stream() -> AsyncIterator[str]:
        seq = 0
        async with svc.bus.subscribe(job_id) as events:
            job = svc.get(job_id, owner)
            for ev in _snapshot(svc, job):
                seq += 1
                yield _sse(ev, seq)
            if job.status.terminal:
                return
            while True:
                try:
                    ev = await asyncio.wait_for(events.get(), timeout=KEEPALIVE_S)
                except asyncio.TimeoutError:
                    job = svc.get(job_id, owner)
                    if job.status.terminal:  # finished where this bus could not see it
                        seq += 1
                        yield _sse(_snapshot(svc, job)[-1], seq)
                        return
                    yield ": keep-alive\n\n"
                    continue
                seq += 1
                yield _sse(ev, seq)
                if ev.terminal:
                    return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get(
    "/v1/images/{image_id}",
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}, **ERRORS},
    response_class=Response,
    tags=["images"],
)
def get_image(
    request: Request,
    image_id: str = Path(pattern=r"^[0-9a-f]{64}$"),
    expires: int | None = Query(default=None, ge=0, le=2**62, description="signed-URL expiry (epoch s)"),
    sig: str | None = Query(default=None, max_length=64, description="signed-URL signature"),
    authorization: str | None = Header(default=None),
    x_api_key: str | None = Header(default=None),
) -> Response:
    """An image with its metadata embedded (A1111 ``parameters`` text and a ``zaoxiang`` JSON
    chunk). Needs the key that made it, or a signed URL."""
    svc = get_service(request)
    if signature_valid(request.app.state.server_secret, image_id, expires, sig):
        owner = None
    else:
        owner = get_owner(request, authorization, x_api_key)
    if (url := svc.image_redirect(image_id, owner, request.app.state.settings.service.s3.presign_expires_s)) is not None:
        # Object storage with presigned URLs: the bytes go from S3 to the client, not through us.
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    info, data = svc.image(image_id, owner)
    return Response(
        data,
        media_type=info.content_type,
        headers={"Cache-Control": "private, max-age=31536000, immutable", "ETag": f'"{image_id}"'},
    )


@router.get("/v1/models", response_model=ModelList, responses=ERRORS, tags=["models"])
def list_models(request: Request, owner: str = Depends(get_owner)) -> ModelList:
    svc = get_service(request)
    registry = svc.runner.registry
    warm = set(svc.runner.warm_models())
    return ModelList(
        data=[
            ModelView(
                id=e.name,
                name=e.name,
                family=e.family,
                kind=e.kind,
                revision=registry.revision(e),
                default=e.name == registry.default,
                warm=e.name in warm,
                turbo=(e.path / TURBO_FILE).is_file(),
                native_size=e.native_size,
            )
            for e in registry.list()
        ],
        loras=[LoraView(name=i.name, size_bytes=i.size_bytes) for i in svc.runner.loras.list()],
    )


@router.get("/healthz", response_model=Health, tags=["health"])
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": NotReadyBody}}, tags=["health"])
def readyz(request: Request) -> Response:
    """Ready to take jobs: worker alive, database reachable, at least one model. Otherwise 503
    ``not_ready`` with ``reason``: ``worker_not_running``, ``no_model_installed`` or
    ``database_unavailable``."""
    state = get_service(request).ready()
    if not state.ok:
        body = NotReadyBody(error=NotReadyDetail(code="not_ready", message=state.message, reason=state.code))
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    return JSONResponse(Health(status="ready").model_dump(exclude_none=True))

