"""Request-scoped accessors: the service object and the caller's identity."""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import Header, Request

from zaoxiang.service.auth import extract_key
from zaoxiang.service.core import Service


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_owner(
    request: Request,
    authorization: str | None = Header(default=None, description="Bearer API key"),
    x_api_key: str | None = Header(default=None, description="API key (alternative to Authorization)"),
) -> str:
    """The caller's owner id (key id, or ``anonymous`` where keys are optional)."""
    return get_service(request).auth.owner(extract_key(authorization, x_api_key))


def sign_image(secret: bytes, image_id: str, expires: int) -> str:
    return hmac.new(secret, f"{image_id}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def signed_image_query(secret: bytes, image_id: str, ttl_s: int = 3600) -> str:
    """Query string for an image URL that works without a key until it expires (as OpenAI's
    ``url`` results do)."""
    expires = int(time.time()) + ttl_s
    return f"expires={expires}&sig={sign_image(secret, image_id, expires)}"


def signature_valid(secret: bytes, image_id: str, expires: int | None, sig: str | None) -> bool:
    if expires is None or sig is None or expires < time.time():
        return False
    # compare_digest refuses non-ASCII str: compare bytes, so any query text is just "no".
    return hmac.compare_digest(sign_image(secret, image_id, expires).encode(), sig.encode("utf-8", "replace"))


def prefer_wait(prefer: str | None, cap: float) -> float | None:
    """Seconds from ``Prefer: wait=N`` (RFC 7240), capped; a bare ``wait`` means the cap."""
    if not prefer:
        return None
    for part in prefer.split(","):
        token = part.strip().split(";")[0].strip()
        name, _, value = token.partition("=")
        if name.strip().lower() != "wait":
            continue
        if not value:
            return cap
        try:
            return max(0.0, min(float(value.strip().strip('"')), cap))
        except ValueError:
            return None
    return None
