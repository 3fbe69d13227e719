"""LoRA on the built-in model through the runner: apply, stack, scale, unload, cache, turbo, errors."""

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests._stub_text import StubTextEncoder
from tests._tiny_builtin import save_tiny_builtin
from zaoxiang.engine.lora import TURBO_FILE, LoraLibrary
from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.errors import InvalidRequest
from zaoxiang.model.config import preset
from zaoxiang.model.lora import load_lora, random_lora, save_lora
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.pipeline import BuiltinPipeline
from zaoxiang.protocol import GenerationRequest, parse_request
from zaoxiang.settings import EngineSettings

TARGETS = ("dual.0.img.qkv", "dual.0.txt.qkv", "single.0.linear1", "single.0.linear2", "final")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    return folder, save_tiny_builtin(folder)  # non-zero gates: a LoRA on any layer changes the output


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, weights):
    _, dit = weights
    d = tmp_path_factory.mktemp("loras")
    save_lora(d / "style.safetensors", random_lora(dit, rank=4, std=0.1, seed=1, targets=TARGETS), rank=4, alpha=4.0)
    save_lora(d / "other.safetensors", random_lora(dit, rank=2, std=0.1, seed=2, targets=TARGETS[:2]), rank=2, alpha=1.0)
    return d


def make_runner(folder, lora_dir=None):
    loads = []

    def loader(entry, policy, settings):
        loads.append(entry.name)
        return BuiltinPipeline.from_folder(entry.path, policy, text_encoder=StubTextEncoder(), name=entry.name)

    registry = ModelRegistry.discover(include_builtin=True, builtin_dir=folder)
    runner = Runner(registry, EngineSettings(device="cpu"), loader=loader, loras=LoraLibrary(lora_dir))
    return runner, loads


@pytest.fixture(scope="module")
def runner(weights, lora_dir):
    return make_runner(weights[0], lora_dir)


def run(runner, loras=(), **kw):
    fields = dict(prompt="一只红苹果", steps=2, guidance=1.0, seed=3, loras=[{"name": n, "scale": s} for n, s in loras])
    fields.update(kw)
    return np.asarray(runner.run(parse_request(fields)).images[0]).astype(np.int16)


def test_apply_scale_stack_unload_without_reloading(runner, weights):
    r, loads = runner
    base = run(r)
    styled = run(r, [("style", 1.0)])
    assert np.abs(styled - base).max() > 0  # the adapter changes the image
    assert np.array_equal(run(r, [("style", 0.0)]), base)  # scale 0 is no adapter
    half = run(r, [("style", 0.5)])
    assert not np.array_equal(half, styled) and not np.array_equal(half, base)
    other = run(r, [("other", 1.0)])
    both = run(r, [("style", 1.0), ("other", 1.0)])
    assert not np.array_equal(both, styled) and not np.array_equal(both, other)
    after = run(r)
    assert np.array_equal(after, base)  # adapters gone: the base, bit for bit
    fresh, _ = make_runner(weights[0])
    assert np.array_equal(run(fresh), after)  # ... and what a freshly loaded model makes
    assert loads == ["builtin"]  # the base was loaded once, never reloaded
    assert not any("lora" in n for n, _ in r.load("builtin")[0].transformer.named_modules())


def test_adapters_are_cached_in_ram(weights, lora_dir):
    r, _ = make_runner(weights[0], lora_dir)
    run(r, [("style", 1.0)])
    run(r, [("style", 0.7), ("other", 1.0)])
    run(r, [("style", 1.0)])
    assert r.loras.disk_reads == 2  # style read once, other once
    assert len(r.loras.cached()) == 2


def test_cache_key_covers_content_and_scale(weights, tmp_path):
    _, dit = weights
    save_lora(tmp_path / "x.safetensors", random_lora(dit, seed=5, targets=TARGETS[:1]), rank=4, alpha=4.0)
    r, _ = make_runner(weights[0], tmp_path)

    def key(scale):
        req = r.resolve(parse_request({"prompt": "a", "seed": 1, "loras": [{"name": "x", "scale": scale}]}))
        assert req.loras[0].sha256 is not None and r.resolve(req) == req  # resolving twice changes nothing
        return req.cache_key("rev", "float32")

    plain = r.resolve(parse_request({"prompt": "a", "seed": 1})).cache_key("rev", "float32")
    k1 = key(1.0)
    assert key(1.0) == k1 and key(0.5) != k1 and k1 != plain
    save_lora(tmp_path / "x.safetensors", random_lora(dit, seed=6, targets=TARGETS[:1]), rank=4, alpha=4.0)
    assert key(1.0) != k1  # new bytes under the same name: a new key


