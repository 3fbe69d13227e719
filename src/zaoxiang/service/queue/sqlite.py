"""The embedded job queue: one SQLite file in WAL mode.

WAL lets the API read while the worker writes, and with ``synchronous=NORMAL`` a committed job
survives a killed process (only a power cut can lose the last commits). Every write runs in a
``BEGIN IMMEDIATE`` transaction so claims are atomic even with several processes on one file.
One connection per queue object, guarded by a lock: statements take microseconds, so a lock is
simpler than a pool and never the bottleneck next to a diffusion step.
"""

from __future__ import annotations

import heapq
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.exceptions import JobNotCancellable, JobNotFinished, JobNotFound, QueueFull
from zaoxiang.service.jobs import Job, JobError, JobStatus, StoredImage, input_keys
from zaoxiang.service.queue.base import JobQueue, Page, Recovery

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    finished_at REAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, seq);
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,
    last_served INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS job_images (
    job_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, image_id)
);
CREATE INDEX IF NOT EXISTS job_images_image ON job_images(image_id, owner);
CREATE TABLE IF NOT EXISTS job_inputs (
    job_id TEXT NOT NULL,
    input_id TEXT NOT NULL,
    PRIMARY KEY (job_id, input_id)
);
CREATE INDEX IF NOT EXISTS job_inputs_input ON job_inputs(input_id);
"""
# user_version 1: job_inputs holds every job's edit inputs (a file from before it is backfilled).
SCHEMA_VERSION = 1


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SqliteJobQueue(JobQueue):
    def __init__(self, path: Path, max_queued: int = 1000) -> None:
        self.path = Path(path)
        self.max_queued = max_queued
        self._conn = connect(self.path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as c:
            if c.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                return
            # Jobs queued before job_inputs existed: link their inputs so retention counts them.
            for (data,) in c.execute("SELECT data FROM jobs WHERE data LIKE '%\"edit\":{%'").fetchall():
                self._link_inputs(c, Job.model_validate_json(data))
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    @staticmethod
    def _load(c: sqlite3.Connection, job_id: str) -> Job:
        row = c.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}", field="id")
        return Job.model_validate_json(row[0])

    @staticmethod
    def _save(c: sqlite3.Connection, job: Job) -> None:
        c.execute(
            "UPDATE jobs SET status = ?, finished_at = ?, data = ? WHERE id = ?",
            (job.status.value, job.finished_at, job.model_dump_json(), job.id),
        )

    # -- submit / claim -------------------------------------------------------------------------

    def submit(self, job: Job) -> int:
        with self._tx() as c:
            depth = c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if depth >= self.max_queued:
                raise QueueFull(
                    f"the queue is full ({depth} jobs waiting; the limit is {self.max_queued})",
                    retry_after=self._typical_duration(c),
                )
            job = job.model_copy(update={"status": JobStatus.queued})
            c.execute(
                "INSERT INTO jobs (id, owner, status, finished_at, data) VALUES (?, ?, ?, NULL, ?)",
                (job.id, job.owner, job.status.value, job.model_dump_json()),
            )
            self._link_inputs(c, job)
            return self._positions(c).get(job.id, 0)

    def insert_finished(self, job: Job) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO jobs (id, owner, status, finished_at, data) VALUES (?, ?, ?, ?, ?)",
                (job.id, job.owner, job.status.value, job.finished_at, job.model_dump_json()),
            )
            self._link_images(c, job)
            self._link_inputs(c, job)

    def claim(self) -> Job | None:
        with self._tx() as c:
            row = c.execute(
                "SELECT j.id, j.owner FROM jobs j LEFT JOIN owners o ON o.owner = j.owner "
                "WHERE j.status = 'queued' ORDER BY COALESCE(o.last_served, 0), j.seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            job_id, owner = row
            counter = c.execute("SELECT COALESCE(MAX(last_served), 0) + 1 FROM owners").fetchone()[0]
            c.execute(
                "INSERT INTO owners (owner, last_served) VALUES (?, ?) "
                "ON CONFLICT(owner) DO UPDATE SET last_served = excluded.last_served",
                (owner, counter),
            )
            job = self._load(c, job_id)
            job.status = JobStatus.running
            job.started_at = time.time()
            job.attempts += 1
            self._save(c, job)
            return job

    # -- reads ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._read() as c:
            row = c.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    def list(self, owner: str | None, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None) -> Page:
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        if cursor is not None:
            where.append("seq < ?")
            args.append(int(cursor))
        sql = "SELECT seq, data FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit + 1)
        with self._read() as c:
            rows = c.execute(sql, args).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            jobs=[Job.model_validate_json(d) for _, d in rows],
            next_cursor=str(rows[-1][0]) if more and rows else None,
        )

    def position(self, job_id: str) -> int | None:
        with self._read() as c:
            return self._positions(c).get(job_id)

    def depth(self) -> int:
        with self._read() as c:
            return c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]

    @staticmethod
    def _positions(c: sqlite3.Connection) -> dict[str, int]:
        """Replay the claim order over the queued jobs (same rule as ``claim``)."""
        served = dict(c.execute("SELECT owner, last_served FROM owners").fetchall())
        per_owner: dict[str, list[tuple[int, str]]] = {}
        for seq, job_id, owner in c.execute("SELECT seq, id, owner FROM jobs WHERE status = 'queued' ORDER BY seq"):
            per_owner.setdefault(owner, []).append((seq, job_id))
        counter = max(served.values(), default=0)
        heap = [(served.get(o, 0), jobs[0][0], o) for o, jobs in per_owner.items()]
        heapq.heapify(heap)
        order: dict[str, int] = {}
        while heap:
            _, _, owner = heapq.heappop(heap)
            queue = per_owner[owner]
            order[queue.pop(0)[1]] = len(order)
            counter += 1
            if queue:
                heapq.heappush(heap, (counter, queue[0][0], owner))
        return order

    @staticmethod
    def _typical_duration(c: sqlite3.Connection) -> float:
        rows = c.execute("SELECT data FROM jobs WHERE status = 'succeeded' ORDER BY seq DESC LIMIT 20").fetchall()
        spans = [
            j.finished_at - j.started_at
            for j in (Job.model_validate_json(r[0]) for r in rows)
            if j.started_at is not None and j.finished_at is not None and not j.cache_hit
        ]
        return sum(spans) / len(spans) if spans else 5.0

    # -- transitions ----------------------------------------------------------------------------

    def set_resolved(self, job_id: str, resolved: GenerationRequest, model_revision: str) -> None:
        with self._tx() as c:
            job = self._load(c, job_id)
            job.resolved = resolved
            job.model_revision = model_revision
            self._save(c, job)

    def succeed(self, job_id: str, images: list[StoredImage], cache_hit: bool, timings: dict[str, float]) -> Job:
        with self._tx() as c:
            job = self._load(c, job_id)
            job.status = JobStatus.succeeded
            job.images = list(images)
            job.cache_hit = cache_hit
            job.timings = dict(timings)
            job.finished_at = time.time()
            self._save(c, job)
            self._link_images(c, job)
            return job

    def fail(self, job_id: str, error: JobError) -> Job:
        with self._tx() as c:
            job = self._load(c, job_id)
            job.status = JobStatus.failed
            job.error = error
            job.finished_at = time.time()
            self._save(c, job)
            return job

    def request_cancel(self, job_id: str) -> Job:
        with self._tx() as c:
            job = self._load(c, job_id)
            if job.status.terminal:
                raise JobNotCancellable(f"job {job_id} has already {job.status.value}", field="id")
            job.cancel_requested = True
            if job.status is JobStatus.queued:
                job.status = JobStatus.cancelled
                job.finished_at = time.time()
                job.error = JobError(code="cancelled", message="cancelled before it started")
            self._save(c, job)
            return job

    def mark_cancelled(self, job_id: str, message: str) -> Job:
        with self._tx() as c:
            job = self._load(c, job_id)
            job.status = JobStatus.cancelled
            job.cancel_requested = True
            job.finished_at = time.time()
            job.error = JobError(code="cancelled", message=message)
            self._save(c, job)
            return job

    def release(self, job_id: str) -> None:
        with self._tx() as c:
            job = self._load(c, job_id)
            if job.status is not JobStatus.running:
                return
            job.status = JobStatus.queued
            job.started_at = None
            job.attempts = max(0, job.attempts - 1)
            self._save(c, job)

    @staticmethod
    def _link_images(c: sqlite3.Connection, job: Job) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO job_images (job_id, image_id, owner, data) VALUES (?, ?, ?, ?)",
            [(job.id, im.id, job.owner, im.model_dump_json()) for im in job.images],
        )

    @staticmethod
    def _link_inputs(c: sqlite3.Connection, job: Job) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO job_inputs (job_id, input_id) VALUES (?, ?)", [(job.id, k) for k in input_keys(job)]
        )

    @staticmethod
    def _unlink(c: sqlite3.Connection, job_ids: list[str]) -> set[str]:
        """Drop the jobs' image and input links; return every store key they named."""
        marks = ",".join("?" * len(job_ids))
        keys = {r[0] for r in c.execute(f"SELECT image_id FROM job_images WHERE job_id IN ({marks})", job_ids)}
        keys |= {r[0] for r in c.execute(f"SELECT input_id FROM job_inputs WHERE job_id IN ({marks})", job_ids)}
        c.execute(f"DELETE FROM job_images WHERE job_id IN ({marks})", job_ids)
        c.execute(f"DELETE FROM job_inputs WHERE job_id IN ({marks})", job_ids)
        return keys

    @staticmethod
    def _unreferenced(c: sqlite3.Connection, keys: set[str]) -> list[str]:
        # A key may be one job's result and another's edit input (content addressing): it stays
        # while either kind of link remains. Both lookups are indexed.
        return sorted(
            k
            for k in keys
            if c.execute("SELECT 1 FROM job_images WHERE image_id = ? LIMIT 1", (k,)).fetchone() is None
            and c.execute("SELECT 1 FROM job_inputs WHERE input_id = ? LIMIT 1", (k,)).fetchone() is None
        )

    # -- crash recovery and retention -----------------------------------------------------------

    def recover(self, max_attempts: int) -> Recovery:
        requeued, failed = [], []
        with self._tx() as c:
            for (data,) in c.execute("SELECT data FROM jobs WHERE status = 'running' ORDER BY seq").fetchall():
                job = Job.model_validate_json(data)
                if job.cancel_requested:
                    job.status = JobStatus.cancelled
                    job.error = JobError(code="cancelled", message="cancelled; the server stopped while it ran")
                    job.finished_at = time.time()
                    failed.append(job.id)
                elif job.attempts < max_attempts:
                    job.status = JobStatus.queued
                    job.started_at = None
                    requeued.append(job.id)
                else:
                    job.status = JobStatus.failed
                    job.finished_at = time.time()
                    job.error = JobError(
                        code="worker_crashed",
                        message=f"the server stopped while this job ran, {job.attempts} times; not retrying",
                    )
                    failed.append(job.id)
                self._save(c, job)
        return Recovery(requeued=requeued, failed=failed)

    def cleanup(self, older_than: float) -> list[str]:
        with self._tx() as c:
            old = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?",
                    (older_than,),
                )
            ]
            if not old:
                return []
            keys = self._unlink(c, old)
            c.execute(f"DELETE FROM jobs WHERE id IN ({','.join('?' * len(old))})", old)
            return self._unreferenced(c, keys)

    def delete(self, job_id: str, owner: str | None) -> list[str]:
        with self._tx() as c:
            job = self._load(c, job_id)
            if owner is not None and job.owner != owner:
                raise JobNotFound(f"no job {job_id!r}", field="id")
            if not job.status.terminal:
                raise JobNotFinished(f"job {job_id} is {job.status.value}; cancel it first", field="id")
            keys = self._unlink(c, [job_id])
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            # The same transaction sees every other job's links, so no concurrent cache hit or
            # submit can link a key between this check and the delete.
            return self._unreferenced(c, keys)

    def unreferenced(self, keys: list[str]) -> list[str]:
        with self._read() as c:
            return self._unreferenced(c, set(keys))

    def image_visible(self, image_id: str, owner: str | None) -> StoredImage | None:
        sql, args = "SELECT data FROM job_images WHERE image_id = ?", [image_id]
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        with self._read() as c:
            row = c.execute(sql + " LIMIT 1", args).fetchone()
        return StoredImage.model_validate_json(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
