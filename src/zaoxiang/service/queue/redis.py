"""The distributed job queue: Redis Streams with a consumer group, one stream per model.

Layout (every key starts with the configured prefix ``P``):

- ``P:job:<id>`` hash — ``data`` (the Job as JSON) plus the fields several processes change
  (``status``, ``attempts``, ``started_at``, ``cancel``, and ``stream``/``entry`` of the claim).
  Reads overlay those fields on ``data``; every read-modify-write runs under WATCH/MULTI, so a
  cancel from an API server and a completion from a worker never overwrite each other.
- Waiting jobs of model ``m`` sit in one list per owner ``P:q:<m>:o:<owner>``; the zset
  ``P:q:<m>:owners`` orders owners by when they were last served, so one key's burst cannot
  starve another key's single job (the same rule as the SQLite queue).
- ``P:img:<key>`` hash (job id → owner and image) and ``P:in:<key>`` set (job ids) say which
  jobs name a store key as a result image or as an edit input; a key leaves the store when the
  last job naming it either way is deleted (retention or purge).
- ``P:s:<m>`` is the stream of model ``m`` with the consumer group ``workers``. A claim is one
  Lua script: take the next job by the fairness order, XADD it, XREADGROUP it — so the stream
  only ever holds jobs that a worker has claimed, and its pending list (PEL) is the set of
  running jobs with the time since their owner last touched them.
- A worker re-asserts its claims every ``heartbeat_s`` (XCLAIM with JUSTID resets the idle
  time). An entry idle for ``claim_timeout_s`` belongs to a dead worker: another worker takes
  it over with XAUTOCLAIM, counts an attempt, and runs it again, or fails it with
  ``worker_crashed`` once ``max_attempts`` are used.
- Completion is idempotent: the first terminal transition wins, later ones (a worker that was
  presumed dead but was only slow) change nothing and just acknowledge their entry.

Model affinity: a worker first takes the jobs of the models it has warm; it takes a job of a
model it would have to load only when no live worker advertises that model warm, or when the
oldest waiting job of that model has waited ``cold_claim_delay_s``. Per-model streams make
that a choice of which stream to read, with no scanning of other models' jobs.

Not for Redis Cluster: the Lua scripts touch keys of one model and one owner that are not
hash-tagged together. One Redis (with a replica / Sentinel for failover) is the intended shape.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import redis

from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.exceptions import JobNotCancellable, JobNotFinished, JobNotFound, QueueFull
from zaoxiang.service.jobs import Job, JobError, JobStatus, StoredImage, input_keys
from zaoxiang.service.queue.base import JobQueue, Page, Recovery

log = logging.getLogger(__name__)

GROUP = "workers"

# KEYS: queued, model ids, model owners, owner list, served hash, job, jobs, owner jobs, seq, models, wake,
#       then one input set per edit input of the job (linked here so a refused job links nothing)
# ARGV: max_queued, job id, now ms, owner, job json, model
SUBMIT = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
local seq = redis.call('INCR', KEYS[9])
redis.call('HSET', KEYS[6], 'data', ARGV[5], 'status', 'queued', 'attempts', '0', 'started_at', '',
           'cancel', '0', 'owner', ARGV[4], 'model', ARGV[6], 'seq', seq)
redis.call('ZADD', KEYS[7], seq, ARGV[2])
redis.call('ZADD', KEYS[8], seq, ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('RPUSH', KEYS[4], ARGV[2])
if not redis.call('ZSCORE', KEYS[3], ARGV[4]) then
  redis.call('ZADD', KEYS[3], tonumber(redis.call('HGET', KEYS[5], ARGV[4]) or '0'), ARGV[4])
end
redis.call('SADD', KEYS[10], ARGV[6])
for i = 12, #KEYS do redis.call('SADD', KEYS[i], ARGV[2]) end
redis.call('LPUSH', KEYS[11], '1')
redis.call('LTRIM', KEYS[11], 0, 15)
return seq
"""

