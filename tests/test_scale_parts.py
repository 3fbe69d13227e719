"""The Redis and S3 backends one piece at a time, in-process, against a real redis-server and
moto's S3 server (a stand-in for a real S3-compatible store)."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest
import redis

from tests.fakes import fake_entry
from tests.scale_support import moto_s3, redis_server
from tests.service_support import fake_runner, live_server, make_settings, wait_status
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.cache_redis import RedisResultCache
from zaoxiang.service.canary import CanaryRouter
from zaoxiang.service.events import JobEvent
from zaoxiang.service.events_redis import RedisEventBus
from zaoxiang.service.exceptions import ImageNotFound, JobNotCancellable, QueueFull, RateLimited
from zaoxiang.service.jobs import Job, JobError, JobStatus, StoredImage, new_job_id
from zaoxiang.service.queue.redis import RedisJobQueue
from zaoxiang.service.ratelimit_redis import RedisTokenBucketLimiter
from zaoxiang.service.scale_settings import S3Settings
from zaoxiang.service.store.s3 import S3ImageStore

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as rs:
        yield rs


@pytest.fixture
def client(server):
    c = redis.Redis.from_url(server.url, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def prefix():
    return f"t{next(_prefixes)}"


def make_queue(client, prefix, consumer=None, warm=(), models=("m",), **kw) -> RedisJobQueue:
    return RedisJobQueue(
        client, prefix=prefix, model_of=lambda job: job.request.model or "m", consumer=consumer,
        models=lambda: models, warm=lambda: warm, block_s=0.05, **kw,
    )  # fmt: skip


def job(owner="a", model="m", **req) -> Job:
    return Job(id=new_job_id(), owner=owner, request=GenerationRequest(prompt="p", model=model, **req))


IMG = StoredImage(id="a" * 64, index=0, seed=1, width=64, height=64, content_type="image/png")


# -- queue ----------------------------------------------------------------------------------------


def test_fair_order_between_owners_and_positions_match_claims(client, prefix):
    q = make_queue(client, prefix, consumer="w1")
    burst = [job("busy") for _ in range(4)]
    single = job("quiet")
    for j in burst:
        q.submit(j)
    assert q.submit(single) == 1  # second, not fifth: the quiet key is served next
    predicted = sorted([j.id for j in burst] + [single.id], key=q.position)
    claimed = [q.claim().id for _ in range(5)]
    assert claimed == predicted
    assert claimed[:2] == [burst[0].id, single.id]
    assert q.claim() is None and q.depth() == 0


def test_bounded_queue_raises_queue_full_with_retry_after(client, prefix):
    q = make_queue(client, prefix, max_queued=2)
    q.submit(job())
    q.submit(job())
    with pytest.raises(QueueFull) as exc:
        q.submit(job())
    assert exc.value.http_status == 429 and exc.value.retry_after >= 1


def test_completion_is_idempotent_first_result_wins(client, prefix):
    q = make_queue(client, prefix, consumer="w1")
    j = job()
    q.submit(j)
    claimed = q.claim()
    assert claimed.status is JobStatus.running and claimed.attempts == 1
    first = q.succeed(j.id, [IMG], cache_hit=False, timings={"total_s": 1.0})
    other = IMG.model_copy(update={"id": "b" * 64})
    second = q.succeed(j.id, [other], cache_hit=False, timings={})
    assert second.images == first.images == [IMG]
    assert q.fail(j.id, JobError(code="x", message="late")).status is JobStatus.succeeded
    assert q.image_visible(IMG.id, "a") == IMG and q.image_visible(other.id, None) is None
    assert client.xpending(f"{prefix}:s:m", "workers")["pending"] == 0


def test_dead_workers_job_is_taken_over_then_failed_at_the_attempt_limit(client, prefix):
    dead = make_queue(client, prefix, consumer="dead", claim_timeout_s=0.3, max_attempts=2)
    alive = make_queue(client, prefix, consumer="alive", claim_timeout_s=0.3, max_attempts=2)
    j = job()
    dead.submit(j)
    assert dead.claim().id == j.id
    assert alive.claim() is None  # not idle long enough yet
    time.sleep(0.4)
    again = alive.claim()
    assert again.id == j.id and again.attempts == 2
    assert dead.heartbeat() == [j.id]  # the slow one learns its claim was taken
    # The second holder dies too: the attempt limit fails the job with a reason.
    failed = []
    third = make_queue(client, prefix, consumer="third", claim_timeout_s=0.3, max_attempts=2, on_reclaim_failed=failed.append)
    time.sleep(0.4)
    assert third.claim() is None
    final = third.get(j.id)
    assert final.status is JobStatus.failed and final.error.code == "worker_crashed"
    assert [f.id for f in failed] == [j.id]
    assert client.xpending(f"{prefix}:s:m", "workers")["pending"] == 0


def test_heartbeat_keeps_a_slow_job_from_being_taken(client, prefix):
    w1 = make_queue(client, prefix, consumer="w1", claim_timeout_s=0.3)
    w2 = make_queue(client, prefix, consumer="w2", claim_timeout_s=0.3)
    j = job()
    w1.submit(j)
    w1.claim()
    for _ in range(4):
        time.sleep(0.15)
        assert w1.heartbeat() == []
        assert w2.claim() is None


def test_cancel_queued_removes_it_and_running_is_flagged_and_published(client, prefix):
    q = make_queue(client, prefix, consumer="w1")
    a, b = job(), job()
    q.submit(a)
    q.submit(b)
    assert q.request_cancel(b.id).status is JobStatus.cancelled
    assert q.depth() == 1 and q.position(b.id) is None
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{prefix}:cancel")
    assert q.claim().id == a.id
    assert q.request_cancel(a.id).cancel_requested
    msg = None
    for _ in range(20):
        msg = msg or pubsub.get_message(timeout=0.1)
    assert msg is not None and msg["data"] == a.id
    assert q.mark_cancelled(a.id, "cancelled at step 1 of 3").status is JobStatus.cancelled
    with pytest.raises(JobNotCancellable):
        q.request_cancel(a.id)
    assert q.claim() is None  # the cancelled queued job never runs


def test_release_puts_the_job_back_first_without_counting(client, prefix):
    q = make_queue(client, prefix, consumer="w1")
    a, b = job(), job()
    q.submit(a)
    q.submit(b)
    assert q.claim().id == a.id
    q.release(a.id)
    back = q.claim()
    assert back.id == a.id and back.attempts == 1


def test_warm_worker_gets_its_models_jobs_and_cold_worker_waits(client, prefix):
    # w_warm has "m2" loaded and advertises it; w_cold serves both models but has none loaded.
    kw = dict(models=("m1", "m2"), cold_claim_delay_s=0.5)
    warm = make_queue(client, prefix, consumer="warm", warm=("m2",), **kw)
    cold = make_queue(client, prefix, consumer="cold", warm=(), **kw)
    client.zadd(f"{prefix}:warm:m2", {"warm": time.time() + 30})
    j1, j2 = job(model="m1"), job(model="m2")
    cold.submit(j1)
    cold.submit(j2)
    assert cold.claim().id == j1.id  # nobody has m1 warm: the cold worker may take it
    assert cold.claim() is None  # m2 is warm elsewhere and its job is fresh
    time.sleep(0.6)
    assert cold.claim().id == j2.id  # ... but not forever
    j3 = job(model="m2")
    warm.submit(j3)
    assert warm.claim().id == j3.id


def test_list_pages_newest_first_with_owner_and_status_filters(client, prefix):
    q = make_queue(client, prefix, consumer="w1")
    mine = [job("me") for _ in range(5)]
    for j in mine:
        q.submit(j)
    q.submit(job("you"))
    page = q.list("me", limit=3)
    assert [j.id for j in page.jobs] == [j.id for j in mine[::-1][:3]]
    rest = q.list("me", limit=3, cursor=page.next_cursor)
    assert [j.id for j in rest.jobs] == [mine[1].id, mine[0].id] and rest.next_cursor is None
    q.request_cancel(mine[2].id)
    assert [j.id for j in q.list("me", status=JobStatus.cancelled).jobs] == [mine[2].id]
    assert len(q.list(None, limit=100).jobs) == 6


def test_cleanup_returns_images_no_job_references(client, prefix):
    q = make_queue(client, prefix, consumer="w1")
    a = job()
    q.submit(a)
    q.claim()
    q.succeed(a.id, [IMG], cache_hit=False, timings={})
    assert q.cleanup(time.time() - 60) == []
    assert q.cleanup(time.time() + 1) == [IMG.id]
    assert q.get(a.id) is None and q.image_visible(IMG.id, None) is None


# -- rate limits, cache, events -------------------------------------------------------------------


def test_rate_limit_is_shared_between_limiter_objects(client, prefix):
    one = RedisTokenBucketLimiter(client, rate_per_s=0.5, burst=2, prefix=prefix)
    two = RedisTokenBucketLimiter(client, rate_per_s=0.5, burst=2, prefix=prefix)
    one.take("k")
    two.take("k")
    with pytest.raises(RateLimited) as exc:
        one.take("k")
    assert 1 <= exc.value.retry_after <= 2
    two.take("other")  # a separate bucket per key


class _Store:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def exists(self, key: str) -> bool:
        return key in self.present


def test_cache_index_hits_misses_and_forgets_deleted_images(client, prefix):
    store = _Store({IMG.id})
    cache = RedisResultCache(client, store, prefix, ttl_s=60)  # type: ignore[arg-type]
    assert cache.get("k1") is None
    cache.put("k1", [IMG])
    assert cache.get("k1") == [IMG]
    cache.forget_images([IMG.id])
    assert cache.get("k1") is None
    cache.put("k2", [IMG])
    store.present.clear()  # the object vanished (lifecycle rule): a miss, and the entry goes
    assert cache.get("k2") is None and client.get(f"{prefix}:cache:k2") is None


def test_events_cross_buses_and_progress_is_kept_for_pollers(server, client, prefix):
    publisher = RedisEventBus(client, server.url, prefix)
    listener = RedisEventBus(redis.Redis.from_url(server.url, decode_responses=True), server.url, prefix)

    async def go() -> list[JobEvent]:
        got = []
        async with listener.subscribe("job_x") as q:
            publisher.publish(JobEvent.progress("job_x", 1, 2, None))
            publisher.publish(JobEvent(type="progress", job_id="job_other", step=1, total=2))
            publisher.publish(JobEvent(type="succeeded", job_id="job_x"))
            while not got or not got[-1].terminal:
                got.append(await asyncio.wait_for(q.get(), 5))
        await listener.aclose()
        return got

    publisher.publish(JobEvent.progress("job_y", 3, 9, None))
    assert listener.latest_progress("job_y").step == 3
    got = asyncio.run(go())
    assert [(e.type, e.step) for e in got] == [("progress", 1), ("succeeded", None)]
    assert listener.latest_progress("job_x") is None  # dropped once terminal


# -- S3 ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as s:  # a stand-in for a real S3-compatible store
        yield s


def s3_settings(s3, **kw) -> S3Settings:
    return S3Settings(endpoint_url=s3.endpoint, bucket="parts", access_key_id="test", secret_access_key="test",
                      create_bucket=True, **kw)  # fmt: skip


def test_s3_store_is_content_addressed_and_proxied_by_default(s3):
    store = S3ImageStore(s3_settings(s3))
    data = b"\x89PNG\r\n\x1a\n" + b"x" * 100
    key = store.put(data)
    assert store.put(data) == key and store.exists(key)
    assert store.get(key) == data
    assert store.public_url(key, 60) is None
    head = store.client.head_object(Bucket="parts", Key="images/" + key)
    assert head["ContentType"] == "image/png"
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(ImageNotFound):
        store.get(key)
    with pytest.raises(ImageNotFound):
        store.get("../../etc/passwd")


def test_s3_presigned_url_fetches_the_bytes(s3):
    store = S3ImageStore(s3_settings(s3, url_mode="presigned"))
    key = store.put(b"\xff\xd8\xff" + b"jpeg bytes")
    url = store.public_url(key, 120)
    assert url and ("Signature" in url or "X-Amz-Signature" in url)
    resp = httpx.get(url)
    assert resp.status_code == 200 and resp.content == b"\xff\xd8\xff" + b"jpeg bytes"


# -- canary routing -------------------------------------------------------------------------------


def test_canary_hash_mode_is_deterministic_and_splits_by_weight():
    router = CanaryRouter({"flux": [("flux", 0.9), ("flux-next", 0.1)]}, mode="hash")
    reqs = [GenerationRequest(prompt=f"prompt {i}", model="flux", seed=i) for i in range(2000)]
    picks = [router.route(r)[0].model for r in reqs]
    share = picks.count("flux-next") / len(picks)
    assert 0.07 < share < 0.13
    assert [router.route(r)[0].model for r in reqs[:50]] == picks[:50]  # same request, same model
    assert router.route(reqs[0])[1] == "flux"
    other = GenerationRequest(prompt="x", model="sdxl")
    assert router.route(other) == (other, None)
    # A request naming no model goes through the default model's alias.
    assert router.route(GenerationRequest(prompt="x"), default_model="flux")[1] == "flux"


def test_canary_random_mode_and_validation():
    import random

    router = CanaryRouter({"a": [("a1", 1), ("a2", 1)]}, mode="random", rng=random.Random(0))
    req = GenerationRequest(prompt="same", model="a", seed=1)
    assert {router.route(req)[0].model for _ in range(50)} == {"a1", "a2"}
    with pytest.raises(InvalidRequest):
        CanaryRouter({"a": [("a1", 0)]})
    with pytest.raises(InvalidRequest):
        router.check(["a1"])  # a2 is not registered


def test_canary_through_the_service_records_alias_and_revision(tmp_path):
    settings = make_settings(tmp_path / "data", canary={"fake": [("fake", 1), ("fake-next", 1)]})
    runner = fake_runner(tmp_path, names=("fake", "fake-next"))
    with live_server(settings, runner) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        served = set()
        for i in range(12):
            j = c.post("/v1/jobs", json={"prompt": f"canary {i}", "model": "fake", "seed": i}).json()
            done = wait_status(c, j["id"], {"succeeded"})
            assert done["resolved"]["model"] == done["request"]["model"] and done["model_revision"]
            assert live.app.state.service.queue.get(j["id"]).routed_from == "fake"
            served.add(done["resolved"]["model"])
        assert served == {"fake", "fake-next"}
