"""Batched evaluation (``--batch-size``): the same images as the Runner path, one image at a time.

Tolerance: fp32 on the CPU, max abs pixel difference ≤ 1 (of 255) between an image made in a batch
of different prompts and the same prompt + seed through ``Runner.run`` — the only difference is
matmul rounding, which depends on the batch size.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests._stub_text import StubTextEncoder
from tests._tiny_builtin import save_tiny_builtin
from zaoxiang.cli import main
from zaoxiang.engine.lora import TURBO_FILE, LoraLibrary
from zaoxiang.engine.precision import PrecisionPolicy
from zaoxiang.engine.registry import ModelEntry, ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.errors import GenerationFailed, InvalidRequest
from zaoxiang.model.lora import random_lora, save_lora
from zaoxiang.model.pipeline import BuiltinPipeline
from zaoxiang.settings import EngineSettings
from zaoxiang.training.eval.harness import BatchedRunnerSource, RunnerSource, evaluate

TOLERANCE = 1  # max abs pixel difference, 0..255
PROMPTS = ["一只红苹果", "a blue car on the left", "三只猫", "a sign that says hello", "a red bird, small"]
SEEDS = [5, 6]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    dit = save_tiny_builtin(folder)  # non-zero gates: prompts, guidance and the LoRA change the output
    # The turbo adapter with its own recommended steps/guidance, as a distilled one would carry.
    save_lora(folder / TURBO_FILE, random_lora(dit, seed=4), rank=4, alpha=4.0,
              extra_metadata={"recommended_steps": "2", "recommended_guidance": "1.0"})
    return folder


@pytest.fixture(scope="module")
def runner(weights):
    def loader(entry, policy, settings):
        return BuiltinPipeline.from_folder(entry.path, policy, text_encoder=StubTextEncoder(), name=entry.name)

    registry = ModelRegistry.discover(include_builtin=True, builtin_dir=weights)
    return Runner(registry, EngineSettings(device="cpu"), loader=loader, loras=LoraLibrary())


def _pixels(per_unit):
    return [np.asarray(im).astype(np.int16) for images in per_unit for im in images]


@pytest.mark.parametrize("steps,guidance,turbo", [(3, 1.0, False), (3, 4.0, False), (None, None, True)],
                         ids=["no-cfg", "cfg", "turbo"])
def test_batched_images_equal_the_runner_images(runner, steps, guidance, turbo):
    units = [(None, "en", p) for p in PROMPTS]  # the item is only used to name saved files
    one = RunnerSource(runner, None, steps, guidance, turbo)
    batched = BatchedRunnerSource(runner, None, steps, guidance, turbo, batch_size=4)
    expected = _pixels([one.images(item, lang, prompt, SEEDS) for item, lang, prompt in units])
    got = _pixels(batched.images_many(units, SEEDS))  # 10 jobs: batches of 4, 4, 2 across prompts
    assert len(got) == len(expected) == len(PROMPTS) * len(SEEDS)
    for e, g in zip(expected, got):
        assert np.abs(e - g).max() <= TOLERANCE
    # The comparison can fail: prompts and seeds give different images.
    assert np.abs(expected[0] - expected[1]).max() > 10 and np.abs(expected[0] - expected[2]).max() > 10


def test_turbo_and_guidance_change_the_batched_images(runner):
    """The batched path really honours turbo and guidance (a path that ignored them would still
    match itself, not the Runner; this pins that the three settings are not the same images)."""
    units = [(None, "en", PROMPTS[0])]
    plain = _pixels(BatchedRunnerSource(runner, None, 2, 1.0, False, 2).images_many(units, SEEDS))
    turbo = _pixels(BatchedRunnerSource(runner, None, None, None, True, 2).images_many(units, SEEDS))
    cfg = _pixels(BatchedRunnerSource(runner, None, 2, 4.0, False, 2).images_many(units, SEEDS))
    assert np.abs(plain[0] - turbo[0]).max() > 10 and np.abs(plain[0] - cfg[0]).max() > 10


def test_base_model_is_restored_after_a_turbo_batch(runner):
    units = [(None, "en", PROMPTS[1])]
    before = _pixels([RunnerSource(runner, None, 2, 1.0).images(*units[0], SEEDS[:1])])
    BatchedRunnerSource(runner, None, None, None, True, 4).images_many(units * 3, SEEDS)
    after = _pixels([RunnerSource(runner, None, 2, 1.0).images(*units[0], SEEDS[:1])])
    assert np.array_equal(before[0], after[0])


def test_batch_size_is_refused_for_other_models_and_out_of_range(runner, tmp_path):
    flux = ModelEntry(name="tiny-flux", kind="diffusers", family="flux", path=tmp_path, pipeline_class="FluxPipeline")
    other = Runner(ModelRegistry([flux]), EngineSettings(device="cpu"))
    with pytest.raises(InvalidRequest) as err:
        BatchedRunnerSource(other, None, None, None, batch_size=4)
    assert err.value.field == "batch_size" and "built-in" in err.value.message
    with pytest.raises(InvalidRequest) as err:
        evaluate(other, [object()], None, None, [0], ["en"], scorer=object(), batch_size=4)
    assert err.value.field == "batch_size"
    for bad in (0, 10_000):
        with pytest.raises(InvalidRequest) as err:
            BatchedRunnerSource(runner, None, None, None, batch_size=bad)
        assert err.value.field == "batch_size"


def test_decode_guard_judges_each_image_alone(runner, monkeypatch):
    """A black image in a batch is re-decoded alone (fp32 retry in bf16), as it would be in a batch
    of one; its neighbours keep their first decode. In fp32 there is no retry: the batch fails."""
    pipe, _ = runner.load(None)
    calls = []

    def decode(latents, dtype):  # image 1 is black in bf16; fp32 decodes are marked 0.5
        calls.append((latents.shape[0], dtype))
        out = torch.full((latents.shape[0], 3, 4, 4), 0.5 if dtype == torch.float32 else 0.25)
        if dtype == torch.bfloat16 and latents.shape[0] == 3:
            out[1] = -1.0
        if dtype == torch.bfloat16 and latents.shape[0] == 1:
            out[0] = -1.0
        return out

    monkeypatch.setattr(pipe, "_decode", decode)
    monkeypatch.setattr(pipe, "policy", PrecisionPolicy(torch.device("cpu"), torch.bfloat16))
    images = pipe._guarded_decode_each(torch.zeros(3, 4, 2, 2))
    assert calls == [(3, torch.bfloat16), (1, torch.bfloat16), (1, torch.float32)]
    assert images[:, 0, 0, 0].tolist() == [0.25, 0.5, 0.25]
    monkeypatch.setattr(pipe, "policy", PrecisionPolicy(torch.device("cpu"), torch.float32))
    monkeypatch.setattr(pipe, "_decode", lambda lat, dtype: torch.full((lat.shape[0], 3, 4, 4), -1.0))
    with pytest.raises(GenerationFailed) as err:
        pipe._guarded_decode_each(torch.zeros(3, 4, 2, 2))
    assert err.value.code == "bad_decode"


def test_cli_refuses_batch_size_where_nothing_is_generated(capsys):
    assert main(["eval", "--ground-truth", "--batch-size", "4"]) == 1
    assert "--batch-size" in capsys.readouterr().err
    assert main(["eval", "--ground-truth", "--batch-size", "0"]) == 1
    assert "batch-size" in capsys.readouterr().err


# -- end to end through `zaoxiang eval` (needs the packaged assets, as tests/test_eval_cli.py) ---------


@pytest.fixture(scope="module")
def pack_path(small_eval_pack):
    return small_eval_pack  # tests/fixtures_tiny.py: built once per session


def test_cli_report_is_the_same_with_batch_size_4(pack_path, weights, tmp_path):
    reports, images = {}, {}
    for b in (1, 4):
        out, saved = tmp_path / f"b{b}", tmp_path / f"img{b}"
        assert main(["eval", "--weights", str(weights), "--pack", str(pack_path), "--n-per-category", "1",
                     "--categories", "identity,position,count,background", "--steps", "2", "--guidance", "3",
                     "--seeds", "0,1", "--device", "cpu", "--out", str(out), "--save-images", str(saved),
                     "--quiet", "--batch-size", str(b)]) == 0
        reports[b] = json.loads((out / "report.json").read_text())
        images[b] = {p.name: np.asarray(Image.open(p)).astype(np.int16)
                     for p in sorted(saved.glob("*.png"))}
    verdicts = lambda r: [(i["index"], i["lang"], i["seed"], i["caption"], i["passed"]) for i in r["items"]]  # noqa: E731
    assert len(reports[1]["items"]) == 4 * 2 * 2
    assert verdicts(reports[4]) == verdicts(reports[1])
    assert reports[4]["categories"] == reports[1]["categories"]
    assert {k: v for k, v in reports[4].items() if k != "items"} == {k: v for k, v in reports[1].items() if k != "items"}
    assert images[1].keys() == images[4].keys() and len(images[1]) == 16
    assert max(np.abs(images[1][k] - images[4][k]).max() for k in images[1]) <= TOLERANCE


def test_cli_refuses_batch_size_for_a_diffusers_model(pack_path, tmp_path, capsys):
    folder = tmp_path / "tiny-flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert main(["eval", "--model", str(folder), "--pack", str(pack_path), "--n-per-category", "1",
                 "--device", "cpu", "--quiet", "--batch-size", "4"]) == 1
    err = capsys.readouterr().err
    assert "batch_size" in err and "built-in" in err


def test_sources_record_the_steps_and_guidance_the_engine_ran(runner):
    """A turbo evaluation asks for no steps/guidance; the report must say what ran (the adapter's
    recommended 2 steps at guidance 1 here), not None."""
    units = [(None, "en", PROMPTS[0])]
    for source in (RunnerSource(runner, None, None, None, True), BatchedRunnerSource(runner, None, None, None, True, 2)):
        assert source.resolved is None
        if isinstance(source, RunnerSource):
            source.images(None, "en", PROMPTS[0], SEEDS)
        else:
            source.images_many(units, SEEDS)
        assert source.resolved == (2, 1.0)
    explicit = RunnerSource(runner, None, 3, 2.5, False)
    explicit.images(None, "en", PROMPTS[0], SEEDS[:1])
    assert explicit.resolved == (3, 2.5)
