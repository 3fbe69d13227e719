"""The embedded SQLite job queue: order, fairness, bounds, crash recovery, retention."""

from __future__ import annotations

import threading
import time

import pytest

from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.exceptions import JobNotCancellable, QueueFull
from zaoxiang.service.jobs import Job, JobError, JobStatus, StoredImage, new_job_id
from zaoxiang.service.queue.sqlite import SqliteJobQueue


def job(owner: str = "a", prompt: str = "p") -> Job:
    return Job(id=new_job_id(), owner=owner, request=GenerationRequest(prompt=prompt))


def image(n: int) -> StoredImage:
    return StoredImage(id=f"{n:064x}", index=0, seed=n, width=64, height=64, content_type="image/png")


@pytest.fixture
def q(tmp_path):
    queue = SqliteJobQueue(tmp_path / "jobs.sqlite3", max_queued=10)
    yield queue
    queue.close()


def test_fifo_for_one_owner_and_positions(q):
    jobs = [job() for _ in range(3)]
    assert [q.submit(j) for j in jobs] == [0, 1, 2]
    assert q.position(jobs[2].id) == 2
    assert [q.claim().id for _ in range(3)] == [j.id for j in jobs]
    assert q.claim() is None
    assert q.position(jobs[0].id) is None


def test_round_robin_between_owners(q):
    burst = [job("a") for _ in range(4)]
    for j in burst:
        q.submit(j)
    late = job("b")
    pos = q.submit(late)
    # b's single job is not stuck behind a's whole burst: it runs second.
    assert pos == 1
    order = [q.claim() for _ in range(5)]
    assert [j.owner for j in order] == ["a", "b", "a", "a", "a"]
    assert order[1].id == late.id


def test_positions_match_claim_order(q):
    js = [job(o) for o in "aabbbca"]
    for j in js:
        q.submit(j)
    predicted = sorted(js, key=lambda j: q.position(j.id))
    claimed = [q.claim().id for _ in js]
    assert claimed == [j.id for j in predicted]


def test_bounded_queue_raises_queue_full_with_retry_after(tmp_path):
    q = SqliteJobQueue(tmp_path / "j.sqlite3", max_queued=2)
    q.submit(job())
    q.submit(job())
    with pytest.raises(QueueFull) as e:
        q.submit(job())
    assert e.value.http_status == 429 and e.value.retry_after >= 1
    q.claim()  # a slot frees once a job starts
    q.submit(job())


def test_jobs_survive_reopening(tmp_path):
    path = tmp_path / "j.sqlite3"
    q1 = SqliteJobQueue(path)
    j = job()
    q1.submit(j)
    q1.close()
    q2 = SqliteJobQueue(path)
    assert q2.get(j.id).status is JobStatus.queued
    assert q2.claim().id == j.id


def test_crash_recovery_retries_once_then_fails(q):
    j = job()
    q.submit(j)
    assert q.claim().attempts == 1
    rec = q.recover(max_attempts=2)  # "restart" while it ran
    assert rec.requeued == [j.id] and rec.failed == []
    assert q.get(j.id).status is JobStatus.queued
    assert q.claim().attempts == 2
    rec = q.recover(max_attempts=2)
    assert rec.failed == [j.id]
    failed = q.get(j.id)
    assert failed.status is JobStatus.failed
    assert failed.error.code == "worker_crashed" and "2 times" in failed.error.message


def test_release_does_not_count_the_attempt(q):
    j = job()
    q.submit(j)
    q.claim()
    q.release(j.id)
    assert q.get(j.id).status is JobStatus.queued
    assert q.claim().attempts == 1


def test_cancel_queued_at_once_and_running_by_flag(q):
    a, b = job(), job()
    q.submit(a)
    q.submit(b)
    q.claim()  # a runs
    assert q.request_cancel(b.id).status is JobStatus.cancelled
    running = q.request_cancel(a.id)
    assert running.status is JobStatus.running and running.cancel_requested
    q.mark_cancelled(a.id, "stopped at step 2")
    with pytest.raises(JobNotCancellable):
        q.request_cancel(a.id)
    assert q.claim() is None


def test_claim_is_atomic_across_connections(tmp_path):
    path = tmp_path / "j.sqlite3"
    queues = [SqliteJobQueue(path, max_queued=500) for _ in range(3)]
    ids = set()
    for _ in range(60):
        j = job()
        queues[0].submit(j)
        ids.add(j.id)
    got: list[str] = []
    lock = threading.Lock()

    def drain(q):
        while (j := q.claim()) is not None:
            with lock:
                got.append(j.id)

    threads = [threading.Thread(target=drain, args=(q,)) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)  # every job exactly once


def test_list_filters_pages_and_scopes_by_owner(q):
    mine = [job("a") for _ in range(5)]
    for j in mine:
        q.submit(j)
    q.submit(job("b"))
    first = q.list("a", limit=2)
    assert [j.id for j in first.jobs] == [mine[4].id, mine[3].id]
    second = q.list("a", limit=2, cursor=first.next_cursor)
    assert [j.id for j in second.jobs] == [mine[2].id, mine[1].id]
    third = q.list("a", limit=2, cursor=second.next_cursor)
    assert [j.id for j in third.jobs] == [mine[0].id] and third.next_cursor is None
    q.claim()
    assert [j.id for j in q.list("a", status=JobStatus.running).jobs] == [mine[0].id]


def test_cleanup_deletes_old_jobs_and_reports_unreferenced_images(q):
    old, keep = job("a"), job("b")
    for j in (old, keep):
        q.submit(j)
        q.claim()
    q.succeed(old.id, [image(1), image(2)], cache_hit=False, timings={})
    q.succeed(keep.id, [image(2)], cache_hit=True, timings={})  # shares image 2 (a cache hit)
    cutoff = time.time() + 1
    # Only `old` is past retention: make `keep` newer by finishing it after the cutoff.
    with q._tx() as c:
        c.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (cutoff + 100, keep.id))
    gone = q.cleanup(cutoff)
    assert gone == [image(1).id]  # image 2 is still referenced by `keep`
    assert q.get(old.id) is None and q.get(keep.id) is not None
    assert q.image_visible(image(2).id, "b") is not None
    assert q.image_visible(image(2).id, "a") is None


def test_failed_job_keeps_its_error(q):
    j = job()
    q.submit(j)
    q.claim()
    q.fail(j.id, JobError(code="generation_failed", message="all black", field=None))
    got = q.get(j.id)
    assert got.status is JobStatus.failed and got.error.code == "generation_failed"
