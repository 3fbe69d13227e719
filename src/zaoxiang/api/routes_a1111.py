"""AUTOMATIC1111-compatible endpoints, for tools written against its web UI's API.

``POST /sdapi/v1/txt2img`` maps ``prompt``, ``negative_prompt``, ``seed`` (-1 = random),
``steps``, ``cfg_scale``, ``width``, ``height``, ``batch_size`` × ``n_iter`` (images),
``sampler_name``/``sampler_index`` ("Euler" → euler; any other name → the model's own
scheduler) and ``override_settings.sd_model_checkpoint`` (a model name, "name [hash]" accepted).
Everything else A1111 clients send (hires fix, restore faces, scripts, styles, subseeds, ...) is
accepted and ignored. Sizes must be multiples of 16 (A1111 allows 8). Progress and interrupt act
on the caller's own running job.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zaoxiang.api.deps import get_owner, get_service
from zaoxiang.api.routes_native import ERRORS
from zaoxiang.api.sync import run_to_end
from zaoxiang.engine.metadata import read_metadata
from zaoxiang.protocol import GenerationRequest, invalid_from_pydantic
from zaoxiang.service.exceptions import JobNotCancellable

router = APIRouter(tags=["a1111"])

_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]+\]$")
_EXT = re.compile(r"\.(safetensors|ckpt|pt|bin)$", re.IGNORECASE)


class Txt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(default="", max_length=32000)
    negative_prompt: str = Field(default="", max_length=32000)
    seed: int = Field(default=-1, ge=-1)
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    batch_size: int = Field(default=1, ge=1, le=64)
    n_iter: int = Field(default=1, ge=1, le=64)
    sampler_name: str | None = None
    sampler_index: str | None = None
    override_settings: dict[str, Any] | None = None
    send_images: bool = True
    save_images: bool = False


class Txt2ImgResponse(BaseModel):
    images: list[str]
    parameters: dict[str, Any]
    info: str


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None


class SdModel(BaseModel):
    title: str
    model_name: str
    hash: str
    sha256: str | None = None
    filename: str
    config: str | None = None


def _model_from_checkpoint(title: str | None) -> str | None:
    if not title:
        return None
    return _EXT.sub("", _TITLE_HASH.sub("", title.strip())) or None


def to_generation(body: Txt2ImgRequest) -> GenerationRequest:
    sampler = (body.sampler_name or body.sampler_index or "").strip().lower()
    checkpoint = (body.override_settings or {}).get("sd_model_checkpoint")
    data = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "seed": None if body.seed == -1 else body.seed,
        "steps": body.steps,
        "guidance": body.cfg_scale,
        "width": body.width,
        "height": body.height,
        "n": body.batch_size * body.n_iter,
        "model": _model_from_checkpoint(checkpoint if isinstance(checkpoint, str) else None),
        "sampler": {"name": "euler" if sampler == "euler" else "default"},
    }
    try:
        return GenerationRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


@router.post("/sdapi/v1/txt2img", response_model=Txt2ImgResponse, responses=ERRORS)
async def txt2img(body: Txt2ImgRequest, request: Request, owner: str = Depends(get_owner)) -> Txt2ImgResponse:
    svc = get_service(request)
    job = await run_to_end(svc, to_generation(body), owner, request.app.state.settings.service.max_wait_s)
    files = [svc.store.get(im.id) for im in job.images]
    r = job.resolved
    assert r is not None  # a succeeded job is always resolved
    seeds = [im.seed for im in job.images]
    infotexts = [read_metadata(f).get("parameters", "") for f in files]
    info = {
        "prompt": r.prompt,
        "all_prompts": [r.prompt] * len(seeds),
        "negative_prompt": r.negative_prompt,
        "all_negative_prompts": [r.negative_prompt] * len(seeds),
        "seed": seeds[0] if seeds else r.seed,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * len(seeds),
        "width": r.width,
        "height": r.height,
        "sampler_name": "Euler" if r.sampler.name == "euler" else "Default",
        "cfg_scale": r.guidance,
        "steps": r.steps,
        "batch_size": body.batch_size,
        "sd_model_name": r.model,
        "sd_model_hash": (job.model_revision or "")[:10],
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "infotexts": infotexts,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.started_at or time.time())),
        "zaoxiang_job_id": job.id,
    }
    images = [base64.b64encode(f).decode("ascii") for f in files] if body.send_images else []
    return Txt2ImgResponse(images=images, parameters=body.model_dump(), info=json.dumps(info, ensure_ascii=False))


@router.get("/sdapi/v1/progress", response_model=ProgressResponse, responses=ERRORS)
def progress(
    request: Request,
    owner: str = Depends(get_owner),
    skip_current_image: bool = Query(default=False),
) -> ProgressResponse:
    svc = get_service(request)
    cur = svc.worker.current
    if cur is None or cur.owner != owner or cur.total == 0:
        return ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState(job_count=0))
    frac = cur.step / cur.total
    elapsed = time.time() - cur.started
    eta = elapsed / frac - elapsed if frac > 0 else 0.0
    image = None
    if cur.preview is not None and not skip_current_image:
        image = base64.b64encode(cur.preview).decode("ascii")
    return ProgressResponse(
        progress=round(frac, 4),
        eta_relative=round(eta, 3),
        state=ProgressState(
            job=cur.job_id,
            job_count=1,
            job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(cur.started)),
            sampling_step=cur.step,
            sampling_steps=cur.total,
        ),
        current_image=image,
    )


@router.post("/sdapi/v1/interrupt", responses=ERRORS)
def interrupt(request: Request, owner: str = Depends(get_owner)) -> dict[str, Any]:
    """Stop the caller's running job within one step (as A1111's Interrupt button does)."""
    svc = get_service(request)
    cur = svc.worker.current
    if cur is not None and cur.owner == owner:
        try:
            svc.cancel(cur.job_id, owner)
        except JobNotCancellable:
            pass  # it finished between the look and the cancel: nothing left to interrupt
    return {}


@router.get("/sdapi/v1/sd-models", response_model=list[SdModel], responses=ERRORS)
def sd_models(request: Request, owner: str = Depends(get_owner)) -> list[SdModel]:
    registry = get_service(request).runner.registry
    out = []
    for e in registry.list():
        rev = registry.revision(e)
        out.append(SdModel(title=f"{e.name} [{rev[:10]}]", model_name=e.name, hash=rev[:10], filename=str(e.path)))
    return out
