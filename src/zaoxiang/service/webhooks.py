"""Job-completion webhooks: a signed POST, retried with exponential back-off.

The receiver checks ``X-Zaoxiang-Signature: sha256=<hex>``, the HMAC-SHA256 of
``"<X-Zaoxiang-Timestamp>.<raw body>"`` under the server's webhook secret; the timestamp in the
signed text lets a receiver reject replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Zaoxiang-Signature"
TIMESTAMP_HEADER = "X-Zaoxiang-Timestamp"
EVENT_HEADER = "X-Zaoxiang-Event"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSender:
    def __init__(self, secret: bytes, attempts: int = 5, backoff_s: float = 1.0, timeout_s: float = 10.0) -> None:
        self.secret = secret
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def schedule(self, url: str, event: str, payload: dict[str, Any]) -> None:
        """Deliver in the background; callable from any thread."""
        if self._loop is None or self._loop.is_closed():
            return
        fut = asyncio.run_coroutine_threadsafe(self.deliver(url, event, payload), self._loop)
        self._tasks.add(fut)
        fut.add_done_callback(self._tasks.discard)

    async def deliver(self, url: str, event: str, payload: dict[str, Any]) -> bool:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            for attempt in range(self.attempts):
                ts = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: ts,
                    SIGNATURE_HEADER: sign(self.secret, ts, body),
                    EVENT_HEADER: event,
                    "User-Agent": "zaoxiang-webhook",
                }
                try:
                    resp = await client.post(url, content=body, headers=headers)
                    if resp.is_success:
                        return True
                    # Client errors other than timeout/too-many will not fix themselves.
                    if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                        log.warning("webhook %s refused with %s; not retrying", url, resp.status_code)
                        return False
                    log.info("webhook %s answered %s (attempt %d)", url, resp.status_code, attempt + 1)
                except httpx.HTTPError as exc:
                    log.info("webhook %s failed: %s (attempt %d)", url, exc, attempt + 1)
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(self.backoff_s * 2**attempt)
        log.warning("webhook %s gave up after %d attempts", url, self.attempts)
        return False

    def cancel_all(self) -> None:
        for fut in list(self._tasks):
            fut.cancel()
