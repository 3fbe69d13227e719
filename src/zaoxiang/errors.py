"""Errors with stable codes.

Every error a user can see carries a machine-readable ``code`` (stable across releases), a human
``message`` and, where one input is at fault, the ``field`` it came from. The API turns these into
``{"error": {"code", "message", "field"}}`` bodies; the CLI prints ``message``.
"""

from __future__ import annotations


class ZaoxiangError(Exception):
    """Base of every error zaoxiang raises on purpose."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidRequest(ZaoxiangError):
    """The request is well-formed but a value is outside what is allowed."""

    code = "invalid_request"
    http_status = 422


class ModelNotFound(ZaoxiangError):
    code = "unknown_model"
    http_status = 404


class NoModelInstalled(ZaoxiangError):
    code = "no_model_installed"
    http_status = 503


class ModelLoadError(ZaoxiangError):
    code = "model_load_failed"
    http_status = 500


class GenerationFailed(ZaoxiangError):
    """The model ran but produced something we refuse to return (NaN, all-black...)."""

    code = "generation_failed"
    http_status = 500


class Cancelled(ZaoxiangError):
    code = "cancelled"
    http_status = 409
