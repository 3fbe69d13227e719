"""The turbo stage on the tiny preset, CPU: the loss falls, the LoRA starts (and at scale 0 stays)
the base, resume continues exactly, and the exported file is what the engine's ``turbo`` runs."""

import json

import numpy as np
import pytest
import torch
from tests._stub_text import StubTextEncoder
from tests._tiny_builtin import RepeatBatch

from zaoxiang.engine.lora import TURBO_FILE, LoraLibrary, turbo_plan
from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.model.autoencoder import Autoencoder
from zaoxiang.model.config import preset
from zaoxiang.model.lora import load_lora, module_loras
from zaoxiang.model.mmdit import MMDiT
from zaoxiang.model.pipeline import BuiltinPipeline
from zaoxiang.model.serialization import save_weights
from zaoxiang.protocol import parse_request
from zaoxiang.settings import EngineSettings
from zaoxiang.training.distill import DistillConfig, lora_state, lora_targets, main, make_distiller, set_lora_scale
from zaoxiang.training.synthetic import SyntheticStream


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    cfg = preset("tiny")
    torch.manual_seed(0)
    dit, ae = MMDiT(cfg.transformer), Autoencoder(cfg.autoencoder)
    with torch.no_grad():  # non-zero gates: an untrained MMDiT predicts 0, which CFG leaves 0
        for p in dit.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    folder = tmp_path_factory.mktemp("base")
    save_weights(folder, cfg, dit.state_dict(), ae.state_dict())
    return folder


@pytest.fixture(scope="module")
def batch():
    return SyntheticStream(8, 64, seed=3).next_batch()


def _cfg(out, base, steps, **kw):
    fields = dict(out=out, base=base, steps=steps, batch_size=8, rank=4, lr=3e-3, warmup=2, teacher_substeps=4,
                  log_every=1, ckpt_every=0, sample_every=0, progress=False, grid_teacher_steps=4)
    fields.update(kw)
    return DistillConfig(**fields)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_dir, batch):
    out = tmp_path_factory.mktemp("turbo")
    d = make_distiller(_cfg(out, base_dir, 30, sample_every=30), StubTextEncoder(), RepeatBatch(batch))
    before = d.eval_loss(batch)
    records = d.train()
    return d, before, records


