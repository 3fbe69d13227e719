"""img2img, inpaint and outpaint through the runner on tiny real-architecture pipelines."""

from __future__ import annotations

import numpy as np
import pytest

from tests.edit_support import box_mask, noise_image, png
from zaoxiang.engine.edit_inputs import EditUpload, MemoryInputs, edit_request
from zaoxiang.engine.editing import composite, dilate, feather, plan_edit, steps_run
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import Limits

IMAGE = noise_image(64, 64)
MASK_BOX = (16, 16, 48, 32)


def _request(store: MemoryInputs, family: str, upload: EditUpload, **fields):
    base = {"prompt": "a red apple", "steps": 4, "seed": 3, "model": family, **fields}
    return edit_request(base, upload, Limits(), store.put)


def _inpaint(store, family, blur=2, **fields):
    up = EditUpload("inpaint", png(IMAGE), mask=png(box_mask(64, 64, MASK_BOX)), mask_blur=blur)
    return _request(store, family, up, **fields)


@pytest.mark.parametrize("family", ["flux", "sdxl", "z-image", "qwen-image"])
def test_inpaint_keeps_the_unmasked_region_exactly(tiny_runner, family):
    store = MemoryInputs()
    req = _inpaint(store, family)
    result = tiny_runner(family).run(req, inputs=store.get)
    out = np.asarray(result.images[0])
    src = np.asarray(IMAGE)
    alpha = np.asarray(plan_edit(req, store.get).alpha)
    keep = alpha == 0
    assert keep.sum() > 0.6 * keep.size  # the far region is most of the image
    assert (out[keep] == src[keep]).all()  # bit-identical outside the feathered mask
    left, top, right, bottom = MASK_BOX
    assert (out[top:bottom, left:right] != src[top:bottom, left:right]).mean() > 0.5  # the masked box was redrawn
    assert keep[: top - 8].all() and keep[bottom + 8 :].all()  # feathering stays within 2.5 * blur + 1


def test_outpaint_grows_the_canvas_by_exactly_the_requested_pixels(tiny_runner):
    store = MemoryInputs()
    up = EditUpload("outpaint", png(IMAGE), outpaint={"left": 16, "right": 0, "top": 32, "bottom": 16}, mask_blur=4)
    req = _request(store, "flux", up)
    assert (req.width, req.height) == (80, 112)
    out = np.asarray(tiny_runner("flux").run(req, inputs=store.get).images[0])
    assert out.shape == (112, 80, 3)
    # The original sits at (top=32, left=16); beyond the seam band (2*blur) and feather it is untouched.
    inner = out[32 + 20 : 32 + 64 - 20, 16 + 20 : 16 + 64]
    assert (inner == np.asarray(IMAGE)[20:44, 20:]).all()
    # The new border is generated, not the replicated edge pixels.
    assert (out[:32, 16:] != np.asarray(IMAGE)[:1]).mean() > 0.5


def test_img2img_strength_zero_returns_the_input_exactly(tiny_runner):
    store = MemoryInputs()
    req = _request(store, "flux", EditUpload("img2img", png(IMAGE), strength=0.0), n=2)
    result = tiny_runner("flux").run(req, inputs=store.get)
    assert len(result.images) == 2
    assert all((np.asarray(im) == np.asarray(IMAGE)).all() for im in result.images)


def test_img2img_runs_the_tail_of_the_schedule_and_is_seeded(tiny_runner):
    store = MemoryInputs()
    req = _request(store, "flux", EditUpload("img2img", png(IMAGE), strength=0.5), steps=4)
    events = []
    a = tiny_runner("flux").run(req, inputs=store.get, on_progress=events.append)
    b = tiny_runner("flux").run(req, inputs=store.get)
    assert [(e.step, e.total) for e in events] == [(1, 2), (2, 2)]  # strength 0.5 of 4 steps
    assert (np.asarray(a.images[0]) == np.asarray(b.images[0])).all()
    assert (np.asarray(a.images[0]) != np.asarray(IMAGE)).any()


def test_cache_key_covers_the_input_pixels():
    store = MemoryInputs()
    a = _request(store, "flux", EditUpload("img2img", png(IMAGE), strength=0.5)).model_copy(update={"guidance": 3.5})
    b = _request(store, "flux", EditUpload("img2img", png(noise_image(seed=1)), strength=0.5)).model_copy(update={"guidance": 3.5})
    same = _request(store, "flux", EditUpload("img2img", png(IMAGE, "WEBP") if False else png(IMAGE), strength=0.5))
    assert a.cache_key("r", "float32") != b.cache_key("r", "float32")
    assert a.cache_key("r", "float32") == same.model_copy(update={"guidance": 3.5}).cache_key("r", "float32")


def test_a_strength_that_runs_no_sdxl_step_is_refused(tiny_runner):
    # SDXL's img2img rounds steps * strength down (flow-matching pipelines keep at least one step).
    store = MemoryInputs()
    req = _request(store, "sdxl", EditUpload("img2img", png(IMAGE), strength=0.2), steps=4)
    with pytest.raises(InvalidRequest) as err:
        tiny_runner("sdxl").run(req, inputs=store.get)
    assert err.value.field == "edit.strength"


def test_stored_input_missing_names_the_field(tiny_runner):
    store = MemoryInputs()
    req = _request(store, "flux", EditUpload("img2img", png(IMAGE), strength=0.5))
    with pytest.raises(InvalidRequest) as err:
        tiny_runner("flux").run(req, inputs=MemoryInputs().get)
    assert err.value.field == "edit.image"


def test_pixel_helpers():
    assert [steps_run(10, s) for s in (0.0, 0.3, 0.5, 1.0)] == [0, 3, 5, 10]
    assert steps_run(4, 0.01) == 1  # as diffusers' flow-matching get_timesteps: never 0 above 0
    hard = box_mask(32, 32, (12, 12, 20, 20))
    assert np.asarray(dilate(hard, 2))[10:22, 10:22].min() == 255 and np.asarray(dilate(hard, 2))[9, 9] == 0
    a = feather(hard, 2)
    assert (np.asarray(a) >= np.asarray(hard)).all()  # never below the hard mask
    white, black = noise_image(32, 32, 1), noise_image(32, 32, 2)
    out = np.asarray(composite(white, black, a))
    zero = np.asarray(a) == 0
    assert (out[zero] == np.asarray(white)[zero]).all()
    full = np.asarray(a) == 255
    assert (out[full] == np.asarray(black)[full]).all()


def test_sd3_img2img_and_a_clear_error_for_inpaint_on_a_4_channel_transformer(tiny_runner):
    store = MemoryInputs()
    req = _request(store, "sd3", EditUpload("img2img", png(IMAGE), strength=0.5), guidance=1.0)
    out = tiny_runner("sd3").run(req, inputs=store.get).images[0]
    assert out.size == (64, 64) and (np.asarray(out) != np.asarray(IMAGE)).any()
    with pytest.raises(InvalidRequest) as err:
        tiny_runner("sd3").run(_inpaint(store, "sd3", guidance=1.0), inputs=store.get)
    assert err.value.field == "edit.mode" and "16 latent channels" in err.value.message


def test_upscale_side_limit(tiny_runner):
    from zaoxiang.protocol import GenerationRequest

    req = GenerationRequest(prompt="x", width=4096, height=1024, steps=1, seed=1, model="flux", upscale=4)
    with pytest.raises(InvalidRequest) as err:
        tiny_runner("flux").resolve(req)
    assert err.value.field == "upscale"
