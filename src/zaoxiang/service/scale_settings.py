"""Settings of the distributed backends (Redis, S3, canary routing).

Plain pydantic groups, imported by ``zaoxiang.settings``; nothing here touches Redis or S3.
Environment: ``ZAOXIANG_SERVICE__BACKEND=redis``, ``ZAOXIANG_SERVICE__REDIS__URL=redis://host:6379/0``,
``ZAOXIANG_SERVICE__STORE_BACKEND=s3``, ``ZAOXIANG_SERVICE__S3__BUCKET=images``, ...
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    # Every key this deployment writes starts with this, so several deployments can share a Redis.
    prefix: str = Field(default="zx", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    # A worker re-asserts its claim on its running job this often ...
    heartbeat_s: float = Field(default=2.0, gt=0)
    # ... and a job whose claim has not been re-asserted for this long belongs to a dead worker:
    # another worker takes it over (XAUTOCLAIM). Must be several heartbeats.
    claim_timeout_s: float = Field(default=30.0, gt=0)
    # A worker without a job's model loaded leaves that job to a warm worker for this long.
    cold_claim_delay_s: float = Field(default=2.0, ge=0)
    # An idle worker waits this long inside one claim for new work before looking again.
    block_s: float = Field(default=1.0, gt=0, le=30)

    @model_validator(mode="after")
    def _timeout_exceeds_heartbeat(self) -> "RedisSettings":
        if self.claim_timeout_s < 2 * self.heartbeat_s:
            raise ValueError(
                f"claim_timeout_s ({self.claim_timeout_s}) must be at least twice heartbeat_s ({self.heartbeat_s})"
            )
        return self


class S3Settings(BaseModel):
    # None: AWS itself; any S3-compatible store (MinIO, Ceph, R2...) by its URL.
    endpoint_url: str | None = None
    bucket: str = "zaoxiang"
    prefix: str = Field(default="images/", max_length=200)
    region: str = "us-east-1"
    access_key_id: str | None = None  # None: boto3's usual chain (env, profile, instance role)
    secret_access_key: SecretStr | None = None
    # "presigned": the API answers an image request with a redirect to a short-lived S3 URL
    # (bytes never pass through the API); "proxied": the API streams the bytes itself.
    url_mode: Literal["presigned", "proxied"] = "proxied"
    presign_expires_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # Path-style URLs (http://host/bucket/key) work with every S3-compatible store.
    path_style: bool = True
    create_bucket: bool = False  # create the bucket at start when missing (dev/test)


CanaryMode = Literal["hash", "random"]
