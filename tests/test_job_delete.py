"""Deleting a finished job: ``JobQueue.delete`` on both backends, ``Service.delete_job`` (store and
cache follow), and ``DELETE /v1/jobs/{id}?purge=true`` over HTTP. Images are content-addressed, so
one file can belong to several jobs (a cache hit, possibly of another key): it goes with the last.
Edit inputs (the uploaded image and mask) live in the same store and follow the same rule, on
purge and on retention: a key goes when no job names it as a result or as an input any more."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from types import SimpleNamespace

import httpx
import pytest
import redis

from tests.scale_support import moto_s3, redis_server
from tests.service_support import fake_runner, live_server, make_settings, wait_status
from tests.edit_support import box_mask, noise_image, png
from zaoxiang.protocol import EditSpec, GenerationRequest
from zaoxiang.service.cache import ResultCache, SqliteResultCache
from zaoxiang.service.cache_redis import RedisResultCache
from zaoxiang.service.core import Service
from zaoxiang.service.exceptions import JobNotFinished, JobNotFound
from zaoxiang.service.jobs import Job, JobStatus, StoredImage, new_job_id
from zaoxiang.service.queue.base import JobQueue
from zaoxiang.service.queue.redis import RedisJobQueue
from zaoxiang.service.queue.sqlite import SqliteJobQueue
from zaoxiang.service.scale_settings import S3Settings
from zaoxiang.service.store.base import ImageStore
from zaoxiang.service.store.local import LocalImageStore
from zaoxiang.service.store.s3 import S3ImageStore

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as rs:
        yield rs.url


@dataclass
class Backend:
    queue: JobQueue
    cache: ResultCache
    store: ImageStore
    has_entry: object  # (key) -> bool: the cache still holds the entry, whatever its images

    def delete_job(self, job_id: str, owner: str | None) -> list[str]:
        # Service.delete_job reads only queue, store and cache: run it on exactly these three.
        return Service.delete_job(SimpleNamespace(queue=self.queue, store=self.store, cache=self.cache), job_id, owner)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    store = LocalImageStore(tmp_path / "images")
    if request.param == "sqlite":
        queue = SqliteJobQueue(tmp_path / "jobs.sqlite3")
        cache = SqliteResultCache(tmp_path / "cache.sqlite3", store)

        def has_entry(key: str) -> bool:
            return cache._conn.execute("SELECT 1 FROM cache WHERE key = ?", (key,)).fetchone() is not None

        yield Backend(queue, cache, store, has_entry)
        queue.close()
        cache.close()
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
    prefix = f"del{next(_prefixes)}"
    queue = RedisJobQueue(client, prefix=prefix, model_of=lambda j: "m", consumer="w1", models=lambda: ("m",), block_s=0.05)
    cache = RedisResultCache(client, store, prefix, ttl_s=60)
    yield Backend(queue, cache, store, lambda key: client.exists(f"{prefix}:cache:{key}") == 1)
    client.close()


def _image(store: ImageStore, data: bytes) -> StoredImage:
    return StoredImage(id=store.put(data), index=0, seed=1, width=8, height=8, content_type="image/png")


def _succeeded(q: JobQueue, owner: str, images: list[StoredImage]) -> Job:
    job = Job(id=new_job_id(), owner=owner, request=GenerationRequest(prompt="p", seed=1))
    q.submit(job)
    claimed = q.claim()
    assert claimed is not None and claimed.id == job.id
    return q.succeed(job.id, images, cache_hit=False, timings={})


def _cache_hit(q: JobQueue, owner: str, images: list[StoredImage]) -> Job:
    now = time.time()
    job = Job(id=new_job_id(), owner=owner, request=GenerationRequest(prompt="p", seed=1), status=JobStatus.succeeded,
              created_at=now, started_at=now, finished_at=now, cache_hit=True, images=images)  # fmt: skip
    q.insert_finished(job)
    return job


def test_delete_removes_the_job_and_its_unshared_images(backend):
    mine, kept = _image(backend.store, b"mine"), _image(backend.store, b"kept")
    a = _succeeded(backend.queue, "a", [mine])
    b = _succeeded(backend.queue, "a", [kept])
    backend.cache.put("ka", [mine])
    assert backend.delete_job(a.id, "a") == [mine.id]
    assert backend.queue.get(a.id) is None and backend.queue.image_visible(mine.id, None) is None
    assert not backend.store.exists(mine.id) and not backend.has_entry("ka")
    assert [j.id for j in backend.queue.list("a").jobs] == [b.id]
    assert backend.store.exists(kept.id) and backend.queue.image_visible(kept.id, "a") == kept
    with pytest.raises(JobNotFound):  # deleting twice: it is gone
        backend.delete_job(a.id, "a")


def test_a_shared_image_survives_until_its_last_job_is_deleted(backend):
    shared = _image(backend.store, b"shared")
    first = _succeeded(backend.queue, "a", [shared])
    backend.cache.put("k", [shared])
    hit = _cache_hit(backend.queue, "b", [shared])  # another key's identical request
    assert backend.delete_job(first.id, "a") == []
    assert backend.store.exists(shared.id) and backend.cache.get("k") == [shared]
    assert backend.queue.image_visible(shared.id, "a") is None
    assert backend.queue.image_visible(shared.id, "b") == shared
    assert backend.delete_job(hit.id, None) == [shared.id]
    assert not backend.store.exists(shared.id)
    assert not backend.has_entry("k") and backend.cache.get("k") is None


def test_unfinished_jobs_are_refused_and_kept(backend):
    q = backend.queue
    running = Job(id=new_job_id(), owner="a", request=GenerationRequest(prompt="p"))
    queued = Job(id=new_job_id(), owner="a", request=GenerationRequest(prompt="p"))
    q.submit(running)
    assert q.claim().id == running.id
    q.submit(queued)
    for job_id, state in ((running.id, "running"), (queued.id, "queued")):
        with pytest.raises(JobNotFinished) as exc:
            q.delete(job_id, "a")
        assert exc.value.code == "job_not_finished" and exc.value.http_status == 409 and state in str(exc.value)
        assert q.get(job_id).status.value == state
    q.mark_cancelled(running.id, "stop")
    assert q.delete(running.id, "a") == []
    assert q.get(running.id) is None


def test_another_keys_job_is_not_found_and_survives(backend):
    img = _image(backend.store, b"theirs")
    theirs = _succeeded(backend.queue, "b", [img])
    with pytest.raises(JobNotFound):
        backend.delete_job(theirs.id, "a")
    with pytest.raises(JobNotFound):
        backend.delete_job("job_0123456789abcdef01234567", "a")
    assert backend.queue.get(theirs.id) is not None and backend.store.exists(img.id)


# -- edit inputs -----------------------------------------------------------------------------------


def _edit_request(image: str, mask: str | None = None) -> GenerationRequest:
    mode = "inpaint" if mask else "img2img"
    return GenerationRequest(prompt="p", seed=1, width=64, height=64, edit=EditSpec(mode=mode, image=image, mask=mask))


def _edit_job(q: JobQueue, owner: str, image: str, mask: str | None, images: list[StoredImage], run: bool = True) -> Job:
    """An edit job reading ``image`` (and ``mask``): queued, or (``run``) claimed and succeeded."""
    job = Job(id=new_job_id(), owner=owner, request=_edit_request(image, mask))
    q.submit(job)
    if not run:
        return job
    assert q.claim().id == job.id
    return q.succeed(job.id, images, cache_hit=False, timings={})


def _cleanup(backend: Backend, older_than: float) -> list[str]:
    # Service.cleanup reads queue, store, cache and retention_s: older_than = now - retention_s.
    svc = SimpleNamespace(queue=backend.queue, store=backend.store, cache=backend.cache, retention_s=time.time() - older_than)
    return Service.cleanup(svc)  # type: ignore[arg-type]


def test_purge_removes_an_edit_jobs_inputs_with_its_results(backend):
    store = backend.store
    image, mask = store.put(b"upload-image"), store.put(b"upload-mask")
    result = _image(store, b"edit-result")
    job = _edit_job(backend.queue, "a", image, mask, [result])
    assert backend.delete_job(job.id, "a") == sorted([image, mask, result.id])
    assert not any(store.exists(k) for k in (image, mask, result.id))


def test_retention_removes_expired_edit_inputs_and_keeps_fresh_ones(backend):
    store = backend.store
    old_in, new_in = store.put(b"old-upload"), store.put(b"new-upload")
    old_out, new_out = _image(store, b"old-result"), _image(store, b"new-result")
    old = _edit_job(backend.queue, "a", old_in, None, [old_out])
    cutoff = time.time() + 0.001
    time.sleep(0.01)
    new = _edit_job(backend.queue, "a", new_in, None, [new_out])
    assert _cleanup(backend, cutoff) == sorted([old_in, old_out.id])
    assert not store.exists(old_in) and not store.exists(old_out.id)
    assert backend.queue.get(old.id) is None and backend.queue.get(new.id) is not None
    assert store.exists(new_in) and store.exists(new_out.id)
    assert _cleanup(backend, time.time() + 1) == sorted([new_in, new_out.id])
    assert not store.exists(new_in) and not store.exists(new_out.id)


def test_a_shared_upload_survives_until_its_last_job_is_gone(backend):
    """Two edits of the same upload (content-addressed: one key): removing the first, by purge or
    by retention, must not pull the input from under the second, even while that one still waits."""
    store, q = backend.store, backend.queue
    shared = store.put(b"shared-upload")
    first = _edit_job(q, "a", shared, None, [_image(store, b"first-result")])
    waiting = _edit_job(q, "b", shared, None, [], run=False)
    assert shared not in backend.delete_job(first.id, "a")
    assert store.exists(shared)
    assert shared not in _cleanup(backend, time.time() + 1)  # retention skips a queued job
    assert store.exists(shared) and q.get(waiting.id) is not None
    q.request_cancel(waiting.id)  # finished now, so retention takes it
    assert _cleanup(backend, time.time() + 1) == [shared]
    assert q.get(waiting.id) is None and not store.exists(shared)


def test_retention_of_one_job_keeps_an_upload_another_still_uses(backend):
    store, q = backend.store, backend.queue
    shared = store.put(b"shared-upload-2")
    old = _edit_job(q, "a", shared, None, [_image(store, b"old-edit-result")])
    cutoff = time.time() + 0.001
    time.sleep(0.01)
    newer_out = _image(store, b"newer-edit-result")
    newer = _edit_job(q, "b", shared, None, [newer_out])
    gone = _cleanup(backend, cutoff)
    assert shared not in gone and store.exists(shared)
    assert q.get(old.id) is None and q.get(newer.id) is not None
    assert backend.delete_job(newer.id, "b") == sorted([shared, newer_out.id])
    assert not store.exists(shared) and not store.exists(newer_out.id)


def test_a_key_that_is_one_jobs_result_and_anothers_input_goes_with_the_last(backend):
    """Editing a result again: the same bytes are a result image and an upload, one store key."""
    store, q = backend.store, backend.queue
    made = _image(store, b"made-then-edited")
    source = _succeeded(q, "a", [made])
    edit = _edit_job(q, "a", made.id, None, [_image(store, b"edit-of-made")])
    assert made.id not in backend.delete_job(source.id, "a")
    assert store.exists(made.id)
    assert made.id in backend.delete_job(edit.id, "a")
    assert not store.exists(made.id)
    # and the other way round: the input's job goes first
    made2 = _image(store, b"made-then-edited-2")
    edit2 = _edit_job(q, "a", made2.id, None, [])
    source2 = _succeeded(q, "a", [made2])
    assert backend.delete_job(edit2.id, "a") == []
    assert store.exists(made2.id) and q.image_visible(made2.id, "a") == made2
    assert backend.delete_job(source2.id, "a") == [made2.id]


def test_a_cache_hit_edit_holds_its_inputs(backend):
    store, q = backend.store, backend.queue
    upload, result = store.put(b"cached-upload"), _image(store, b"cached-result")
    ran = _edit_job(q, "a", upload, None, [result])
    now = time.time()
    hit = Job(id=new_job_id(), owner="b", request=_edit_request(upload), status=JobStatus.succeeded, created_at=now,
              started_at=now, finished_at=now, cache_hit=True, images=[result])  # fmt: skip
    q.insert_finished(hit)
    assert backend.delete_job(ran.id, "a") == []
    assert store.exists(upload) and store.exists(result.id)
    assert backend.delete_job(hit.id, "b") == sorted([upload, result.id])


def test_edit_inputs_leave_an_s3_store_on_purge_and_retention(redis_url):
    """The scale-out shape (Redis queue, S3 store): the same rule reaches the bucket."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"dels3{next(_prefixes)}"
    with moto_s3() as s3:  # a stand-in for a real S3-compatible store
        store = S3ImageStore(S3Settings(endpoint_url=s3.endpoint, bucket="edits", access_key_id="test",
                                        secret_access_key="test", create_bucket=True))  # fmt: skip
        queue = RedisJobQueue(client, prefix=prefix, model_of=lambda j: "m", consumer="w1", models=lambda: ("m",), block_s=0.05)
        backend = Backend(queue, RedisResultCache(client, store, prefix, ttl_s=60), store, lambda key: False)
        image, mask, shared = store.put(b"s3-image"), store.put(b"s3-mask"), store.put(b"s3-shared")
        result = _image(store, b"s3-result")
        purged = _edit_job(queue, "a", image, mask, [result])
        old = _edit_job(queue, "a", shared, None, [])
        cutoff = time.time() + 0.001
        time.sleep(0.01)
        kept = _edit_job(queue, "b", shared, None, [])
        assert backend.delete_job(purged.id, "a") == sorted([image, mask, result.id])
        assert not any(store.exists(k) for k in (image, mask, result.id))
        assert _cleanup(backend, cutoff) == [] and store.exists(shared) and queue.get(old.id) is None
        assert _cleanup(backend, time.time() + 1) == [shared] and queue.get(kept.id) is None
        assert not store.exists(shared)
    client.close()


