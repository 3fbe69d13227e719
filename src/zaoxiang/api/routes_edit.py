"""Native edit jobs: ``POST /v1/edits`` (img2img, inpaint, outpaint).

The body is JSON with the image (and mask) as base64 — or ``multipart/form-data`` with ``image``
and ``mask`` as files and every other field as a form field (``outpaint`` as JSON text). Inputs are
checked and stored by :mod:`zaoxiang.engine.edit_inputs`; what is queued is a normal job whose
request carries the inputs' content keys, so it is polled, streamed, cancelled and cached like any
other job.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from zaoxiang.api.deps import get_owner, get_service, prefer_wait
from zaoxiang.api.routes_native import ERRORS, _view
from zaoxiang.api.schemas import JobView
from zaoxiang.engine.edit_inputs import EditUpload, edit_request
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import EditMode, OutputFormat, SamplerOptions, invalid_from_pydantic

router = APIRouter(tags=["edits"])

_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,", re.IGNORECASE)


class EditCreate(BaseModel):
    """An edit job: the input(s), how to edit, and the usual generation fields."""

    model_config = ConfigDict(extra="forbid")

    mode: EditMode
    image: str = Field(description="the input image, base64 (a data: URL prefix is accepted)")
    mask: str | None = Field(default=None, description="inpaint mask, base64, same size: white = repaint")
    strength: float | None = Field(default=None, description="0 keeps the input, 1 redraws; default img2img 0.75, else 1")
    outpaint: dict[str, int] | None = Field(default=None, description="pixels to add: left, right, top, bottom")
    mask_blur: int | None = None
    prompt: str
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    n: int = 1
    model: str | None = None
    sampler: SamplerOptions | None = None
    output_format: OutputFormat = "png"
    upscale: int | None = None
    webhook: AnyHttpUrl | None = None


def decode_b64(text: str | None, field: str) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(_DATA_URL.sub("", text.strip()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field} is not valid base64", field=field) from None


async def _parse_body(request: Request) -> tuple[EditCreate, bytes | None, bytes | None]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        data: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                files[key] = await value.read()
            else:
                data[key] = value
        if "outpaint" in data:
            try:
                data["outpaint"] = json.loads(data["outpaint"])
            except json.JSONDecodeError:
                raise InvalidRequest('outpaint must be JSON such as {"right": 128}', field="outpaint") from None
        if "sampler" in data:
            data["sampler"] = {"name": data["sampler"]}
        data.setdefault("image", "")
        try:
            body = EditCreate.model_validate(data)
        except ValidationError as exc:
            raise invalid_from_pydantic(exc) from None
        return body, files.get("image") or decode_b64(body.image or None, "image"), files.get("mask") or decode_b64(body.mask, "mask")
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("the body must be JSON or multipart/form-data", field=None) from None
    if not isinstance(raw, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        body = EditCreate.model_validate(raw)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None
    return body, decode_b64(body.image, "image"), decode_b64(body.mask, "mask")


@router.post(
    "/v1/edits",
    status_code=202,
    response_model=JobView,
    responses={200: {"model": JobView}, **ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": EditCreate.model_json_schema()},
                "multipart/form-data": {"schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}},
            },
        }
    },
)
async def create_edit(
    request: Request,
    owner: str = Depends(get_owner),
    prefer: str | None = Header(default=None, description="`wait=N`: hold the response up to N s for the result"),
) -> JSONResponse:
    """Queue an img2img, inpaint or outpaint job. Answers like ``POST /v1/jobs``."""
    svc = get_service(request)
    body, image, mask = await _parse_body(request)
    fields = body.model_dump(
        exclude={"mode", "image", "mask", "strength", "outpaint", "mask_blur", "webhook"}, exclude_none=True
    )
    upload = EditUpload(
        mode=body.mode, image=image or b"", mask=mask, strength=body.strength, outpaint=body.outpaint,
        mask_blur=body.mask_blur,
    )
    with svc.uploads() as put:
        gen = edit_request(fields, upload, svc.limits, put)
    job, _ = svc.submit(gen, owner, str(body.webhook) if body.webhook else None)
    headers = {"Location": f"/v1/jobs/{job.id}"}
    wait = prefer_wait(prefer, request.app.state.settings.service.max_wait_s)
    if wait is not None and not job.status.terminal:
        job = await svc.wait(job.id, wait)
        headers["Preference-Applied"] = f"wait={wait:g}"
    status = 200 if job.status.terminal else 202
    return JSONResponse(_view(svc, job, request).model_dump(mode="json"), status_code=status, headers=headers)
