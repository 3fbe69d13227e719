"""Bad edit inputs are refused at the boundary with an error naming the field and the problem."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.edit_support import box_mask, noise_image, png
from zaoxiang.engine.edit_inputs import EditUpload, MemoryInputs, edit_request, mask_from_alpha
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationRequest, Limits

GOOD = png(noise_image(64, 64))
MASK = png(box_mask(64, 64, (0, 0, 32, 32)))


def _refused(upload: EditUpload, limits: Limits | None = None, **fields) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as err:
        edit_request({"prompt": "x", **fields}, upload, limits or Limits(), MemoryInputs().put)
    return err.value


@pytest.mark.parametrize(
    "upload, field, words",
    [
        (EditUpload("inpaint", GOOD, mask=png(box_mask(64, 80, (0, 0, 8, 8)))), "mask", "same size"),
        (EditUpload("img2img", b"this is not an image"), "image", "not an image"),
        (EditUpload("img2img", GOOD[: len(GOOD) // 2]), "image", "corrupt or truncated"),
        (EditUpload("img2img", b""), "image", "empty"),
        (EditUpload("img2img", png(noise_image(64, 64), "GIF")), "image", "GIF"),
        (EditUpload("img2img", png(noise_image(72, 64))), "image", "multiples of 16"),
        (EditUpload("img2img", png(noise_image(48, 48))), "image", "at least 64"),
        (EditUpload("inpaint", GOOD), "mask", "needs a mask"),
        (EditUpload("inpaint", GOOD, mask=png(box_mask(64, 64, (0, 0, 0, 0)))), "mask", "no pixel"),
        (EditUpload("img2img", GOOD, mask=MASK), "mask", "takes no mask"),
        (EditUpload("outpaint", GOOD, outpaint={"left": 10}), "outpaint", "multiple of 16"),
        (EditUpload("outpaint", GOOD, outpaint={}), "outpaint", "at least one side"),
        (EditUpload("outpaint", GOOD, outpaint={"right": 4096}), "outpaint", "budget"),
        (EditUpload("img2img", GOOD, strength=1.5), "strength", "between 0 and 1"),
        (EditUpload("img2img", GOOD, strength=-0.1), "strength", "between 0 and 1"),
        (EditUpload("inpaint", GOOD, mask=MASK, mask_blur=65), "mask_blur", "between 0 and 64"),
    ],
)
def test_bad_inputs_name_the_field(upload, field, words):
    err = _refused(upload)
    assert err.field == field, err.message
    assert words in err.message


def test_oversized_image_is_refused_from_its_header():
    err = _refused(EditUpload("img2img", png(noise_image(128, 128))), Limits(max_pixels=64 * 64))
    assert err.field == "image" and "over the budget of 4096 pixels" in err.message


def test_size_that_disagrees_with_the_input_is_refused():
    err = _refused(EditUpload("img2img", GOOD), width=128)
    assert err.field == "width"


def test_openai_alpha_mask_means_transparent_is_edited():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    rgba.putpixel((1, 2), (0, 0, 0, 0))
    m = mask_from_alpha(rgba)
    assert m.getpixel((1, 2)) == 255 and m.getpixel((0, 0)) == 0


def test_the_request_carries_content_keys_not_bytes():
    store = MemoryInputs()
    req = edit_request({"prompt": "x"}, EditUpload("inpaint", GOOD, mask=MASK, strength=0.6), Limits(), store.put)
    assert (req.width, req.height) == (64, 64)
    assert req.edit is not None and len(req.edit.image) == 64 and req.edit.mask in store._blobs
    again = GenerationRequest.model_validate_json(req.model_dump_json())  # it survives the queue
    assert again == req
    with pytest.raises(ValueError):
        GenerationRequest(prompt="x", edit={"mode": "img2img", "image": "../../etc/passwd"})


def test_plain_requests_keep_their_cache_keys():
    req = GenerationRequest(prompt="a", width=64, height=64, steps=2, guidance=1.0, seed=1, model="m")
    # The key this request had before edit/upscale existed: stored cache entries stay valid.
    assert req.cache_key("rev", "float32") == "fcc7b04ab989a580932a061b9a834c87c17d3fa65127a2addea340c95f16048c"
    assert req.model_copy(update={"upscale": 2}).cache_key("rev", "float32") != req.cache_key("rev", "float32")
