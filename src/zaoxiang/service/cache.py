"""The result cache: a resolved request's canonical hash → the images it produced.

The key is ``GenerationRequest.cache_key(model_revision, dtype)``: every output-affecting field
plus the model's content revision and the compute dtype. Only requests that came with a seed are
looked up: a request without one gets a fresh random seed, and answering it from the cache would
hand back the same "random" image twice. Its result is still stored under its drawn seed, so a
later request that names that seed is a hit.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

from pydantic import TypeAdapter

from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.jobs import StoredImage
from zaoxiang.service.queue.sqlite import connect
from zaoxiang.service.store.base import ImageStore

_IMAGES = TypeAdapter(list[StoredImage])


def request_key(request: GenerationRequest, model_revision: str, dtype: str) -> str:
    return request.cache_key(model_revision, dtype)


class ResultCache(ABC):
    @abstractmethod
    def get(self, key: str) -> list[StoredImage] | None: ...

    @abstractmethod
    def put(self, key: str, images: list[StoredImage]) -> None: ...

    @abstractmethod
    def forget_images(self, image_ids: list[str]) -> None:
        """Drop entries that point at deleted images."""


class SqliteResultCache(ResultCache):
    def __init__(self, path: Path, store: ImageStore) -> None:
        self._conn = connect(Path(path))
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, images TEXT NOT NULL, created REAL NOT NULL)"
        )
        self._lock = threading.Lock()
        self._store = store

    def get(self, key: str) -> list[StoredImage] | None:
        with self._lock:
            row = self._conn.execute("SELECT images FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        images = _IMAGES.validate_json(row[0])
        # An entry whose file is gone (retention, manual cleanup) is a miss, not a broken result.
        if not all(self._store.exists(im.id) for im in images):
            with self._lock:
                self._conn.execute("DELETE FROM cache WHERE key = ?", (key,))
            return None
        return images

    def put(self, key: str, images: list[StoredImage]) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO cache (key, images, created) VALUES (?, ?, ?)",
                (key, _IMAGES.dump_json(images).decode(), time.time()),
            )

    def forget_images(self, image_ids: list[str]) -> None:
        if not image_ids:
            return
        gone = set(image_ids)
        with self._lock:
            rows = self._conn.execute("SELECT key, images FROM cache").fetchall()
            stale = [k for k, data in rows if any(im.id in gone for im in _IMAGES.validate_json(data))]
            self._conn.executemany("DELETE FROM cache WHERE key = ?", [(k,) for k in stale])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
