"""Images in any S3-compatible object store (AWS S3, MinIO, Ceph RGW, R2...) through boto3.

Objects are named ``<prefix><sha256>``: content-addressed like the local store, so two workers
storing the same image write the same object (a harmless overwrite with identical bytes) and a
retried job never leaves a second copy. Keys pass :func:`check_key` before they reach S3.
"""

from __future__ import annotations

from typing import Any

from zaoxiang.service.exceptions import ImageNotFound
from zaoxiang.service.scale_settings import S3Settings
from zaoxiang.service.store.base import ImageStore, check_key, content_key


def sniff_content_type(data: bytes) -> str:
    """The image type from its magic bytes (the store is given bytes only)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def s3_client(s: S3Settings) -> Any:
    import boto3  # imported here: boto3 costs ~0.3 s and only the S3 backend needs it
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s.endpoint_url,
        region_name=s.region,
        aws_access_key_id=s.access_key_id,
        aws_secret_access_key=s.secret_access_key.get_secret_value() if s.secret_access_key else None,
        config=Config(
            s3={"addressing_style": "path" if s.path_style else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


class S3ImageStore(ImageStore):
    def __init__(self, settings: S3Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.client = client or s3_client(settings)
        if settings.create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, data: bytes) -> str:
        key = content_key(data)
        if not self.exists(key):
            # A single PUT is atomic in S3: readers see the whole object or none.
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._name(key),
                Body=data,
                ContentType=sniff_content_type(data),
                CacheControl="private, max-age=31536000, immutable",
            )
        return key

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise ImageNotFound("no such image", field="id") from None
            raise

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def public_url(self, key: str, expires_s: int) -> str | None:
        if self.settings.url_mode != "presigned":
            return None
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._name(key)}, ExpiresIn=int(expires_s)
        )
