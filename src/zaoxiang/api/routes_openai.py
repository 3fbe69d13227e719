"""OpenAI-compatible image generation: ``POST /v1/images/generations``.

Mapped: ``prompt``; ``model`` (a zaoxiang model name; OpenAI names such as ``dall-e-3`` or
``gpt-image-1`` mean the default model); ``n``; ``size`` ("WxH" or "auto"); ``response_format``
(``b64_json``, the default, or ``url``: a signed link valid for an hour); ``output_format``.
zaoxiang extensions: ``negative_prompt``, ``seed``, ``steps``, ``guidance``.
Accepted and ignored: ``quality``, ``style``, ``user``, ``background``, ``moderation``,
``output_compression``, ``partial_images``, ``stream`` and any other field.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Literal

from fastapi import APIRouter, Depends, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zaoxiang.api.deps import get_owner, get_service, signed_image_query
from zaoxiang.api.routes_native import ERRORS
from zaoxiang.api.sync import run_to_end
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import MAX_GUIDANCE, MAX_SEED, MAX_STEPS, GenerationRequest, OutputFormat, invalid_from_pydantic

router = APIRouter(tags=["openai"])

OPENAI_MODEL_NAMES = frozenset({"dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"})
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


class OpenAIImageRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(max_length=32000)
    model: str | None = Field(default=None, max_length=200)
    n: int | None = Field(default=1, ge=1)
    size: str | None = Field(default=None, max_length=32, description='"WxH" (multiples of 16) or "auto"')
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    output_format: OutputFormat | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    negative_prompt: str = ""
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(default=None, ge=0.0, le=MAX_GUIDANCE)


class OpenAIImage(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
    output_format: str
    size: str


def to_generation(body: OpenAIImageRequest) -> GenerationRequest:
    width = height = None
    if body.size not in (None, "auto"):
        m = _SIZE.match(body.size)
        if m is None:
            raise InvalidRequest(f"size must look like 1024x1024 or be 'auto' (got {body.size!r})", field="size")
        width, height = int(m.group(1)), int(m.group(2))
    model = None if body.model in OPENAI_MODEL_NAMES else body.model
    data = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "n": body.n or 1,
        "width": width,
        "height": height,
        "model": model,
        "seed": body.seed,
        "steps": body.steps,
        "guidance": body.guidance,
        "output_format": body.output_format or "png",
    }
    try:
        return GenerationRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


@router.api_route("/v1/images/generations", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def generations_other_methods() -> None:
    """``/v1/images/generations`` is POST-only. Without this route the GET would reach
    ``/v1/images/{image_id}`` and fail its id check (422) instead of answering 405."""
    raise StarletteHTTPException(status_code=405)


@router.post("/v1/images/generations", response_model=OpenAIImagesResponse, responses=ERRORS)
async def images_generations(body: OpenAIImageRequest, request: Request, owner: str = Depends(get_owner)) -> OpenAIImagesResponse:
    svc = get_service(request)
    gen = to_generation(body)
    job = await run_to_end(svc, gen, owner, request.app.state.settings.service.max_wait_s)
    base = str(request.base_url).rstrip("/")
    data = []
    for im in job.images:
        if body.response_format == "url":
            url = f"{base}/v1/images/{im.id}?{signed_image_query(request.app.state.server_secret, im.id)}"
            data.append(OpenAIImage(url=url))
        else:
            data.append(OpenAIImage(b64_json=base64.b64encode(svc.store.get(im.id)).decode("ascii")))
    resolved = job.resolved or gen
    return OpenAIImagesResponse(
        created=int(job.finished_at or time.time()),
        data=data,
        output_format=resolved.output_format,
        size=f"{resolved.width}x{resolved.height}",
    )
