"""API keys: created by ``zaoxiang keys create``, stored only as hashes.

A key reads ``zx-<id>-<secret>``. The id is public (it names the key in lists and owns its
jobs); the secret is 192 random bits, so one SHA-256 of the whole key is enough to store it —
slow password hashes exist to protect low-entropy secrets, which these are not.
Keys are optional on a loopback bind (a single user on their own machine) and required on any
other address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from zaoxiang.service.exceptions import Unauthorized
from zaoxiang.service.jobs import ANONYMOUS
from zaoxiang.service.queue.sqlite import connect


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    created: float
    revoked: float | None = None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    def __init__(self, path: Path) -> None:
        self._conn = connect(Path(path))
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL, "
            "created REAL NOT NULL, revoked REAL)"
        )
        self._lock = threading.Lock()

    def create(self, name: str) -> tuple[KeyInfo, str]:
        """A new key and its full secret text (shown once, never stored)."""
        key_id = secrets.token_hex(4)
        full = f"zx-{key_id}-{secrets.token_urlsafe(24)}"
        info = KeyInfo(id=key_id, name=name, created=time.time())
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys (id, name, hash, created) VALUES (?, ?, ?, ?)",
                (info.id, info.name, _hash(full), info.created),
            )
        return info, full

    def list(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._conn.execute("SELECT id, name, created, revoked FROM api_keys ORDER BY created").fetchall()
        return [KeyInfo(*r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id)
            )
        return cur.rowcount > 0

    def any_active(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM api_keys WHERE revoked IS NULL LIMIT 1").fetchone() is not None

    def verify(self, full: str) -> KeyInfo | None:
        parts = full.split("-", 2)
        if len(parts) != 3 or parts[0] != "zx":
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT id, name, created, revoked, hash FROM api_keys WHERE id = ?", (parts[1],)
            ).fetchone()
        if row is None or row[3] is not None or not hmac.compare_digest(row[4], _hash(full)):
            return None
        return KeyInfo(*row[:4])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def extract_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """``Authorization: Bearer KEY`` (what the OpenAI client sends) or ``X-API-Key: KEY``."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


class Authenticator:
    def __init__(self, keys: KeyStore, required: bool) -> None:
        self.keys = keys
        self.required = required

    def owner(self, key: str | None) -> str:
        """The owner id for a request: the key's id, or ANONYMOUS where keys are optional.
        A key that is present but wrong is always refused, so typos do not silently go anonymous."""
        if key is None:
            if self.required:
                raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
            return ANONYMOUS
        info = self.keys.verify(key)
        if info is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)")
        return info.id


def load_or_create_secret(path: Path) -> bytes:
    """A per-install random secret kept in the data directory (mode 0600)."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value
