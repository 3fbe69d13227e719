import dataclasses
import io

import pytest
from PIL import Image

from zaoxiang.engine.metadata import encode_image, read_metadata
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationRequest, GenerationResult, ModelIdentity, PhaseTimings


def result():
    req = GenerationRequest(prompt="一只红苹果, red apple", negative_prompt="blurry", width=64, height=64,
                            steps=4, guidance=3.5, seed=42, model="tiny", n=2)
    return GenerationResult(images=[], seeds=[42, 43], request=req,
                            model=ModelIdentity("tiny", "flux", "abcdef0123456789", "/m/tiny"),
                            timings=PhaseTimings(total_s=1.0), dtype="float32", device="cpu")


def test_png_carries_a1111_parameters_and_full_json():
    data = encode_image(Image.new("RGB", (64, 64), "red"), result(), 1, "png")
    meta = read_metadata(data)
    params = meta["parameters"].splitlines()
    assert params[0] == "一只红苹果, red apple"
    assert params[1] == "Negative prompt: blurry"
    assert "Steps: 4" in params[2] and "CFG scale: 3.5" in params[2] and "Seed: 43" in params[2]
    assert "Size: 64x64" in params[2] and "Model: tiny" in params[2]
    j = meta["zaoxiang"]
    assert j["request"]["prompt"] == "一只红苹果, red apple" and j["seed"] == 43
    assert j["model"]["revision"] == "abcdef0123456789" and j["generator"].startswith("zaoxiang")
    assert "created" in j
    assert Image.open(io.BytesIO(data)).size == (64, 64)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_lossy_formats_keep_parameters_in_exif(fmt):
    data = encode_image(Image.new("RGB", (64, 64), "blue"), result(), 0, fmt)
    assert "Seed: 42" in read_metadata(data)["parameters"]


def test_corrupt_file_is_a_clear_error():
    with pytest.raises(InvalidRequest) as info:
        read_metadata(b"\x89PNG\r\n\x1a\nbroken")
    assert info.value.field == "image"


def test_stored_file_is_a_function_of_the_job_not_of_the_run():
    """A retried job must store the same bytes (the store is content-addressed): no encoding time,
    no wall-clock timings; the job's creation time instead. Files the CLI writes keep their timings."""
    from zaoxiang.service.worker import encode_for_store

    image = Image.new("RGB", (64, 64), "red")
    first = result()
    second = dataclasses.replace(result(), timings=PhaseTimings(total_s=7.5), extras={"timings_extra": {"upscale_s": 2.0}})
    created_at = 1_700_000_000.0
    a = encode_for_store(image, first, 0, created_at)
    assert a == encode_for_store(image, second, 0, created_at)
    assert a != encode_for_store(image, first, 0, created_at + 60)
    meta = read_metadata(a)["zaoxiang"]
    assert meta["created"] == "2023-11-14T22:13:20+00:00"
    assert "timings" not in meta and "timings_extra" not in meta
    assert read_metadata(encode_image(image, second, 0, "png"))["zaoxiang"]["timings"]["total_s"] == 7.5
