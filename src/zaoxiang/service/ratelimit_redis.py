"""Per-key token buckets in Redis, so a key's limit holds across every API server.

One Lua script per take: read the bucket, refill by the time since its last use (Redis's own
clock, so API hosts with skewed clocks agree), spend or refuse, write back. A bucket expires
once it would be full again, so idle keys cost nothing.
"""

from __future__ import annotations

import redis

from zaoxiang.service.exceptions import RateLimited
from zaoxiang.service.ratelimit import RateLimiter

# KEYS: bucket; ARGV: rate per s, burst, cost. Returns "ok" or the seconds to wait.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(h[1]) or burst
local at = tonumber(h[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local ttl = math.ceil(burst / rate) + 1
if tokens < cost then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('EXPIRE', KEYS[1], ttl)
  return tostring((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - cost), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], ttl)
return 'ok'
"""


class RedisTokenBucketLimiter(RateLimiter):
    def __init__(self, client: redis.Redis, rate_per_s: float, burst: int, prefix: str = "zx") -> None:
        self.r = client
        self.rate = rate_per_s
        self.burst = float(burst)
        self.prefix = prefix
        self._take = client.register_script(TAKE)

    def take(self, key: str, cost: float = 1.0) -> None:
        out = self._take(keys=[f"{self.prefix}:rl:{key}"], args=[self.rate, self.burst, cost])
        if out != "ok":
            wait = float(out)
            raise RateLimited(
                f"rate limit: {self.rate * 60:g} requests a minute (burst {self.burst:g}); retry in {wait:.1f}s",
                retry_after=wait,
            )
