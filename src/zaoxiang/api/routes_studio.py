"""Two small endpoints the web studio needs and the native API lacks: history and gallery search
by prompt, and deleting a finished job from them.

Deleting is the real delete (``Service.delete_job``): the job goes, and with it each image no other
job references. Older versions only hid removed jobs, listed per key in ``studio.sqlite3`` beside
the job database; on first use such a file is replayed as real deletes and then removed, so jobs
a user removed before an upgrade do not come back.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path as FsPath

from fastapi import APIRouter, Depends, Query, Request, Response

from zaoxiang.api.deps import get_owner, get_service
from zaoxiang.api.routes_native import ERRORS, JOB_ID, _view
from zaoxiang.api.schemas import ErrorBody, JobList
from zaoxiang.service.core import Service
from zaoxiang.service.exceptions import JobNotFinished, JobNotFound
from zaoxiang.service.jobs import Job, JobStatus

log = logging.getLogger(__name__)

router = APIRouter()

LEGACY_DB = "studio.sqlite3"
PAGE_MAX = 100
# A prompt search reads at most this many jobs per request and hands back a cursor to go on,
# so one search over a huge history never holds the database for long.
SCAN_BUDGET = 2000


def replay_legacy_removals(svc: Service, data_dir: FsPath) -> int:
    """Delete for real the jobs an older studio only hid, then drop its file. Returns how many
    jobs were deleted. A job that is gone already (retention) is skipped."""
    path = data_dir / LEGACY_DB
    if not path.exists():
        return 0
    conn = sqlite3.connect(str(path))
    try:
        rows = conn.execute("SELECT owner, job_id FROM removed").fetchall()
    except sqlite3.OperationalError:  # no table: nothing was ever removed
        rows = []
    finally:
        conn.close()
    deleted = 0
    for owner, job_id in rows:
        try:
            svc.delete_job(job_id, owner)
            deleted += 1
        except (JobNotFound, JobNotFinished):
            continue
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    if deleted:
        log.info("studio: deleted %d jobs removed before the upgrade", deleted)
    return deleted


def _service(request: Request) -> Service:
    """The app's Service, after replaying an older studio's removals once (the app factory knows
    nothing of the studio, so this happens on its first request)."""
    svc = get_service(request)
    state = request.app.state
    # No lock: two first requests replaying at once is harmless (the second finds the jobs gone).
    if not getattr(state, "studio_legacy_done", False):
        replay_legacy_removals(svc, FsPath(state.settings.data_dir).expanduser())
        state.studio_legacy_done = True
    return svc


def _matches(job: Job, words: list[str]) -> bool:
    text = job.request.prompt.casefold()
    return all(w in text for w in words)


@router.get("/v1/studio/jobs", response_model=JobList, responses=ERRORS, tags=["studio"])
def studio_jobs(
    request: Request,
    owner: str = Depends(get_owner),
    q: str = Query(default="", max_length=200, description="words that must all occur in the prompt (any case)"),
    status: JobStatus | None = Query(default=None),
    limit: int = Query(default=24, ge=1, le=PAGE_MAX),
    cursor: str | None = Query(default=None, pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page"),
) -> JobList:
    """Your jobs, newest first; ``q`` searches the prompts.
    A page may hold fewer than ``limit`` jobs and still have a ``next_cursor`` (the search
    stopped at its read budget)."""
    svc = _service(request)
    words = q.casefold().split()
    found: list[Job] = []
    scanned = 0
    while len(found) < limit and scanned < SCAN_BUDGET:
        # Ask for exactly the jobs still wanted, so the page's cursor never skips an unread job.
        page = svc.list(owner, status, limit - len(found), cursor)
        scanned += len(page.jobs)
        found += [j for j in page.jobs if _matches(j, words)]
        cursor = page.next_cursor
        if cursor is None:
            break
    return JobList(data=[_view(svc, j, request) for j in found], next_cursor=cursor)


@router.delete(
    "/v1/studio/jobs/{job_id}",
    status_code=204,
    response_class=Response,
    responses={409: {"model": ErrorBody}, **ERRORS},
    tags=["studio"],
)
def delete_job(request: Request, job_id: str = JOB_ID, owner: str = Depends(get_owner)) -> Response:
    """Delete a finished job and the images no other job uses (``DELETE /v1/jobs/{id}?purge=true``).
    A queued or running job must be cancelled first (``DELETE /v1/jobs/{id}``)."""
    _service(request).delete_job(job_id, owner)
    return Response(status_code=204)