def test_student_starts_as_the_base_and_lora_covers_the_blocks(base_dir, tmp_path, batch):
    d = make_distiller(_cfg(tmp_path, base_dir, 0), StubTextEncoder(), RepeatBatch(batch))
    wrapped = sorted(p for p, m in d.model.named_modules() if hasattr(m, "lora_A"))
    assert wrapped == lora_targets(d.teacher) and "dual.0.img.qkv" in wrapped and "single.0.linear2" in wrapped
    trainable = [n for n, p in d.model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    x = torch.randn(2, 4, 8, 8)
    text, mask = d._encode_text(["a red apple", "一只红苹果"])
    t = torch.tensor([0.9, 0.3])
    with torch.no_grad():
        assert torch.equal(d.model(x, t, text, mask), d.teacher(x, t, text, mask))  # LoRA B starts at 0


def test_loss_falls_metrics_and_grid(trained, batch):
    d, before, records = trained
    assert d.eval_loss(batch) < 0.7 * before
    losses = [r["loss"] for r in records]
    assert sum(losses[-5:]) < sum(losses[:5])
    lines = [json.loads(x) for x in (d.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["stage"] == "turbo" and lines[-1]["step"] == 30 and {"loss", "lr", "samples_per_s"} <= set(lines[-1])
    from PIL import Image

    grid = Image.open(d.run_dir / "samples" / "step-0000030.png")
    assert grid.size == (64 * 8, 64 * 3)  # 8 prompts × (student, base at 4 steps, teacher)


def test_lora_at_scale_zero_is_the_base(trained):
    d, _, _ = trained
    x = torch.randn(2, 4, 8, 8)
    text, mask = d._encode_text(["a red apple", "一只红苹果"])
    t = torch.tensor([1.0, 0.5])
    with torch.no_grad():
        base = d.teacher(x, t, text, mask)
        assert not torch.allclose(d.model(x, t, text, mask), base, atol=1e-4)  # training moved it
        set_lora_scale(d.model, 0.0)
        try:
            assert torch.equal(d.model(x, t, text, mask), base)
        finally:
            set_lora_scale(d.model, 1.0)


def test_teacher_target_is_the_cfg_ode(base_dir, tmp_path, batch):
    """One sub-step of the teacher solve is x + dt · CFG velocity (guidance from the base's config)."""
    d = make_distiller(_cfg(tmp_path, base_dir, 0, teacher_substeps=1), StubTextEncoder(), RepeatBatch(batch))
    assert d.guidance == preset("tiny").sampler.guidance
    x = torch.randn(2, 4, 8, 8)
    text, mask = d._encode_text(["a", "b"])
    neg, neg_mask = d._encode_text(["", ""])
    times = d.segment_times(torch.tensor([0, 3]))  # (2, 2)
    assert torch.allclose(times[:, 0], torch.tensor([1.0, 0.25])) and torch.allclose(times[:, 1], torch.tensor([0.75, 0.0]))
    with torch.no_grad():
        vc, vu = d.teacher(x, times[:, 0], text, mask), d.teacher(x, times[:, 0], neg, neg_mask)
    expect = x + (times[:, 1] - times[:, 0]).view(2, 1, 1, 1) * (vu + d.guidance * (vc - vu))
    assert torch.allclose(d.teacher_solve(x, times, text, mask, neg, neg_mask), expect, atol=1e-5)


def test_resume_continues_exactly(base_dir, tmp_path):
    def make(out, steps):
        return make_distiller(_cfg(out, base_dir, steps, batch_size=4), StubTextEncoder(), SyntheticStream(4, 64, seed=5))

    straight = make(tmp_path / "a", 6)
    straight.train()
    first = make(tmp_path / "b", 3)
    first.train()
    second = make(tmp_path / "b", 6)
    assert second.resume() and second.step == 3
    for _ in range(3):  # the batches the straight run saw at steps 1-3
        next(second.stream)
    second.train()
    a, b = straight.ema.module.state_dict(), second.ema.module.state_dict()
    for k in (k for k in a if ".lora_" in k):
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert any(not torch.equal(v, first.model.state_dict()[k]) for k, v in second.model.state_dict().items() if ".lora_" in k)


def test_resume_refuses_another_rank(trained, base_dir, batch):
    d, _, _ = trained
    other = make_distiller(_cfg(d.run_dir, base_dir, 31, rank=8), StubTextEncoder(), RepeatBatch(batch))
    with pytest.raises(ValueError, match="rank"):
        other.resume()


def test_export_command_and_wrong_checkpoint(trained, tmp_path):
    d, _, _ = trained
    assert main([str(d.run_dir), str(tmp_path / "x.safetensors")]) == 0
    assert load_lora(tmp_path / "x.safetensors").metadata["recommended_steps"] == "4"
    from zaoxiang.training.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "dit", {"stage": "dit", "step": 1})
    with pytest.raises(ValueError, match="'dit' checkpoint"):
        main([str(tmp_path / "dit"), str(tmp_path)])


def test_init_from_an_exported_lora_starts_where_it_ended(trained, base_dir, batch, tmp_path):
    d, _, _ = trained
    path = d.export(tmp_path / "prev")  # a folder: turbo_lora.safetensors inside
    fresh = make_distiller(_cfg(tmp_path / "next", base_dir, 10), StubTextEncoder(), RepeatBatch(batch))
    fresh.init_from_lora(path.parent)
    want = {k: v.to(torch.bfloat16).float() for k, v in lora_state(d.ema.module).items()}
    for model in (fresh.model, fresh.ema.module):
        got = lora_state(model)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert any(v.abs().sum() > 0 for k, v in want.items() if ".lora_B." in k)  # not the B = 0 start
    assert fresh.step == 0  # a new run: schedule and optimizer start over


def test_init_from_lora_refuses_what_does_not_fit(trained, base_dir, batch, tmp_path):
    d, _, _ = trained
    path = d.export(tmp_path / "prev")
    other = make_distiller(_cfg(tmp_path / "r8", base_dir, 10, rank=8), StubTextEncoder(), RepeatBatch(batch))
    with pytest.raises(ValueError, match="rank-4"):
        other.init_from_lora(path)
    two = make_distiller(_cfg(tmp_path / "s2", base_dir, 10, student_steps=2), StubTextEncoder(), RepeatBatch(batch))
    with pytest.raises(ValueError, match="distilled for 4 steps"):
        two.init_from_lora(path)
    with pytest.raises(FileNotFoundError):
        other.init_from_lora(tmp_path / "nowhere")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a zaoxiang-lora file"):
        other.init_from_lora(tmp_path / "plain.safetensors")


def test_cli_turbo_init_from_a_lora(trained, base_dir, tmp_path, capsys):
    from zaoxiang.cli.train import main as train_main

    d, _, _ = trained
    path = d.export(tmp_path / "prev")
    args = ["--preset", "tiny", "--stage", "turbo", "--steps", "1", "--out", str(tmp_path / "run"), "--pack",
            "synthetic", "--base", str(base_dir), "--rank", "8", "--init-from", str(path), "--no-progress",
            "--device", "cpu"]
    with pytest.raises(SystemExit, match="--init-from: .*rank-4"):
        train_main(args)


def test_export_runs_as_the_engines_turbo(trained, base_dir):
    d, _, _ = trained
    path = d.export(base_dir)
    assert path == base_dir / TURBO_FILE
    try:
        plan = turbo_plan(base_dir, "builtin")
        assert (plan.steps, plan.guidance, plan.scale) == (4, 1.0, 1.0)
        weights = load_lora(path)
        assert weights.metadata["rank"] == "4" and weights.metadata["base_revision"]
        layers = module_loras(weights, MMDiT(preset("tiny").transformer))
        assert sorted(layers) == lora_targets(d.teacher)
        ema = d.ema.module.get_submodule("single.0.linear1")
        assert torch.allclose(layers["single.0.linear1"].up.float(), ema.lora_B["default"].weight, atol=2e-2)

        def loader(entry, policy, settings):
            return BuiltinPipeline.from_folder(entry.path, policy, text_encoder=StubTextEncoder(), name=entry.name)

        registry = ModelRegistry.discover(include_builtin=True, builtin_dir=base_dir)
        runner = Runner(registry, EngineSettings(device="cpu"), loader=loader, loras=LoraLibrary(None))
        req = runner.resolve(parse_request({"prompt": "a red circle on the left", "turbo": True, "seed": 3}))
        assert req.steps == 4 and req.guidance == 1.0 and [x.name for x in req.loras] == ["turbo"]

        def image(**kw):
            fields = {"prompt": "a red circle on the left", "seed": 3, **kw}
            return np.asarray(runner.run(parse_request(fields)).images[0]).astype(np.int16)

        turbo = image(turbo=True)
        assert turbo.shape == (64, 64, 3)
        assert not np.array_equal(turbo, image(steps=4, guidance=1.0))  # the LoRA changes the 4-step image
        assert np.array_equal(image(steps=4, guidance=1.0, loras=[{"name": "turbo", "scale": 0.0}]),
                              image(steps=4, guidance=1.0))  # at scale 0: the base
    finally:
        path.unlink()


class CountingTextEncoder(StubTextEncoder):
    """The stub encoder, recording every ``encode`` call's texts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str], max_length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(list(texts))
        return super().encode(texts, max_length)


def test_empty_caption_is_encoded_once_and_gives_the_same_loss(base_dir, tmp_path, batch, monkeypatch):
    enc = CountingTextEncoder()
    d = make_distiller(_cfg(tmp_path, base_dir, 3, batch_size=4, sample_every=3), enc, SyntheticStream(4, 64, seed=5))
    neg, neg_mask = d._empty_text(8)
    old, old_mask = d._encode_text([""] * 8)  # what every step encoded before
    assert neg.shape == old.shape and torch.equal(neg, old) and torch.equal(neg_mask, old_mask)

    cached = d.eval_loss(batch)
    with monkeypatch.context() as m:
        m.setattr(d, "_empty_text", lambda n: d._encode_text([""] * n))
        assert d.eval_loss(batch) == cached  # bit-identical to encoding [""] * b
        m.setattr(d, "_empty_text", lambda n: d._encode_text(["x"] * n))
        assert d.eval_loss(batch) != cached  # the loss does read the unconditional states

    enc.calls.clear()
    d.train()  # 3 steps and a sample grid (3 rows, two of them with CFG)
    assert [texts for texts in enc.calls if "" in texts] == []  # the cache from above served all of them
    assert sum(1 for texts in enc.calls if len(texts) == 4) == 3  # one caption batch per step
    fresh = CountingTextEncoder()
    d2 = make_distiller(_cfg(tmp_path / "b", base_dir, 3, batch_size=4, sample_every=3), fresh,
                        SyntheticStream(4, 64, seed=5))
    d2.train()
    assert [texts for texts in fresh.calls if "" in texts] == [[""]]  # encoded once, on first use, for 1 row
