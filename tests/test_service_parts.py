"""Store, cache, keys, rate limits and webhook signatures, each on its own."""

from __future__ import annotations

import hashlib

import pytest

from zaoxiang.protocol import GenerationRequest
from zaoxiang.service.auth import Authenticator, KeyStore, extract_key, is_loopback
from zaoxiang.service.cache import SqliteResultCache, request_key
from zaoxiang.service.exceptions import ImageNotFound, RateLimited, Unauthorized
from zaoxiang.service.jobs import ANONYMOUS, StoredImage
from zaoxiang.service.ratelimit import TokenBucketLimiter
from zaoxiang.service.store.local import LocalImageStore
from zaoxiang.service.webhooks import sign, verify


def test_local_store_is_content_addressed_and_idempotent(tmp_path):
    store = LocalImageStore(tmp_path / "img")
    key = store.put(b"hello")
    assert key == hashlib.sha256(b"hello").hexdigest()
    assert store.put(b"hello") == key and store.get(key) == b"hello"
    files = [p for p in (tmp_path / "img").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name == key
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(ImageNotFound):
        store.get(key)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a" * 63, "A" * 64, "/abs", "", "g" * 64])
def test_store_refuses_anything_but_a_hash(tmp_path, bad):
    store = LocalImageStore(tmp_path)
    with pytest.raises(ImageNotFound):
        store.get(bad)


def resolved(seed: int = 1, **kw) -> GenerationRequest:
    base = dict(prompt="p", width=64, height=64, steps=3, guidance=1.0, seed=seed, model="m")
    return GenerationRequest(**{**base, **kw})


def test_cache_key_covers_output_fields_and_revision():
    k = request_key(resolved(), "rev1", "float32")
    assert k == request_key(resolved(), "rev1", "float32")
    assert k == request_key(resolved(output_format="webp"), "rev1", "float32")  # same pixels
    for other in (resolved(seed=2), resolved(steps=4), resolved(prompt="q"), resolved(negative_prompt="n")):
        assert request_key(other, "rev1", "float32") != k
    assert request_key(resolved(), "rev2", "float32") != k
    assert request_key(resolved(), "rev1", "bfloat16") != k


def test_cache_hit_needs_the_image_files(tmp_path):
    store = LocalImageStore(tmp_path / "img")
    cache = SqliteResultCache(tmp_path / "db.sqlite3", store)
    key_id = store.put(b"png")
    entry = [StoredImage(id=key_id, index=0, seed=1, width=64, height=64, content_type="image/png")]
    cache.put("k", entry)
    assert cache.get("k") == entry
    assert cache.get("other") is None
    store.delete(key_id)
    assert cache.get("k") is None  # a missing file is a miss, never a broken result


def test_keys_are_stored_hashed_and_revocable(tmp_path):
    keys = KeyStore(tmp_path / "keys.sqlite3")
    info, secret = keys.create("alice")
    raw = (tmp_path / "keys.sqlite3").read_bytes()
    assert secret.encode() not in raw
    assert keys.verify(secret).id == info.id
    assert keys.verify(secret + "x") is None
    assert keys.verify("zx-" + info.id + "-wrong") is None
    assert keys.revoke(info.id) and keys.verify(secret) is None
    assert not keys.revoke(info.id)


def test_authenticator_optional_and_required(tmp_path):
    keys = KeyStore(tmp_path / "keys.sqlite3")
    info, secret = keys.create("bob")
    optional = Authenticator(keys, required=False)
    assert optional.owner(None) == ANONYMOUS
    assert optional.owner(secret) == info.id
    with pytest.raises(Unauthorized):
        optional.owner("zx-nope-nope")  # a wrong key never falls back to anonymous
    with pytest.raises(Unauthorized):
        Authenticator(keys, required=True).owner(None)


def test_loopback_and_key_headers():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    assert extract_key("Bearer abc", None) == "abc"
    assert extract_key(None, "xyz") == "xyz"
    assert extract_key("Basic abc", None) is None


def test_token_bucket_refills_and_reports_retry_after():
    now = [0.0]
    lim = TokenBucketLimiter(rate_per_s=1.0, burst=2, clock=lambda: now[0])
    lim.take("a")
    lim.take("a")
    with pytest.raises(RateLimited) as e:
        lim.take("a")
    assert e.value.retry_after == 1
    lim.take("b")  # buckets are per key
    now[0] = 1.0
    lim.take("a")


def test_webhook_signature_round_trip():
    sig = sign(b"secret", "1700000000", b'{"a":1}')
    assert sig.startswith("sha256=")
    assert verify(b"secret", "1700000000", b'{"a":1}', sig)
    assert not verify(b"secret", "1700000001", b'{"a":1}', sig)
    assert not verify(b"other", "1700000000", b'{"a":1}', sig)
