"""Per-key rate limits: a token bucket per owner (``rate`` tokens a second, up to ``burst``).

In memory, because one process serves the embedded mode; the Redis backend will keep the
buckets in Redis behind the same ``take``.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Callable

from zaoxiang.service.exceptions import RateLimited


class RateLimiter(ABC):
    @abstractmethod
    def take(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens of ``key``'s bucket or raise RateLimited with a Retry-After."""


class TokenBucketLimiter(RateLimiter):
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> None:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                wait = (cost - tokens) / self.rate
                raise RateLimited(
                    f"rate limit: {self.rate * 60:g} requests a minute (burst {self.burst:g}); retry in {wait:.1f}s",
                    retry_after=wait,
                )
            self._buckets[key] = (tokens - cost, now)
