import pytest

from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationRequest, Limits, parse_request


def test_minimal_request_has_defaults_unresolved():
    req = parse_request({"prompt": "一只红苹果"})
    assert req.prompt == "一只红苹果" and req.n == 1
    assert not req.is_resolved()


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "   "}, "prompt", "empty"),
        ({"prompt": "x" * 2001}, "prompt", "2000"),
        ({"prompt": "a", "negative_prompt": "y" * 2001}, "negative_prompt", "2000"),
        ({"prompt": "a", "width": 1000}, "width", "multiple of 16"),
        ({"prompt": "a", "height": 1000}, "height", "multiple of 16"),
        ({"prompt": "a", "width": 4096, "height": 4096}, "width", "budget"),
        ({"prompt": "a", "width": 8192}, "width", "4096"),
        ({"prompt": "a", "width": 32}, "width", "64"),
        ({"prompt": "a", "steps": 0}, "steps", "1"),
        ({"prompt": "a", "steps": 151}, "steps", "150"),
        ({"prompt": "a", "guidance": -1}, "guidance", "0"),
        ({"prompt": "a", "guidance": 31}, "guidance", "30"),
        ({"prompt": "a", "n": 9}, "n", "8"),
        ({"prompt": "a", "n": 0}, "n", "1"),
        ({"prompt": "a", "seed": -5}, "seed", "0"),
        ({"prompt": "a", "steps": "many"}, "steps", "integer"),
        ({"prompt": "a", "output_format": "gif"}, "output_format", "png"),
        ({"prompt": "a", "colour": "red"}, "colour", "unknown field"),
        ({"prompt": "a", "sampler": {"name": "ddim"}}, "sampler.name", "euler"),
    ],
)
def test_bad_input_names_field_and_limit(body, field, words):
    with pytest.raises(InvalidRequest) as info:
        parse_request(body)
    assert info.value.field == field
    assert words.lower() in info.value.message.lower()


def test_non_object_body_is_rejected():
    with pytest.raises(InvalidRequest):
        parse_request(["prompt"])  # type: ignore[arg-type]


def test_deployment_limits_are_configurable():
    with pytest.raises(InvalidRequest) as info:
        parse_request({"prompt": "a", "n": 3}, Limits(max_images=2))
    assert info.value.field == "n" and "2" in info.value.message


def _resolved(**kw):
    base = dict(prompt="a cat", width=256, height=256, steps=4, guidance=1.0, seed=7, model="builtin")
    base.update(kw)
    return GenerationRequest(**base)


def test_cache_key_covers_output_fields_only():
    a = _resolved()
    assert a.cache_key("rev1", "float32") == _resolved().cache_key("rev1", "float32")
    assert a.cache_key("rev1", "float32") == _resolved(output_format="webp").cache_key("rev1", "float32")
    for change in ({"seed": 8}, {"prompt": "a dog"}, {"steps": 5}, {"guidance": 2.0}, {"width": 272},
                   {"negative_prompt": "x"}, {"model": "other"}, {"sampler": {"name": "euler"}}):
        assert _resolved(**change).cache_key("rev1", "float32") != a.cache_key("rev1", "float32"), change
    assert a.cache_key("rev2", "float32") != a.cache_key("rev1", "float32")
    assert a.cache_key("rev1", "bfloat16") != a.cache_key("rev1", "float32")


def test_unseeded_request_has_no_cache_key():
    with pytest.raises(ValueError):
        GenerationRequest(prompt="a").cache_key("rev", "float32")
