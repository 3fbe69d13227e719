"""The result-cache index in Redis, shared by every API server and worker.

``P:cache:<request key>`` holds the images' JSON; ``P:cacheimg:<image id>`` the request keys
that point at an image, so retention can drop exactly the entries whose image it deleted.
Entries expire with the retention period, like the images they point at.
"""

from __future__ import annotations

import redis
from pydantic import TypeAdapter

from zaoxiang.service.cache import ResultCache
from zaoxiang.service.jobs import StoredImage
from zaoxiang.service.store.base import ImageStore

_IMAGES = TypeAdapter(list[StoredImage])


class RedisResultCache(ResultCache):
    def __init__(self, client: redis.Redis, store: ImageStore, prefix: str = "zx", ttl_s: float | None = None) -> None:
        self.r = client
        self.store = store
        self.prefix = prefix
        self.ttl_s = int(ttl_s) if ttl_s else None

    def _key(self, key: str) -> str:
        return f"{self.prefix}:cache:{key}"

    def _img(self, image_id: str) -> str:
        return f"{self.prefix}:cacheimg:{image_id}"

    def get(self, key: str) -> list[StoredImage] | None:
        data = self.r.get(self._key(key))
        if data is None:
            return None
        images = _IMAGES.validate_json(data)
        # An entry whose object is gone (retention, a bucket lifecycle rule) is a miss.
        if not all(self.store.exists(im.id) for im in images):
            self.r.delete(self._key(key))
            return None
        return images

    def put(self, key: str, images: list[StoredImage]) -> None:
        with self.r.pipeline() as p:
            p.set(self._key(key), _IMAGES.dump_json(images).decode(), ex=self.ttl_s)
            for im in images:
                p.sadd(self._img(im.id), key)
                if self.ttl_s:
                    p.expire(self._img(im.id), self.ttl_s)
            p.execute()

    def forget_images(self, image_ids: list[str]) -> None:
        for image_id in image_ids:
            keys = self.r.smembers(self._img(image_id))
            with self.r.pipeline() as p:
                for k in keys:
                    p.delete(self._key(k))
                p.delete(self._img(image_id))
                p.execute()