# KEYS: stream, model owners, model ids, queued, served hash, served counter
# ARGV: group, consumer, now (epoch s), prefix, model
CLAIM = """
local function read()
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
  if r and r[1] and r[1][2] and r[1][2][1] then return r[1][2][1] end
  return nil
end
local e = read()
while not e do
  local top = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #top == 0 then return nil end
  local owner = top[1]
  local lkey = ARGV[4] .. ':q:' .. ARGV[5] .. ':o:' .. owner
  local jid = redis.call('LPOP', lkey)
  if not jid then
    redis.call('ZREM', KEYS[2], owner)
  else
    local ctr = redis.call('INCR', KEYS[6])
    redis.call('HSET', KEYS[5], owner, ctr)
    if redis.call('LLEN', lkey) == 0 then redis.call('ZREM', KEYS[2], owner)
    else redis.call('ZADD', KEYS[2], ctr, owner) end
    redis.call('ZREM', KEYS[3], jid)
    redis.call('ZREM', KEYS[4], jid)
    redis.call('XADD', KEYS[1], '*', 'job', jid)
    e = read()
  end
end
local jid = e[2][2]
local jkey = ARGV[4] .. ':job:' .. jid
redis.call('HSET', jkey, 'status', 'running', 'started_at', ARGV[3], 'stream', KEYS[1], 'entry', e[1])
redis.call('HINCRBY', jkey, 'attempts', 1)
return {e[1], jid}
"""


@dataclass(frozen=True)
class Keys:
    p: str

    def job(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}"

    @property
    def jobs(self) -> str:
        return f"{self.p}:jobs"

    def owner_jobs(self, owner: str) -> str:
        return f"{self.p}:jobs:o:{owner}"

    @property
    def seq(self) -> str:
        return f"{self.p}:seq"

    @property
    def queued(self) -> str:
        return f"{self.p}:queued"

    @property
    def finished(self) -> str:
        return f"{self.p}:finished"

    @property
    def models(self) -> str:
        return f"{self.p}:models"

    @property
    def wake(self) -> str:
        return f"{self.p}:wake"

    @property
    def cancel_channel(self) -> str:
        return f"{self.p}:cancel"

    def ids(self, model: str) -> str:
        return f"{self.p}:q:{model}:ids"

    def owners(self, model: str) -> str:
        return f"{self.p}:q:{model}:owners"

    def owner_list(self, model: str, owner: str) -> str:
        return f"{self.p}:q:{model}:o:{owner}"

    def served(self, model: str) -> str:
        return f"{self.p}:q:{model}:served"

    def served_counter(self, model: str) -> str:
        return f"{self.p}:q:{model}:ctr"

    def stream(self, model: str) -> str:
        return f"{self.p}:s:{model}"

    def image(self, image_id: str) -> str:
        return f"{self.p}:img:{image_id}"

    def input(self, key: str) -> str:
        return f"{self.p}:in:{key}"

    def warm(self, model: str) -> str:
        return f"{self.p}:warm:{model}"

    def worker(self, consumer: str) -> str:
        return f"{self.p}:worker:{consumer}"


def _f(v: str | None) -> float | None:
    return float(v) if v else None


