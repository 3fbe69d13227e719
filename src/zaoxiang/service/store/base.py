"""The image store interface: content-addressed blobs.

A key is the sha256 of the bytes, so identical files are stored once and a key can be checked
before it touches any backend. Nothing a client sends ever becomes part of a path or object name
except a key that has passed :func:`check_key`.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod

from zaoxiang.service.exceptions import ImageNotFound

_KEY = re.compile(r"[0-9a-f]{64}")


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ImageNotFound("no such image", field="id")
    return key


class ImageStore(ABC):
    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store bytes; return their key. Idempotent."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; raise ImageNotFound."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    def public_url(self, key: str, expires_s: int) -> str | None:
        """A URL clients can fetch directly (S3 presigned), or None when the API must serve it."""
        return None
