"""Every error leaves as ``{"error": {"code", "message", "field"?}}`` with its status.

Invalid JSON is 400 ``invalid_json``; a wrong type or value 422 ``invalid_request`` naming the
field; an oversized body 413 ``payload_too_large``; 429s carry Retry-After; anything unexpected is
a 500 ``internal_error`` whose details go to the log, never to the client.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zaoxiang.errors import ZaoxiangError
from zaoxiang.service.exceptions import RetryLater

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

# A finished job's error code → the status a synchronous endpoint answers with.
_JOB_ERROR_STATUS = {
    "invalid_request": 422,
    "unknown_model": 404,
    "no_model_installed": 503,
    "prompt_blocked": 400,
    "image_blocked": 400,
    "cancelled": 409,
}


class PayloadTooLarge(ZaoxiangError):
    code = "payload_too_large"
    http_status = 413


class RequestTimeout(ZaoxiangError):
    code = "timeout"
    http_status = 504


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        err["field"] = field
    return {"error": err}


def error_response(status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def status_for_job_error(code: str) -> int:
    return _JOB_ERROR_STATUS.get(code, 500)


async def _zaoxiang_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZaoxiangError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RetryLater) else None
    if exc.http_status >= 500:
        log.warning("%s %s: %s (%s)", request.method, request.url.path, exc.message, exc.code)
    return error_response(exc.http_status, exc.code, exc.message, exc.field, headers)


def _field_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        detail = ctx.get("error", "malformed JSON")
        return error_response(400, "invalid_json", f"the request body is not valid JSON: {detail}")
    field = _field_of(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field"
    elif first.get("type") == "missing":
        msg = "field required"
    if field is None and first.get("type") in ("model_attributes_type", "dict_type"):
        msg = "the request body must be a JSON object"
    text = f"{field}: {msg}" if field else msg
    return error_response(422, "invalid_request", text, field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(exc.status_code, code, detail, headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Starlette's own Allow lists only the first
    route that matched, and one path here has a route per method."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, child = route.matches({**request.scope, "method": "__none__"})
        if match is Match.NONE or not hasattr(route, "methods") or not getattr(route, "include_in_schema", True):
            continue
        if _path_params_fit(route, child.get("path_params", {})):
            methods |= set(route.methods or ())
    return sorted(methods - {"HEAD"})


def _path_params_fit(route: Any, params: dict[str, Any]) -> bool:
    """Whether the path parameters also fit their declared patterns (``/v1/images/generations``
    matches ``/v1/images/{image_id}`` by shape only)."""
    dependant = getattr(route, "dependant", None)
    for param in getattr(dependant, "path_params", ()):
        for meta in param.field_info.metadata:
            pattern = getattr(meta, "pattern", None)
            if pattern and not re.search(pattern, str(params.get(param.name, ""))):
                return False
    return True


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ZaoxiangError, _zaoxiang_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes``: at once by Content-Length, or while streaming
    for chunked uploads that never declared one."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = error_response(
            413, "payload_too_large", f"the request body is over the limit of {self.max_bytes} bytes"
        )
        if declared is not None:
            try:
                if int(declared) > self.max_bytes:
                    await too_big(scope, receive, send)
                    return
            except ValueError:
                await error_response(400, "bad_request", "invalid Content-Length")(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(f"the request body is over the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)
