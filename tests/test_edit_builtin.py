"""Edits on the built-in model's tiny preset: latent blending in the per-step hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests._stub_text import StubTextEncoder
from tests.edit_support import box_mask, noise_image, png
from zaoxiang.engine.edit_inputs import EditUpload, MemoryInputs, edit_request
from zaoxiang.engine.editing import plan_edit
from zaoxiang.engine.pipelines.base import PhaseTimer, RunContext
from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.editing import generate_edit
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.pipeline import BuiltinPipeline
from zaoxiang.model.serialization import save_weights
from zaoxiang.protocol import Limits

IMAGE = noise_image(64, 64, seed=3)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    cfg = preset("tiny")
    torch.manual_seed(0)
    dit, ae = MMDiT(cfg.transformer), Autoencoder(cfg.autoencoder)
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    folder = tmp_path_factory.mktemp("weights")
    save_weights(folder, cfg, dit.state_dict(), ae.state_dict())
    return BuiltinPipeline.from_folder(folder, PrecisionPolicy.for_device("cpu"), text_encoder=StubTextEncoder())


def _run(pipe, upload: EditUpload, **fields):
    store = MemoryInputs()
    base = {"prompt": "一只红苹果", "steps": 4, "guidance": 1.0, "seed": 5, "model": "builtin", **fields}
    req = edit_request(base, upload, Limits(), store.put)
    calls: list[tuple[int, int]] = []
    ctx = RunContext(request=req, seeds=[req.seed + i for i in range(req.n)], step=lambda i, n, lat: calls.append((i, n)),
                     precision=pipe.policy, timer=PhaseTimer(torch.device("cpu")), inputs=store.get)
    return generate_edit(pipe, ctx), calls, plan_edit(req, store.get)


def test_inpaint_keeps_unmasked_pixels_and_blends_latents(pipe):
    images, calls, plan = _run(pipe, EditUpload("inpaint", png(IMAGE), mask=png(box_mask(64, 64, (16, 16, 48, 48))), mask_blur=2), guidance=2.0)
    out, src = np.asarray(images[0]), np.asarray(IMAGE)
    keep = np.asarray(plan.alpha) == 0
    assert keep.sum() > 0.3 * keep.size and (out[keep] == src[keep]).all()
    assert (out[20:44, 20:44] != src[20:44, 20:44]).mean() > 0.5
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_outpaint_grows_canvas_and_img2img_strength(pipe):
    small = noise_image(32, 64, seed=1)  # 32 wide: + 32 on the right makes the model's 64x64
    images, _, _ = _run(pipe, EditUpload("outpaint", png(small), outpaint={"right": 32}, mask_blur=2))
    assert images[0].size == (64, 64)
    assert (np.asarray(images[0])[:, :20] == np.asarray(small)[:, :20]).all()
    same, calls, _ = _run(pipe, EditUpload("img2img", png(IMAGE), strength=0.0), n=2)
    assert calls == [] and all((np.asarray(im) == np.asarray(IMAGE)).all() for im in same)
    half, calls, _ = _run(pipe, EditUpload("img2img", png(IMAGE), strength=0.5))
    assert calls == [(1, 2), (2, 2)] and (np.asarray(half[0]) != np.asarray(IMAGE)).any()
    again, _, _ = _run(pipe, EditUpload("img2img", png(IMAGE), strength=0.5))
    assert (np.asarray(again[0]) == np.asarray(half[0])).all()
