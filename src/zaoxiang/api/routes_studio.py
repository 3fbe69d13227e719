"""Two small endpoints the web studio needs and the native API lacks: history and gallery search
by prompt, and removing a finished job from them.

The job queue stays the single source of truth for jobs and images; "removed" jobs are recorded
here, in their own small SQLite file beside the job database, and left out of every studio list.
Their image files go with the job store's normal retention, because an image is content-addressed
and another job (a cache hit, possibly another key's) may point at the same file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path as FsPath

from fastapi import APIRouter, Depends, Query, Request, Response

from zaoxiang.api.deps import get_owner, get_service
from zaoxiang.api.routes_native import ERRORS, JOB_ID, _view
from zaoxiang.api.schemas import ErrorBody, JobList
from zaoxiang.errors import ZaoxiangError
from zaoxiang.service.jobs import Job, JobStatus

router = APIRouter()

STUDIO_DB = "studio.sqlite3"
PAGE_MAX = 100
# A prompt search reads at most this many jobs per request and hands back a cursor to go on,
# so one search over a huge history never holds the database for long.
SCAN_BUDGET = 2000


class JobNotFinished(ZaoxiangError):
    code = "job_not_finished"
    http_status = 409


class RemovedJobs:
    """Which jobs each owner removed from the studio. One connection, guarded by a lock (as the
    job queue does): statements take microseconds."""

    def __init__(self, path: FsPath) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS removed (owner TEXT NOT NULL, job_id TEXT NOT NULL, "
                "removed_at REAL NOT NULL, PRIMARY KEY (owner, job_id))"
            )

    def add(self, owner: str, job_id: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO removed (owner, job_id, removed_at) VALUES (?, ?, ?)", (owner, job_id, time.time())
            )

    def among(self, owner: str, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        marks = ",".join("?" * len(job_ids))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT job_id FROM removed WHERE owner = ? AND job_id IN ({marks})", [owner, *job_ids]
            ).fetchall()
        return {r[0] for r in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def get_removed(request: Request) -> RemovedJobs:
    """The app's RemovedJobs, opened on first use (the app factory knows nothing of the studio)."""
    state = request.app.state
    removed = getattr(state, "studio_removed", None)
    if removed is None:
        data_dir = FsPath(request.app.state.settings.data_dir).expanduser()
        removed = state.studio_removed = RemovedJobs(data_dir / STUDIO_DB)
    return removed


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
    """Your jobs, newest first, without the ones you removed; ``q`` searches the prompts.
    A page may hold fewer than ``limit`` jobs and still have a ``next_cursor`` (the search
    stopped at its read budget)."""
    svc = get_service(request)
    removed = get_removed(request)
    words = q.casefold().split()
    found: list[Job] = []
    scanned = 0
    while len(found) < limit and scanned < SCAN_BUDGET:
        # Ask for exactly the jobs still wanted, so the page's cursor never skips an unread job.
        page = svc.list(owner, status, limit - len(found), cursor)
        scanned += len(page.jobs)
        gone = removed.among(owner, [j.id for j in page.jobs])
        found += [j for j in page.jobs if j.id not in gone and _matches(j, words)]
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
def remove_job(request: Request, job_id: str = JOB_ID, owner: str = Depends(get_owner)) -> Response:
    """Remove a finished job from your history and gallery. A queued or running job must be
    cancelled first (``DELETE /v1/jobs/{id}``)."""
    job = get_service(request).get(job_id, owner)
    if not job.status.terminal:
        raise JobNotFinished(f"job {job_id} is {job.status.value}; cancel it first", field="id")
    get_removed(request).add(owner, job_id)
    return Response(status_code=204)