class RedisJobQueue(JobQueue):
    """``consumer`` names this process in the consumer group; only workers need one (an
    API-only process never claims). ``models``/``warm`` say which models this worker serves
    and which it has loaded now (``Runner.registry`` / ``Runner.warm_models``)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "zx",
        model_of: Callable[[Job], str] = lambda job: job.request.model or "default",
        max_queued: int = 1000,
        max_attempts: int = 2,
        consumer: str | None = None,
        models: Callable[[], Iterable[str]] = lambda: (),
        warm: Callable[[], Iterable[str]] = lambda: (),
        claim_timeout_s: float = 30.0,
        cold_claim_delay_s: float = 2.0,
        block_s: float = 1.0,
        on_reclaim_failed: Callable[[Job], None] | None = None,
    ) -> None:
        self.r = client
        self.k = Keys(prefix)
        self.model_of = model_of
        self.max_queued = max_queued
        self.max_attempts = max_attempts
        self.consumer = consumer
        self.models = models
        self.warm = warm
        self.claim_timeout_s = claim_timeout_s
        self.cold_claim_delay_s = cold_claim_delay_s
        self.block_s = block_s
        self.on_reclaim_failed = on_reclaim_failed
        self._submit = client.register_script(SUBMIT)
        self._claim = client.register_script(CLAIM)
        self._groups: set[str] = set()
        # job id -> (stream, entry id) of the claims this process holds; the heartbeat keeps them.
        self._inflight: dict[str, tuple[str, str]] = {}
        self._inflight_lock = threading.Lock()

    # -- the job record -------------------------------------------------------------------------

    def _decode(self, h: dict[str, str]) -> Job:
        job = Job.model_validate_json(h["data"])
        job.status = JobStatus(h.get("status", job.status.value))
        job.attempts = int(h.get("attempts") or 0)
        job.started_at = _f(h.get("started_at"))
        job.cancel_requested = h.get("cancel") == "1"
        return job

    def _fields(self, job: Job) -> dict[str, str]:
        return {
            "data": job.model_dump_json(),
            "status": job.status.value,
            "attempts": str(job.attempts),
            "started_at": "" if job.started_at is None else repr(job.started_at),
            "cancel": "1" if job.cancel_requested else "0",
        }

    def _tx(self, job_id: str, fn: Callable[[Job, dict[str, str]], tuple[Job | None, Callable | None]]) -> Job:
        """Read-modify-write one job under WATCH: ``fn(job, raw)`` returns the new job (or None
        for no change) and optional extra writes ``(pipe) -> None`` for the same MULTI."""
        key = self.k.job(job_id)
        with self.r.pipeline() as p:
            while True:
                try:
                    p.watch(key)
                    raw = p.hgetall(key)
                    if not raw:
                        raise JobNotFound(f"no job {job_id!r}", field="id")
                    job = self._decode(raw)
                    new, extra = fn(job, raw)
                    if new is None and extra is None:
                        p.unwatch()
                        return job
                    p.multi()
                    if new is not None:
                        p.hset(key, mapping=self._fields(new))
                    if extra is not None:
                        extra(p)
                    p.execute()
                    return new if new is not None else job
                except redis.WatchError:
                    continue

    def _ack(self, raw: dict[str, str]) -> Callable[[redis.client.Pipeline], None]:
        stream, entry = raw.get("stream"), raw.get("entry")

        def extra(p: redis.client.Pipeline) -> None:
            if stream and entry:
                p.xack(stream, GROUP, entry)
                p.xdel(stream, entry)

        return extra

    def _finish(self, job_id: str, change: Callable[[Job], None]) -> Job:
        """The one way into a terminal state: first writer wins, every writer acknowledges."""

        def fn(job: Job, raw: dict[str, str]) -> tuple[Job | None, Callable | None]:
            ack = self._ack(raw)
            if job.status.terminal:
                return None, ack
            change(job)
            job.finished_at = time.time()

            def extra(p: redis.client.Pipeline) -> None:
                ack(p)
                p.zadd(self.k.finished, {job.id: job.finished_at})
                self._link_images(p, job)

            return job, extra

        try:
            return self._tx(job_id, fn)
        finally:
            with self._inflight_lock:
                self._inflight.pop(job_id, None)

    def _link_images(self, p: redis.client.Pipeline, job: Job) -> None:
        for im in job.images:
            p.hset(self.k.image(im.id), job.id, f"{job.owner}\t{im.model_dump_json()}")

    # -- submit ---------------------------------------------------------------------------------

    def submit(self, job: Job) -> int:
        job = job.model_copy(update={"status": JobStatus.queued})
        model = self.model_of(job)
        k = self.k
        seq = self._submit(
            keys=[k.queued, k.ids(model), k.owners(model), k.owner_list(model, job.owner), k.served(model),
                  k.job(job.id), k.jobs, k.owner_jobs(job.owner), k.seq, k.models, k.wake,
                  *(k.input(key) for key in input_keys(job))],  # fmt: skip
            args=[self.max_queued, job.id, int(time.time() * 1000), job.owner, job.model_dump_json(), model],
        )
        if int(seq) < 0:
            raise QueueFull(
                f"the queue is full ({self.depth()} jobs waiting; the limit is {self.max_queued})",
                retry_after=self._typical_duration(),
            )
        return self._positions(model).get(job.id, 0)

    def insert_finished(self, job: Job) -> None:
        seq = self.r.incr(self.k.seq)
        with self.r.pipeline() as p:
            p.hset(self.k.job(job.id), mapping={**self._fields(job), "owner": job.owner, "seq": str(seq), "model": ""})
            p.zadd(self.k.jobs, {job.id: seq})
            p.zadd(self.k.owner_jobs(job.owner), {job.id: seq})
            p.zadd(self.k.finished, {job.id: job.finished_at or time.time()})
            self._link_images(p, job)
            for key in input_keys(job):
                p.sadd(self.k.input(key), job.id)
            p.execute()

    # -- claim (workers) ------------------------------------------------------------------------

    def claim(self) -> Job | None:
        """The next job for this worker, waiting up to ``block_s`` for one to arrive."""
        if self.consumer is None:
            raise RuntimeError("this queue has no consumer name: only a worker claims jobs")
        deadline = time.monotonic() + self.block_s
        while True:
            try:
                job = self._claim_once()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Redis restarting: wait a little instead of spinning; jobs are safe in Redis.
                log.warning("cannot reach Redis to claim a job (%s); retrying", exc)
                time.sleep(self.block_s)
                return None
            left = deadline - time.monotonic()
            if job is not None or left <= 0:
                return job
            self.r.blpop([self.k.wake], timeout=max(0.05, min(left, 1.0)))

    def _claim_once(self) -> Job | None:
        models = list(dict.fromkeys(self.models()))
        warm = set(self.warm())
        for m in models:
            job = self._reclaim(m)
            if job is not None:
                return job
        for m in sorted(models, key=lambda m: m not in warm):  # warm models first
            if m not in warm and not self._cold_may_take(m):
                continue
            job = self._claim_model(m)
            if job is not None:
                return job
        return None

    def _ensure_group(self, model: str) -> None:
        stream = self.k.stream(model)
        if stream in self._groups:
            return
        try:
            self.r.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(stream)

    def _cold_may_take(self, model: str) -> bool:
        now = time.time()
        live = [c for c in self.r.zrangebyscore(self.k.warm(model), now, "+inf") if c != self.consumer]
        if not live:
            return True
        head = self.r.zrange(self.k.ids(model), 0, 0, withscores=True)
        return bool(head) and (now * 1000 - head[0][1]) >= self.cold_claim_delay_s * 1000

    def _claim_model(self, model: str) -> Job | None:
        self._ensure_group(model)
        k = self.k
        try:
            got = self._claim(
                keys=[k.stream(model), k.owners(model), k.ids(model), k.queued, k.served(model), k.served_counter(model)],
                args=[GROUP, self.consumer, repr(time.time()), k.p, model],
            )
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis lost its data (restart without persistence)
                self._groups.discard(k.stream(model))
                return None
            raise
        if not got:
            return None
        entry, job_id = got
        with self._inflight_lock:
            self._inflight[job_id] = (k.stream(model), entry)
        job = self.get(job_id)
        if job is None:  # deleted under us; nothing to run
            self._drop_entry(k.stream(model), entry, job_id)
        return job

    def _drop_entry(self, stream: str, entry: str, job_id: str) -> None:
        self.r.xack(stream, GROUP, entry)
        self.r.xdel(stream, entry)
        with self._inflight_lock:
            self._inflight.pop(job_id, None)

    def _reclaim(self, model: str) -> Job | None:
        """Take over one job whose worker stopped heartbeating."""
        self._ensure_group(model)
        stream = self.k.stream(model)
        min_idle = int(self.claim_timeout_s * 1000)
        try:
            _, claimed, _ = self.r.xautoclaim(stream, GROUP, self.consumer, min_idle, "0-0", count=1)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._groups.discard(stream)
                return None
            raise
        for entry, fields in claimed:
            job_id = (fields or {}).get("job")
            if job_id is None:
                self.r.xack(stream, GROUP, entry)
                continue
            with self._inflight_lock:
                self._inflight[job_id] = (stream, entry)
            outcome: dict[str, Job] = {}

            def fn(job: Job, raw: dict[str, str]) -> tuple[Job | None, Callable | None]:
                if job.status.terminal:  # finished, but its acknowledgement was lost
                    return None, self._ack(raw)
                if job.attempts >= self.max_attempts:
                    job.status = JobStatus.failed
                    job.finished_at = time.time()
                    job.error = JobError(
                        code="worker_crashed",
                        message=f"the worker running this job stopped responding, {job.attempts} times; not retrying",
                    )
                    ack = self._ack(raw)

                    def extra(p: redis.client.Pipeline) -> None:
                        ack(p)
                        p.zadd(self.k.finished, {job.id: job.finished_at})

                    outcome["failed"] = job
                    return job, extra
                job.status = JobStatus.running
                job.attempts += 1
                job.started_at = time.time()
                outcome["run"] = job
                return job, lambda p: p.hset(self.k.job(job.id), mapping={"stream": stream, "entry": entry})

            try:
                self._tx(job_id, fn)
            except JobNotFound:
                self._drop_entry(stream, entry, job_id)
                continue
            if "run" in outcome:
                log.warning("took over job %s from a dead worker (attempt %d)", job_id, outcome["run"].attempts)
                return outcome["run"]
            with self._inflight_lock:
                self._inflight.pop(job_id, None)
            if "failed" in outcome and self.on_reclaim_failed is not None:
                self.on_reclaim_failed(outcome["failed"])
        return None

    def heartbeat(self) -> list[str]:
        """Re-assert this worker's claims (resets their idle time). Returns job ids whose claim
        another worker has taken over meanwhile (this worker was presumed dead)."""
        with self._inflight_lock:
            held = dict(self._inflight)
        lost = []
        for job_id, (stream, entry) in held.items():
            pending = self.r.xpending_range(stream, GROUP, min=entry, max=entry, count=1)
            if not pending or pending[0]["consumer"] != self.consumer:
                lost.append(job_id)
                with self._inflight_lock:
                    self._inflight.pop(job_id, None)
                continue
            self.r.xclaim(stream, GROUP, self.consumer, 0, [entry], justid=True)
        return lost

    def running_here(self) -> list[str]:
        with self._inflight_lock:
            return list(self._inflight)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        raw = self.r.hgetall(self.k.job(job_id))
        return self._decode(raw) if raw else None

    def list(self, owner: str | None, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None) -> Page:
        key = self.k.jobs if owner is None else self.k.owner_jobs(owner)
        top: str | float = f"({int(cursor)}" if cursor is not None else "+inf"
        out: list[tuple[int, Job]] = []
        batch = max(limit + 1, 50)
        while len(out) <= limit:
            rows = self.r.zrevrangebyscore(key, top, "-inf", start=0, num=batch, withscores=True)
            if not rows:
                break
            with self.r.pipeline(transaction=False) as p:
                for job_id, _ in rows:
                    p.hgetall(self.k.job(job_id))
                raws = p.execute()
            for (job_id, seq), raw in zip(rows, raws):
                if not raw:
                    continue
                job = self._decode(raw)
                if status is None or job.status is status:
                    out.append((int(seq), job))
                    if len(out) > limit:
                        break
            top = f"({int(rows[-1][1])}"
        more = len(out) > limit
        out = out[:limit]
        return Page(jobs=[j for _, j in out], next_cursor=str(out[-1][0]) if more and out else None)

    def position(self, job_id: str) -> int | None:
        model = self.r.hget(self.k.job(job_id), "model")
        if not model:
            return None
        return self._positions(model).get(job_id)

    def depth(self) -> int:
        return int(self.r.zcard(self.k.queued))

    def _positions(self, model: str) -> dict[str, int]:
        """Replay the claim script's order over the model's waiting jobs."""
        owners = self.r.zrange(self.k.owners(model), 0, -1, withscores=True)
        with self.r.pipeline(transaction=False) as p:
            for owner, _ in owners:
                p.lrange(self.k.owner_list(model, owner), 0, -1)
            p.get(self.k.served_counter(model))
            *lists, ctr = p.execute()
        counter = int(ctr or 0)
        queues = {o: list(ids) for (o, _), ids in zip(owners, lists) if ids}
        heap = [(score, o) for o, score in owners if o in queues]
        heapq.heapify(heap)
        order: dict[str, int] = {}
        while heap:
            _, owner = heapq.heappop(heap)
            q = queues[owner]
            order[q.pop(0)] = len(order)
            counter += 1
            if q:
                heapq.heappush(heap, (counter, owner))
        return order

    def _typical_duration(self) -> float:
        ids = self.r.zrevrange(self.k.finished, 0, 19)
        spans = []
        for job_id in ids:
            job = self.get(job_id)
            if job and job.status is JobStatus.succeeded and not job.cache_hit and job.started_at and job.finished_at:
                spans.append(job.finished_at - job.started_at)
        return sum(spans) / len(spans) if spans else 5.0

    # -- transitions ----------------------------------------------------------------------------

    def set_resolved(self, job_id: str, resolved: GenerationRequest, model_revision: str) -> None:
        def fn(job: Job, raw: dict[str, str]) -> tuple[Job | None, Callable | None]:
            job.resolved = resolved
            job.model_revision = model_revision
            return job, None

        self._tx(job_id, fn)

    def succeed(self, job_id: str, images: list[StoredImage], cache_hit: bool, timings: dict[str, float]) -> Job:
        def change(job: Job) -> None:
            job.status = JobStatus.succeeded
            job.images = list(images)
            job.cache_hit = cache_hit
            job.timings = dict(timings)

        return self._finish(job_id, change)

    def fail(self, job_id: str, error: JobError) -> Job:
        def change(job: Job) -> None:
            job.status = JobStatus.failed
            job.error = error

        return self._finish(job_id, change)

    def mark_cancelled(self, job_id: str, message: str) -> Job:
        def change(job: Job) -> None:
            job.status = JobStatus.cancelled
            job.cancel_requested = True
            job.error = JobError(code="cancelled", message=message)

        return self._finish(job_id, change)

    def request_cancel(self, job_id: str) -> Job:
        def fn(job: Job, raw: dict[str, str]) -> tuple[Job | None, Callable | None]:
            if job.status.terminal:
                raise JobNotCancellable(f"job {job_id} has already {job.status.value}", field="id")
            job.cancel_requested = True
            if job.status is not JobStatus.queued:
                return job, None
            job.status = JobStatus.cancelled
            job.finished_at = time.time()
            job.error = JobError(code="cancelled", message="cancelled before it started")
            model = raw.get("model", "")

            def extra(p: redis.client.Pipeline) -> None:
                # The owner's zset entry may now point at an empty list: the claim script drops it.
                p.lrem(self.k.owner_list(model, job.owner), 0, job.id)
                p.zrem(self.k.ids(model), job.id)
                p.zrem(self.k.queued, job.id)
                p.zadd(self.k.finished, {job.id: job.finished_at})

            return job, extra

        job = self._tx(job_id, fn)
        if job.status is JobStatus.running:
            # Whichever worker runs it is subscribed; it also re-reads the flag when it starts.
            self.r.publish(self.k.cancel_channel, job_id)
        return job

    def release(self, job_id: str) -> None:
        def fn(job: Job, raw: dict[str, str]) -> tuple[Job | None, Callable | None]:
            if job.status is not JobStatus.running:
                return None, None
            job.status = JobStatus.queued
            job.started_at = None
            job.attempts = max(0, job.attempts - 1)
            model = raw.get("model", "")
            ack = self._ack(raw)
            now_ms = int(job.created_at * 1000)

            def extra(p: redis.client.Pipeline) -> None:
                ack(p)
                p.hset(self.k.job(job.id), mapping={"stream": "", "entry": ""})
                p.lpush(self.k.owner_list(model, job.owner), job.id)
                p.zadd(self.k.owners(model), {job.owner: 0}, nx=True)
                p.zadd(self.k.ids(model), {job.id: now_ms})
                p.zadd(self.k.queued, {job.id: now_ms})
                p.lpush(self.k.wake, "1")

            return job, extra

        try:
            self._tx(job_id, fn)
        finally:
            with self._inflight_lock:
                self._inflight.pop(job_id, None)

    def recover(self, max_attempts: int) -> Recovery:
        """Nothing to do at start: workers take over dead workers' jobs continuously
        (XAUTOCLAIM), so a restarting API server must not touch jobs that live workers run."""
        return Recovery(requeued=[], failed=[])

    def cleanup(self, older_than: float) -> list[str]:
        old = self.r.zrangebyscore(self.k.finished, "-inf", older_than)
        touched: set[str] = set()
        for job_id in old:
            job = self.get(job_id)
            with self.r.pipeline() as p:
                if job is not None:
                    touched |= self._unlink(p, job)
                    p.zrem(self.k.owner_jobs(job.owner), job_id)
                p.delete(self.k.job(job_id))
                p.zrem(self.k.jobs, job_id)
                p.zrem(self.k.finished, job_id)
                p.execute()
        return self._unreferenced(touched)

    def _unlink(self, p: redis.client.Pipeline, job: Job) -> set[str]:
        """Queue the removal of the job's image and input links; return every store key it named."""
        for im in job.images:
            p.hdel(self.k.image(im.id), job.id)  # the hash vanishes with its last field
        inputs = input_keys(job)
        for key in inputs:
            p.srem(self.k.input(key), job.id)  # so does the set with its last member
        return {im.id for im in job.images} | set(inputs)

    def _unreferenced(self, keys: set[str]) -> list[str]:
        # A key may be one job's result and another's edit input (content addressing): it stays
        # while either kind of link remains.
        keys_ = sorted(keys)
        with self.r.pipeline(transaction=False) as p:
            for key in keys_:
                p.exists(self.k.image(key), self.k.input(key))
            counts = p.execute()
        return [key for key, n in zip(keys_, counts) if not n]

    def delete(self, job_id: str, owner: str | None) -> list[str]:
        key = self.k.job(job_id)
        with self.r.pipeline() as p:
            while True:
                try:
                    # WATCH the job: a cancel or completion racing this delete restarts the check.
                    p.watch(key)
                    raw = p.hgetall(key)
                    job = self._decode(raw) if raw else None
                    if job is None or (owner is not None and job.owner != owner):
                        raise JobNotFound(f"no job {job_id!r}", field="id")
                    if not job.status.terminal:
                        raise JobNotFinished(f"job {job_id} is {job.status.value}; cancel it first", field="id")
                    p.multi()
                    touched = self._unlink(p, job)
                    p.zrem(self.k.owner_jobs(job.owner), job_id)
                    p.zrem(self.k.jobs, job_id)
                    p.zrem(self.k.finished, job_id)
                    p.delete(key)
                    p.execute()
                    break
                except redis.WatchError:
                    continue
        return self._unreferenced(touched)

    def unreferenced(self, keys: list[str]) -> list[str]:
        return self._unreferenced(set(keys))

    def image_visible(self, image_id: str, owner: str | None) -> StoredImage | None:
        for value in self.r.hvals(self.k.image(image_id)):
            who, _, data = value.partition("\t")
            if owner is None or who == owner:
                return StoredImage.model_validate_json(data)
        return None

    def close(self) -> None:
        self.r.close()
