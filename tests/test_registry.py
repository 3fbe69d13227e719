import json

import pytest

from zaoxiang.engine.registry import ModelRegistry, builtin_entry, folder_revision, inspect_folder
from zaoxiang.errors import InvalidRequest, ModelNotFound, NoModelInstalled


def fake_folder(root, name, cls="FluxPipeline"):
    d = root / name
    d.mkdir()
    (d / "model_index.json").write_text(json.dumps({"_class_name": cls, "_diffusers_version": "0.42.1"}))
    (d / "transformer").mkdir()
    (d / "transformer" / "config.json").write_text("{}")
    return d


@pytest.mark.parametrize(
    "cls, family",
    [("FluxPipeline", "flux"), ("QwenImagePipeline", "qwen-image"), ("ZImagePipeline", "z-image"),
     ("StableDiffusion3Pipeline", "sd3"), ("StableDiffusionXLPipeline", "sdxl")],
)
def test_families_detected_from_model_index(tmp_path, cls, family):
    e = inspect_folder(fake_folder(tmp_path, "m", cls))
    assert e.family == family and e.kind == "diffusers" and e.name == "m"


def test_models_dir_scans_and_skips_with_reasons(tmp_path):
    fake_folder(tmp_path, "flux-dev")
    fake_folder(tmp_path, "old", "StableDiffusionPipeline")
    (tmp_path / "notes").mkdir()
    reg = ModelRegistry.discover(models_dir=tmp_path, include_builtin=False)
    assert [e.name for e in reg.list()] == ["flux-dev"]
    reasons = {s.path.name: s.reason for s in reg.skipped}
    assert "StableDiffusionPipeline" in reasons["old"] and "model_index.json" in reasons["notes"]
    assert reg.default == "flux-dev"


def test_named_model_args(tmp_path):
    d = fake_folder(tmp_path, "folder")
    reg = ModelRegistry.discover([f"mine={d}"], include_builtin=False)
    assert reg.get("mine").path == d.resolve()
    with pytest.raises(ModelNotFound) as info:
        reg.get("folder")
    assert "mine" in info.value.message


def test_duplicate_names_rejected(tmp_path):
    d = fake_folder(tmp_path, "x")
    with pytest.raises(InvalidRequest):
        ModelRegistry.discover([str(d), f"x={d}"], include_builtin=False)


def test_bad_folders_explain_themselves(tmp_path):
    with pytest.raises(InvalidRequest, match="not a directory"):
        inspect_folder(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{nope")
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        inspect_folder(tmp_path / "broken")


def test_no_models_means_clear_error():
    reg = ModelRegistry([])
    with pytest.raises(NoModelInstalled, match="--model"):
        reg.get(None)


def test_revision_changes_with_content(tmp_path):
    d = fake_folder(tmp_path, "m")
    r1 = folder_revision(d)
    assert r1 == folder_revision(d)
    (d / "transformer" / "config.json").write_text('{"num_layers": 2}')
    assert folder_revision(d) != r1


def test_builtin_entry_needs_weights_and_a_config_that_parses(tmp_path):
    import json

    from zaoxiang.model.config import preset

    assert builtin_entry(tmp_path) is None
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(InvalidRequest, match="config.json.*not a built-in model config"):
        builtin_entry(tmp_path)  # said at discovery, not at the first request
    (tmp_path / "config.json").write_text(json.dumps(preset("tiny").to_dict()))
    entry = builtin_entry(tmp_path)
    assert entry.name == "builtin" and entry.native_size == preset("tiny").image_size == 64


def test_a_builtin_weights_folder_is_a_model_argument(tmp_path):
    """What `zaoxiang train --export` writes (config.json + model*.safetensors, no model_index.json)
    registers as a built-in model under its folder's name or the given one."""
    from tests._tiny_builtin import save_tiny_builtin

    save_tiny_builtin(tmp_path / "run4")
    entry = inspect_folder(tmp_path / "run4")
    assert (entry.kind, entry.family, entry.name) == ("builtin", "builtin", "run4")
    reg = ModelRegistry.discover([f"mine={tmp_path / 'run4'}"], include_builtin=False)
    assert reg.get("mine").kind == "builtin" and reg.get("mine").path == (tmp_path / "run4").resolve()
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text("{}")  # no weights: neither kind
    with pytest.raises(InvalidRequest, match="neither a diffusers-format model folder nor built-in weights"):
        inspect_folder(tmp_path / "config-only")


def test_generate_runs_a_builtin_weights_folder(tmp_path):
    from PIL import Image
    from tests._tiny_builtin import save_tiny_builtin

    from zaoxiang.cli import main

    save_tiny_builtin(tmp_path / "w")
    out = tmp_path / "img.png"
    assert main(["generate", "--model", str(tmp_path / "w"), "一只红苹果", "--steps", "2", "-o", str(out)]) == 0
    assert Image.open(out).size == (64, 64)
