"""Errors the service raises on purpose; the API maps each to its status and JSON body."""

from __future__ import annotations

from zaoxiang.errors import ZaoxiangError


class RetryLater(ZaoxiangError):
    """Base of the 429 answers: carries the seconds a client should wait (Retry-After)."""

    code = "retry_later"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after + 0.999))


class QueueFull(RetryLater):
    code = "queue_full"


class RateLimited(RetryLater):
    code = "rate_limited"


class JobNotFound(ZaoxiangError):
    code = "job_not_found"
    http_status = 404


class ImageNotFound(ZaoxiangError):
    code = "image_not_found"
    http_status = 404


class Unauthorized(ZaoxiangError):
    code = "unauthorized"
    http_status = 401


class JobNotCancellable(ZaoxiangError):
    code = "job_finished"
    http_status = 409


class JobNotFinished(ZaoxiangError):
    """Deleting a job that is still queued or running: it must be cancelled first."""

    code = "job_not_finished"
    http_status = 409
