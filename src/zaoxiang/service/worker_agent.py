"""What a worker process does besides running jobs, for the Redis backend.

One background thread: every ``heartbeat_s`` it re-asserts the claims of the job this worker
runs (so no other worker takes it over), and advertises the models it has warm
(``P:warm:<model>`` zset, member = worker name, score = expiry) and a status record
(``P:worker:<name>``, expiring). A second thread listens on the cancel channel and stops the
running job within one step when an API server anywhere cancels it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Iterable

import redis

from zaoxiang.service.queue.redis import RedisJobQueue

log = logging.getLogger(__name__)


class WorkerAgent:
    def __init__(
        self,
        queue: RedisJobQueue,
        cancel_job: Callable[[str], None],
        warm_models: Callable[[], Iterable[str]],
        device: str,
        heartbeat_s: float,
    ) -> None:
        if queue.consumer is None:
            raise ValueError("the worker agent needs a queue with a consumer name")
        self.queue = queue
        self.r = queue.r
        self.k = queue.k
        self.name = queue.consumer
        self.cancel_job = cancel_job
        self.warm_models = warm_models
        self.device = device
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._advertised: set[str] = set()

    def start(self) -> "WorkerAgent":
        for target, name in ((self._beat_loop, "zaoxiang-heartbeat"), (self._cancel_loop, "zaoxiang-cancels")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        try:
            with self.r.pipeline() as p:
                for m in self._advertised:
                    p.zrem(self.k.warm(m), self.name)
                p.delete(self.k.worker(self.name))
                p.execute()
        except redis.RedisError:
            pass

    # -- heartbeat ------------------------------------------------------------------------------

    def beat(self) -> None:
        lost = self.queue.heartbeat()
        for job_id in lost:
            # Presumed dead and taken over: the other worker's result will be the one stored
            # (completion is idempotent); this one finishes its step and loses the race harmlessly.
            log.warning("job %s was taken over by another worker", job_id)
        warm = set(self.warm_models())
        ttl = 3 * self.heartbeat_s
        expires = time.time() + ttl
        with self.r.pipeline() as p:
            for m in warm:
                p.zadd(self.k.warm(m), {self.name: expires})
            for m in self._advertised - warm:
                p.zrem(self.k.warm(m), self.name)
            p.hset(
                self.k.worker(self.name),
                mapping={"device": self.device, "warm": json.dumps(sorted(warm)), "jobs": json.dumps(self.queue.running_here()),
                         "beat": repr(time.time())},  # fmt: skip
            )
            p.expire(self.k.worker(self.name), max(1, int(ttl + 0.999)))
            p.execute()
        self._advertised = warm

    def _beat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:  # Redis restarting: keep trying; claims may lapse
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(self.heartbeat_s)

    # -- cancels --------------------------------------------------------------------------------

    def _cancel_loop(self) -> None:
        while not self._stop.is_set():
            pubsub = self.r.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.k.cancel_channel)
                # A cancel published while this thread was (re)connecting is caught anyway:
                # the worker re-reads the job's cancel flag when it starts it, and here below.
                self._check_flags()
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None and msg["type"] == "message":
                        job_id = msg["data"]
                        if job_id in self.queue.running_here():
                            self.cancel_job(job_id)
            except redis.RedisError as exc:
                log.warning("cancel subscription lost (%s); reconnecting", exc)
                self._stop.wait(1.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _check_flags(self) -> None:
        for job_id in self.queue.running_here():
            job = self.queue.get(job_id)
            if job is not None and job.cancel_requested:
                self.cancel_job(job_id)
