"""LoRA on tiny FLUX and SDXL pipelines: diffusers/peft and kohya files through diffusers' own loaders."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from zaoxiang.engine.lora import LoraLibrary
from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner, default_loader
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import parse_request
from zaoxiang.settings import EngineSettings


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py


def _pair(gen, out_f, in_f, rank=4, std=0.3):
    return torch.randn(rank, in_f, generator=gen) * std, torch.randn(out_f, rank, generator=gen) * std  # (r, in), (out, r)


def peft_lora(layers: dict[str, tuple[int, int]], seed: int, prefix: str) -> dict[str, torch.Tensor]:
    """diffusers' own format: ``<component>.<module>.lora_A.weight`` / ``lora_B``."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for module, (in_f, out_f) in layers.items():
        down, up = _pair(gen, out_f, in_f)
        sd[f"{prefix}.{module}.lora_A.weight"], sd[f"{prefix}.{module}.lora_B.weight"] = down, up
    return sd


def kohya_lora(layers: dict[str, tuple[int, int]], seed: int) -> dict[str, torch.Tensor]:
    """kohya's sd-scripts format: ``lora_unet_<module>.lora_down.weight`` / ``lora_up`` / ``alpha``."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for stem, (in_f, out_f) in layers.items():
        down, up = _pair(gen, out_f, in_f)
        sd |= {f"{stem}.lora_down.weight": down, f"{stem}.lora_up.weight": up, f"{stem}.alpha": torch.tensor(2.0)}
    return sd


# Tiny FLUX: inner width 32, MLP 128. Kohya FLUX files use BFL's module names (double_blocks ...).
FLUX_PEFT = {"transformer_blocks.0.attn.to_q": (32, 32), "transformer_blocks.0.attn.to_v": (32, 32),
             "transformer_blocks.0.ff.net.2": (128, 32), "single_transformer_blocks.0.proj_out": (160, 32)}
FLUX_KOHYA = {"lora_unet_double_blocks_0_img_attn_qkv": (32, 96), "lora_unet_single_blocks_0_linear2": (160, 32)}
# Tiny SDXL: the cross-attention block of down_blocks.1 (width 32), and the first CLIP's layer 0.
SDXL_PEFT = {"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q": (32, 32),
             "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v": (64, 32),
             "up_blocks.0.attentions.0.proj_out": (32, 32)}
SDXL_KOHYA = {"lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k": (32, 32),
              "lora_unet_up_blocks_0_attentions_0_proj_in": (32, 32),
              # All four attention projections, as real kohya files have: diffusers tells the converted
              # text-encoder keys' format by the presence of out_proj's.
              **{f"lora_te1_text_model_encoder_layers_0_self_attn_{p}_proj": (32, 32) for p in "qkv"},
              "lora_te1_text_model_encoder_layers_0_self_attn_out_proj": (32, 32)}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("loras")
    files = {
        "flux_peft": peft_lora(FLUX_PEFT, 1, "transformer"),
        "flux_peft2": peft_lora(FLUX_PEFT, 2, "transformer"),
        "flux_kohya": kohya_lora(FLUX_KOHYA, 3),
        "sdxl_peft": peft_lora(SDXL_PEFT, 4, "unet"),
        "sdxl_kohya": kohya_lora(SDXL_KOHYA, 5),
    }
    for name, sd in files.items():
        save_file(sd, str(d / f"{name}.safetensors"))
    return d


@pytest.fixture(scope="module")
def runners(tiny_model_dir, lora_dir):
    made = {}

    def get(family):
        if family not in made:
            loads = []

            def loader(entry, policy, settings):
                loads.append(entry.name)
                return default_loader(entry, policy, settings)

            registry = ModelRegistry.discover([f"tiny={tiny_model_dir(family)}"], include_builtin=False)
            made[family] = (Runner(registry, EngineSettings(device="cpu"), loader=loader, loras=LoraLibrary(lora_dir)), loads)
        return made[family]

    return get


GUIDANCE = {"flux": 3.5, "sdxl": 1.0}


def run(runner, family, loras=()):
    req = parse_request({"prompt": "a red apple", "width": 64, "height": 64, "steps": 2, "seed": 5,
                         "guidance": GUIDANCE[family], "loras": [{"name": n, "scale": s} for n, s in loras]})
    return np.asarray(runner.run(req).images[0]).astype(np.int16)


@pytest.mark.parametrize("family", ["flux", "sdxl"])
def test_apply_scale_stack_unload(family, runners):
    r, loads = runners(family)
    peft, kohya = f"{family}_peft", f"{family}_kohya"
    base = run(r, family)
    one = run(r, family, [(peft, 1.0)])
    assert np.abs(one - base).max() > 0
    assert np.array_equal(run(r, family, [(peft, 0.0)]), base)  # scale 0 is no adapter
    k = run(r, family, [(kohya, 1.0)])
    assert not np.array_equal(k, base) and not np.array_equal(k, one)  # kohya keys were converted and applied
    both = run(r, family, [(peft, 1.0), (kohya, 1.0)])
    assert not np.array_equal(both, one) and not np.array_equal(both, k)
    assert np.array_equal(run(r, family), base)  # unloaded: the base model, bit for bit
    pipe = r.load("tiny")[0].pipe
    assert not pipe.get_list_adapters()
    assert not any("lora" in n for n, _ in pipe.text_encoder.named_modules())
    assert loads == ["tiny"]  # never reloaded
    assert r.loras.disk_reads == 2  # each file read once, then served from RAM


def test_flux_cache_key_and_stacking_of_same_format(runners):
    r, _ = runners("flux")

    def key(loras):
        req = parse_request({"prompt": "a", "seed": 1, "width": 64, "height": 64, "loras": loras})
        return r.resolve(req).cache_key("rev", "float32")

    a = key([{"name": "flux_peft", "scale": 1.0}])
    assert a != key([{"name": "flux_peft", "scale": 0.9}]) and a != key([{"name": "flux_peft2", "scale": 1.0}])
    assert a != key([])
    two = run(r, "flux", [("flux_peft", 1.0), ("flux_peft2", 0.5)])
    assert not np.array_equal(two, run(r, "flux", [("flux_peft", 1.0)]))


def test_lora_for_another_architecture_is_refused(runners):
    r, loads = runners("sdxl")
    base = run(r, "sdxl")
    for name, words in [("flux_peft", "FLUX.1"), ("flux_kohya", "FLUX.1")]:
        with pytest.raises(InvalidRequest) as e:
            run(r, "sdxl", [("sdxl_peft", 1.0), (name, 1.0)])
        assert e.value.field == "loras.1.name" and e.value.code == "lora_mismatch" and words in e.value.message
    fr, _ = runners("flux")
    with pytest.raises(InvalidRequest) as e:
        run(fr, "flux", [("sdxl_kohya", 1.0)])
    assert e.value.code == "lora_mismatch" and "SDXL" in e.value.message
    assert np.array_equal(run(r, "sdxl"), base) and loads == ["tiny"]


def test_turbo_without_a_turbo_file_is_refused(runners):
    r, _ = runners("flux")
    with pytest.raises(InvalidRequest) as e:
        r.resolve(parse_request({"prompt": "a", "turbo": True}))
    assert e.value.field == "turbo" and "turbo" in e.value.message