def test_kohya_file_equals_peft_file(weights, tmp_path):
    _, dit = weights
    layers = random_lora(dit, rank=4, std=0.1, seed=9, targets=TARGETS)
    save_lora(tmp_path / "peft.safetensors", layers, rank=4, alpha=2.0)
    kohya = {}
    for path, (down, up) in layers.items():
        stem = "lora_unet_" + path.replace(".", "_")
        kohya |= {f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up, f"{stem}.alpha": torch.tensor(2.0)}
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    assert load_lora(tmp_path / "kohya.safetensors").format == "kohya"
    r, _ = make_runner(weights[0], tmp_path)
    a, b = run(r, [("peft", 1.0)]), run(r, [("kohya", 1.0)])
    assert np.array_equal(a, b) and not np.array_equal(a, run(r))


def test_turbo_is_refused_until_installed_then_maps_to_its_lora(weights, tmp_path):
    folder, dit = weights
    r, _ = make_runner(folder)
    with pytest.raises(InvalidRequest) as e:
        r.resolve(parse_request({"prompt": "a", "turbo": True}))
    assert e.value.field == "turbo" and "turbo" in e.value.message
    save_lora(folder / TURBO_FILE, random_lora(dit, seed=4, targets=TARGETS), rank=4, alpha=4.0,
              extra_metadata={"recommended_steps": "3", "recommended_guidance": "1.0"})
    try:
        req = r.resolve(parse_request({"prompt": "a", "turbo": True, "seed": 3, "guidance": 4.0}))
        assert req.steps == 3 and req.guidance == 4.0  # the recommended steps; the request's guidance wins
        assert [x.name for x in req.loras] == ["turbo"] and req.loras[0].scale == 1.0 and req.loras[0].sha256
        turbo = run(r, turbo=True, steps=3)
        assert not np.array_equal(turbo, run(r, steps=3))
        assert np.array_equal(turbo, run(r, [("turbo", 1.0)], steps=3))  # "turbo" is also a LoRA name
    finally:
        (folder / TURBO_FILE).unlink()


def test_bad_inputs(runner, weights, tmp_path):
    r, _ = runner
    with pytest.raises(InvalidRequest) as e:
        run(r, [("style", 1.0), ("../../etc/passwd", 1.0)])
    assert e.value.field == "loras.1.name" and e.value.code == "unknown_lora" and "style" in e.value.message

    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    save_file({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 8),
               "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(8, 2)},
              str(tmp_path / "sdxl.safetensors"))
    small = MMDiT(dataclasses.replace(preset("tiny").transformer, hidden_size=48, num_heads=2))
    save_lora(tmp_path / "small.safetensors", random_lora(small, targets=TARGETS[:1]), rank=4, alpha=4.0)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    bad, loads = make_runner(weights[0], tmp_path)
    for name, code, words in [("broken", "lora_corrupt", "safetensors"), ("sdxl", "lora_mismatch", "SDXL"),
                              ("small", "lora_mismatch", "dual.0.img.qkv"), ("plain", "lora_corrupt", "no LoRA")]:
        with pytest.raises(InvalidRequest) as e:
            run(bad, [(name, 1.0)])
        assert (e.value.field, e.value.code) == ("loras.0.name", code) and words in e.value.message, e.value.message
    with pytest.raises(InvalidRequest) as e:
        parse_request({"prompt": "a", "loras": [{"name": "x", "scale": 9}]})
    assert e.value.field == "loras.0.scale"
    assert np.array_equal(run(bad), run(r))  # failed applications left the base as it was
    assert loads == ["builtin"]


def test_library_names(tmp_path, lora_dir):
    lib = LoraLibrary(lora_dir)
    assert [i.name for i in lib.list()] == ["other", "style"]
    (lora_dir / "late.safetensors").write_bytes((lora_dir / "other.safetensors").read_bytes())
    try:
        lib.check_names(GenerationRequest(prompt="a", loras=[{"name": "late"}]))  # found by a rescan
    finally:
        (lora_dir / "late.safetensors").unlink()
    extra = tmp_path / "mine.safetensors"
    extra.write_bytes((lora_dir / "style.safetensors").read_bytes())
    assert lib.register(extra) == "mine" and "mine" in [i.name for i in lib.list()]
    assert lib.sha256(extra) == lib.sha256(lora_dir / "style.safetensors")
    with pytest.raises(InvalidRequest):
        lib.register(tmp_path / "missing.safetensors")
