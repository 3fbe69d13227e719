"""AUTOMATIC1111-compatible ``POST /sdapi/v1/img2img`` (img2img and inpaint).

Mapped: ``init_images`` (base64, data: URLs accepted; the first is used), ``mask`` (base64, white =
inpaint), ``denoising_strength`` (default 0.75), ``mask_blur`` (default 4), ``inpainting_fill``
(0 fill — masked pixels start from the mean colour of the rest; 1 original; 2 "latent noise" and
3 "latent nothing" are refused: flow-matching inpaint has no equivalent), ``inpainting_mask_invert``,
``resize_mode`` 0 (``width``/``height`` other than the image's resize it, as A1111's "just
resize"; other modes are refused), and the txt2img fields (prompt, negative_prompt, seed, steps,
cfg_scale, batch_size × n_iter, sampler_name, override_settings.sd_model_checkpoint).
Accepted and ignored: ``inpaint_full_res``, ``inpaint_full_res_padding``, ``include_init_images``,
``image_cfg_scale``, scripts, styles and the rest.
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from PIL import Image
from pydantic import Field

from zaoxiang.api.deps import get_owner, get_service
from zaoxiang.api.routes_a1111 import Txt2ImgRequest, Txt2ImgResponse, to_generation
from zaoxiang.api.routes_edit import decode_b64
from zaoxiang.api.routes_native import ERRORS
from zaoxiang.api.sync import run_to_end
from zaoxiang.engine.edit_inputs import EditUpload, decode_upload, edit_request, normalise_mask
from zaoxiang.engine.metadata import read_metadata
from zaoxiang.errors import InvalidRequest

router = APIRouter(tags=["a1111"])


class Img2ImgRequest(Txt2ImgRequest):
    init_images: list[str] = Field(default_factory=list)
    mask: str | None = None
    denoising_strength: float = 0.75
    mask_blur: int = 4
    inpainting_fill: int = 0
    inpainting_mask_invert: int = 0
    resize_mode: int = 0


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def to_upload(body: Img2ImgRequest, limits) -> tuple[EditUpload, dict[str, int]]:
    """The edit upload (after A1111's resize and fill) and the size it resolves to."""
    if not body.init_images:
        raise InvalidRequest("init_images needs one base64 image", field="init_images")
    image = decode_upload(decode_b64(body.init_images[0], "init_images"), "init_images", limits).convert("RGB")
    original = image.size
    size = (body.width or image.width, body.height or image.height)
    if size != original:
        if body.resize_mode != 0:
            raise InvalidRequest("only resize_mode 0 (just resize) is supported", field="resize_mode")
        image = image.resize(size, Image.Resampling.LANCZOS)
    if body.mask is None:
        return EditUpload("img2img", _png(image), strength=body.denoising_strength), {}
    mask = normalise_mask(decode_upload(decode_b64(body.mask, "mask"), "mask", limits))
    if mask.size == original != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)  # resized with its image
    if mask.size != image.size:
        raise InvalidRequest(
            f"mask is {mask.width}x{mask.height} but init_images[0] is {original[0]}x{original[1]}; they must be the same size",
            field="mask",
        )
    if body.inpainting_mask_invert:
        mask = mask.point(lambda v: 255 - v)
    if body.inpainting_fill == 0:
        rgb = np.asarray(image).copy()  # (H, W, 3)
        hole = np.asarray(mask) >= 128
        if (~hole).any():
            rgb[hole] = rgb[~hole].mean(axis=0).round().astype(np.uint8)
        image = Image.fromarray(rgb)
    elif body.inpainting_fill != 1:
        raise InvalidRequest(
            "inpainting_fill 2 (latent noise) and 3 (latent nothing) are not supported; use 0 (fill) or 1 (original)",
            field="inpainting_fill",
        )
    upload = EditUpload("inpaint", _png(image), mask=_png(mask), strength=body.denoising_strength, mask_blur=body.mask_blur)
    return upload, {}


@router.post("/sdapi/v1/img2img", response_model=Txt2ImgResponse, responses=ERRORS)
async def img2img(body: Img2ImgRequest, request: Request, owner: str = Depends(get_owner)) -> Txt2ImgResponse:
    svc = get_service(request)
    upload, _ = to_upload(body, svc.limits)
    base = to_generation(body).model_dump(exclude={"width", "height"}, exclude_defaults=True)
    try:
        with svc.uploads() as put:
            gen = edit_request(base, upload, svc.limits, put)
    except InvalidRequest as exc:
        if exc.field == "strength":
            raise InvalidRequest(exc.message.replace("strength", "denoising_strength", 1), field="denoising_strength") from None
        if exc.field == "image":
            raise InvalidRequest(exc.message.replace("image", "init_images", 1), field="init_images") from None
        raise
    job = await run_to_end(svc, gen, owner, request.app.state.settings.service.max_wait_s)
    files = [svc.store.get(im.id) for im in job.images]
    r = job.resolved or gen
    seeds = [im.seed for im in job.images]
    info: dict[str, Any] = {
        "prompt": r.prompt,
        "all_prompts": [r.prompt] * len(seeds),
        "negative_prompt": r.negative_prompt,
        "seed": seeds[0] if seeds else r.seed,
        "all_seeds": seeds,
        "width": r.width,
        "height": r.height,
        "cfg_scale": r.guidance,
        "steps": r.steps,
        "denoising_strength": r.edit.effective_strength if r.edit else body.denoising_strength,
        "sd_model_name": r.model,
        "sd_model_hash": (job.model_revision or "")[:10],
        "infotexts": [read_metadata(f).get("parameters", "") for f in files],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.started_at or time.time())),
        "zaoxiang_job_id": job.id,
    }
    images = [base64.b64encode(f).decode("ascii") for f in files] if body.send_images else []
    params = body.model_dump(exclude={"init_images", "mask"})
    return Txt2ImgResponse(images=images, parameters=params, info=json.dumps(info, ensure_ascii=False))
