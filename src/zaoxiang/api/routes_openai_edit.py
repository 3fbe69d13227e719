"""OpenAI-compatible image edits: ``POST /v1/images/edits`` (multipart/form-data).

Mapped: ``image`` (one file; ``image[]`` accepted, the first is used), ``mask`` (OpenAI semantics:
fully transparent pixels mark the area to edit; same size as the image), ``prompt``, ``model``,
``n``, ``size`` (must equal the image's size or be "auto": zaoxiang does not resize inputs),
``response_format`` (``b64_json`` default, or ``url``), ``output_format``.
Without a mask, an image with transparent pixels is inpainted there (as DALL·E 2 does) and a
fully opaque one is edited as a whole (img2img at ``strength``, default 0.75).
zaoxiang extensions (form fields): ``negative_prompt``, ``seed``, ``steps``, ``guidance``,
``strength``, ``mask_blur``, ``upscale``. Other fields (``quality``, ``background``, ``user``,
``input_fidelity``, ...) are accepted and ignored.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from zaoxiang.api.deps import get_owner, get_service, signed_image_query
from zaoxiang.api.routes_native import ERRORS
from zaoxiang.api.routes_openai import OPENAI_MODEL_NAMES, _SIZE, OpenAIImage, OpenAIImagesResponse
from zaoxiang.api.sync import run_to_end
from zaoxiang.engine.edit_inputs import EditUpload, decode_upload, edit_request, has_transparency, mask_from_alpha
from zaoxiang.errors import InvalidRequest

router = APIRouter(tags=["openai"])

_NUMBERS: dict[str, type] = {"n": int, "seed": int, "steps": int, "guidance": float, "strength": float, "mask_blur": int, "upscale": int}


def _number(form: dict[str, Any], name: str) -> Any:
    raw = form.get(name)
    if raw in (None, ""):
        return None
    try:
        return _NUMBERS[name](raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number (got {raw!r})", field=name) from None


@router.api_route("/v1/images/edits", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def edits_other_methods() -> None:
    """POST-only; without this a GET would reach ``/v1/images/{image_id}`` (422) instead of 405."""
    raise StarletteHTTPException(status_code=405)


@router.post(
    "/v1/images/edits",
    response_model=OpenAIImagesResponse,
    responses=ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image", "prompt"],
                        "properties": {
                            "image": {"type": "string", "format": "binary"},
                            "mask": {"type": "string", "format": "binary"},
                            "prompt": {"type": "string"},
                            "n": {"type": "integer"},
                            "size": {"type": "string"},
                            "response_format": {"type": "string", "enum": ["b64_json", "url"]},
                        },
                    }
                }
            },
        }
    },
)
async def images_edits(request: Request, owner: str = Depends(get_owner)) -> OpenAIImagesResponse:
    svc = get_service(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("send multipart/form-data with an image file and a prompt", field="image")
    form = await request.form()
    fields: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            name = key.removesuffix("[]")
            if name not in files:  # several images: the first one is edited
                files[name] = await value.read()
        else:
            fields[key] = value
    prompt = fields.get("prompt")
    if not prompt:
        raise InvalidRequest("prompt is required", field="prompt")
    image = files.get("image")
    if image is None:
        raise InvalidRequest("image (a file) is required", field="image")
    response_format = fields.get("response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        raise InvalidRequest("response_format must be b64_json or url", field="response_format")

    strength = _number(fields, "strength")
    mask = files.get("mask")
    if mask is not None:
        upload = EditUpload("inpaint", image, mask=mask, strength=strength, mask_blur=_number(fields, "mask_blur"), mask_from_alpha=True)
    else:
        source = decode_upload(image, "image", svc.limits)
        if has_transparency(source):
            buf = io.BytesIO()
            mask_from_alpha(source).save(buf, format="PNG")
            upload = EditUpload("inpaint", image, mask=buf.getvalue(), strength=strength, mask_blur=_number(fields, "mask_blur"))
        else:
            upload = EditUpload("img2img", image, strength=strength)

    size = fields.get("size")
    width = height = None
    if size not in (None, "", "auto"):
        m = _SIZE.match(size)
        if m is None:
            raise InvalidRequest(f"size must look like 1024x1024 or be 'auto' (got {size!r})", field="size")
        width, height = int(m.group(1)), int(m.group(2))
    model = fields.get("model")
    gen_fields = {
        "prompt": prompt,
        "negative_prompt": fields.get("negative_prompt") or "",
        "n": _number(fields, "n") or 1,
        "width": width,
        "height": height,
        "model": None if model in OPENAI_MODEL_NAMES or not model else model,
        "seed": _number(fields, "seed"),
        "steps": _number(fields, "steps"),
        "guidance": _number(fields, "guidance"),
        "upscale": _number(fields, "upscale"),
        "output_format": fields.get("output_format") or "png",
    }
    try:
        with svc.uploads() as put:
            gen = edit_request({k: v for k, v in gen_fields.items() if v is not None}, upload, svc.limits, put)
    except InvalidRequest as exc:
        if exc.field in ("width", "height"):
            raise InvalidRequest(f"size: {exc.message}", field="size") from None
        raise
    job = await run_to_end(svc, gen, owner, request.app.state.settings.service.max_wait_s)
    base = str(request.base_url).rstrip("/")
    data = []
    for im in job.images:
        if response_format == "url":
            data.append(OpenAIImage(url=f"{base}/v1/images/{im.id}?{signed_image_query(request.app.state.server_secret, im.id)}"))
        else:
            data.append(OpenAIImage(b64_json=base64.b64encode(svc.store.get(im.id)).decode("ascii")))
    resolved = job.resolved or gen
    first = job.images[0] if job.images else None
    return OpenAIImagesResponse(
        created=int(job.finished_at or time.time()),
        data=data,
        output_format=resolved.output_format,
        size=f"{first.width}x{first.height}" if first else f"{resolved.width}x{resolved.height}",
    )