def test_an_older_sqlite_file_backfills_its_edit_jobs_inputs(tmp_path):
    """A jobs file from before inputs were linked: opening it links its queued edit jobs' inputs."""
    import sqlite3

    store = LocalImageStore(tmp_path / "images")
    upload = store.put(b"pre-upgrade-upload")
    q = SqliteJobQueue(tmp_path / "jobs.sqlite3")
    job = _edit_job(q, "a", upload, None, [], run=False)
    q.close()
    conn = sqlite3.connect(tmp_path / "jobs.sqlite3")
    conn.execute("DELETE FROM job_inputs")  # what a file of the earlier schema holds
    conn.execute("PRAGMA user_version = 0")
    conn.commit()
    conn.close()
    q = SqliteJobQueue(tmp_path / "jobs.sqlite3")
    try:
        first = _edit_job(q, "b", upload, None, [], run=False)
        q.request_cancel(first.id)
        assert q.delete(first.id, "b") == []  # the older queued job still names it
        q.request_cancel(job.id)
        assert q.delete(job.id, "a") == [upload]
    finally:
        q.close()


# -- over HTTP (embedded backend, real worker, the fake colour model) ------------------------------


def _wait(c: httpx.Client, body: dict) -> dict:
    job = c.post("/v1/jobs", json=body, headers={"Prefer": "wait=20"}).json()
    assert job["status"] == "succeeded", job
    return job


def test_purge_deletes_job_images_and_cache_entry_and_refuses_running_jobs(tmp_path):
    runner = fake_runner(tmp_path, step_delay=0.3, steps=3)
    with live_server(make_settings(tmp_path), runner) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        job = _wait(c, {"prompt": "gone", "seed": 7, "steps": 1})
        url = job["images"][0]["url"]
        assert c.get(url).status_code == 200
        slow = c.post("/v1/jobs", json={"prompt": "slow", "steps": 30}).json()
        wait_status(c, slow["id"], {"running"})
        r = c.delete(f"/v1/jobs/{slow['id']}", params={"purge": "true"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_not_finished"
        assert c.delete(f"/v1/jobs/{slow['id']}").json()["status"] == "cancelled"  # without purge: cancel
        r = c.delete(f"/v1/jobs/{job['id']}", params={"purge": "true"})
        assert r.status_code == 204 and r.content == b""
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert c.get(url).status_code == 404
        assert c.delete(f"/v1/jobs/{job['id']}", params={"purge": "true"}).status_code == 404
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 404
        again = _wait(c, {"prompt": "gone", "seed": 7, "steps": 1})
        assert not again["cache_hit"] and c.get(again["images"][0]["url"]).status_code == 200


def test_purge_across_keys_shared_image_and_not_found(tmp_path):
    settings = make_settings(tmp_path, auth="required")
    with live_server(settings, fake_runner(tmp_path, steps=1)) as live:
        keys = live.app.state.service.auth.keys
        _, mine = keys.create("me")
        _, theirs = keys.create("them")
        with httpx.Client(base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {mine}"}) as me, \
                httpx.Client(base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {theirs}"}) as them:  # fmt: skip
            a = _wait(me, {"prompt": "same", "seed": 3})
            b = _wait(them, {"prompt": "same", "seed": 3})
            assert b["cache_hit"] and b["images"][0]["id"] == a["images"][0]["id"]
            image = f"/v1/images/{a['images'][0]['id']}"
            r = them.delete(f"/v1/jobs/{a['id']}", params={"purge": "true"})
            assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
            assert me.delete(f"/v1/jobs/{a['id']}", params={"purge": "true"}).status_code == 204
            assert me.get(image).status_code == 404  # no job of mine holds it any more
            assert them.get(image).status_code == 200  # still theirs
            assert them.delete(f"/v1/jobs/{b['id']}", params={"purge": "true"}).status_code == 204
            assert them.get(image).status_code == 404
            assert not live.app.state.service.store.exists(a["images"][0]["id"])


def _stored_files(data_dir) -> list:
    return [f for f in (data_dir / "images").rglob("*") if f.is_file()]


def test_refused_edits_leave_no_upload_and_purge_removes_an_accepted_ones(tmp_path):
    """Over HTTP: an edit refused after its upload was stored (a bad field, an unknown model) takes
    the upload with it; an accepted one keeps it until its job is purged."""
    import base64

    image = base64.b64encode(png(noise_image(64, 64))).decode("ascii")
    mask = base64.b64encode(png(box_mask(64, 64, (0, 0, 32, 32)))).decode("ascii")
    data = tmp_path / "data"
    with live_server(make_settings(data), fake_runner(tmp_path, steps=1)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        body = {"mode": "inpaint", "image": image, "mask": mask, "prompt": "x", "seed": 1}
        r = c.post("/v1/edits", json={**body, "width": 128})  # refused after both uploads were stored
        assert r.status_code == 422 and r.json()["error"]["field"] == "width", r.text
        r = c.post("/v1/edits", json={**body, "model": "no-such-model"})  # refused by submit
        assert r.status_code == 404, r.text
        assert _stored_files(data) == []
        job = c.post("/v1/edits", json=body, headers={"Prefer": "wait=20"}).json()
        assert job["status"] in ("succeeded", "failed"), job  # the colour model may refuse edits
        edit = job["request"]["edit"]
        assert live.app.state.service.store.exists(edit["image"]) and live.app.state.service.store.exists(edit["mask"])
        assert c.delete(f"/v1/jobs/{job['id']}", params={"purge": "true"}).status_code == 204
        assert _stored_files(data) == []

