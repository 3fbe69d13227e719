"""CI trains the tiny preset a few steps on CPU: losses must fall, resume must continue exactly."""

import json

import pytest
import torch
from tests._stub_text import StubTextEncoder
from tests._tiny_builtin import RepeatBatch, perturb_

from zaoxiang.model.config import preset
from zaoxiang.model.serialization import load_weights
from zaoxiang.training.checkpoint import export_checkpoint, load_checkpoint
from zaoxiang.training.synthetic import SyntheticStream
from zaoxiang.training.trainer import TrainConfig, Trainer, load_autoencoder


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/fixtures_tiny.py


def _cfg(stage, out, steps, **kw):
    base = dict(stage=stage, out=out, steps=steps, batch_size=8, lr=2e-3, warmup=2, log_every=1,
                ckpt_every=0, sample_every=0, progress=False, stats_batches=2, grid_steps=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def batch():
    return SyntheticStream(8, 64, seed=3).next_batch()


@pytest.fixture(scope="module")
def trained_ae(tmp_path_factory, batch):
    out = tmp_path_factory.mktemp("ae")
    tr = Trainer(_cfg("ae", out, 40), preset("tiny"), RepeatBatch(batch))
    before = tr.eval_loss(batch)
    records = tr.train()
    return out, before, tr.eval_loss(batch), records


def test_ae_loss_falls_and_latent_stats_are_measured(trained_ae):
    out, before, after, records = trained_ae
    losses = [r["loss"] for r in records]
    assert after < 0.7 * before
    assert sum(losses[-5:]) < sum(losses[:5])
    ae = load_autoencoder(out, preset("tiny"))
    assert not torch.allclose(ae.latent_std, torch.ones_like(ae.latent_std))  # stats were set
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 40 and {"loss", "lr", "samples_per_s"} <= set(lines[-1])


def test_dit_loss_falls_grid_and_export(trained_ae, batch, tmp_path):
    ae = load_autoencoder(trained_ae[0], preset("tiny"))
    cfg = _cfg("dit", tmp_path, 40, sample_every=40)
    tr = Trainer(cfg, preset("tiny"), RepeatBatch(batch), text_encoder=StubTextEncoder(), autoencoder=ae)
    before = tr.eval_loss(batch)
    records = tr.train()
    losses = [r["loss"] for r in records]
    assert tr.eval_loss(batch) < 0.8 * before
    assert sum(losses[-5:]) < sum(losses[:5])
    assert (tmp_path / "samples" / "step-0000040.png").is_file()

    files = export_checkpoint(tmp_path, tmp_path / "weights")
    assert all(f.stat().st_size <= 15 * 2**20 for f in files)
    config, t_sd, a_sd = load_weights(tmp_path / "weights")
    assert config == preset("tiny")
    assert t_sd["final.weight"].dtype == torch.bfloat16 and a_sd["latent_std"].dtype == torch.float32
    ema = load_checkpoint(tmp_path)["ema"]["module"]
    assert torch.allclose(t_sd["final.weight"].float(), ema["final.weight"], atol=1e-2)


def test_resume_continues_exactly(trained_ae, tmp_path):
    ae = load_autoencoder(trained_ae[0], preset("tiny"))

    def make(out, steps):
        stream = SyntheticStream(4, 64, seed=5)
        return Trainer(_cfg("dit", out, steps, batch_size=4), preset("tiny"), stream,
                       text_encoder=StubTextEncoder(), autoencoder=ae)

    straight = make(tmp_path / "a", 6)
    straight.train()
    first = make(tmp_path / "b", 3)
    first.train()
    second = make(tmp_path / "b", 6)
    assert second.resume() and second.step == 3
    # The resumed trainer must see the batches the straight run saw at steps 4-6.
    for _ in range(3):
        next(second.stream)
    second.train()
    for k, v in straight.model.state_dict().items():
        assert torch.allclose(v, second.model.state_dict()[k], atol=1e-6), k


def test_resume_refuses_another_stage(trained_ae, tmp_path):
    tr = Trainer(_cfg("dit", trained_ae[0], 1), preset("tiny"), RepeatBatch(None), text_encoder=StubTextEncoder(),
                 autoencoder=load_autoencoder(trained_ae[0], preset("tiny")))
    with pytest.raises(ValueError, match="'ae' checkpoint"):
        tr.resume()


def test_a_stop_file_ends_the_run_early_with_a_checkpoint_and_latent_stats(tmp_path, batch):
    """The STOP file in the run directory ends training at the next log step; the ae end still
    measures latent statistics, and the file is consumed so a --resume trains on."""
    from zaoxiang.training.loop import STOP_FILE

    class StopAfter(RepeatBatch):
        def __iter__(self):
            for i, b in enumerate(super().__iter__()):
                if i == 3:
                    (tmp_path / STOP_FILE).touch()
                yield b

    tr = Trainer(_cfg("ae", tmp_path, 50, log_every=2), preset("tiny"), StopAfter(batch))
    records = tr.train()
    assert tr.step == 4 and records[-1]["step"] == 4  # stopped at the first log step after the file appeared
    assert not (tmp_path / STOP_FILE).exists()
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == 4
    assert ckpt["ema"]["module"]["latent_std"].ne(1).any()


class _ScriptedStage:
    """A stage whose losses are given in advance, to check what the loop makes of them."""

    def __init__(self, losses):
        self.losses = list(losses)
        self.step = 0
        self.stream = iter(lambda: None, 1)  # endless Nones
        self.device = torch.device("cpu")
        self.saved_at: list[int] = []

        class _Sched:
            def get_last_lr(self):
                return [1e-3]

        self.scheduler = _Sched()

    def train_step(self, batch):
        loss = torch.tensor(self.losses[self.step])
        self.step += 1
        return loss

    def save(self):
        self.saved_at.append(self.step)


def test_the_loop_logs_each_windows_mean_loss(tmp_path):
    from zaoxiang.training.loop import LoopConfig, run_loop

    stage = _ScriptedStage([1.0, 3.0, 2.0, 4.0, 10.0, 20.0])
    records = run_loop(stage, LoopConfig("dit", tmp_path, 6, 4, log_every=2, sample_every=0, ckpt_every=0,
                                         progress=False), on_grid=lambda b: None)  # fmt: skip
    assert [r["step"] for r in records] == [2, 4, 6]
    assert [r["loss"] for r in records] == pytest.approx([2.0, 3.0, 15.0])


def test_a_non_finite_loss_stops_the_loop_before_a_checkpoint_keeps_it(tmp_path):
    from zaoxiang.training.loop import LoopConfig, run_loop

    # NaN at step 3, between log steps (log every 4), with a checkpoint due at step 3: the loop
    # must look at the loss before saving, not only at log steps.
    stage = _ScriptedStage([1.0, 1.0, float("nan"), 1.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(FloatingPointError, match="step 3"):
        run_loop(stage, LoopConfig("dit", tmp_path, 8, 4, log_every=4, sample_every=0, ckpt_every=3,
                                   progress=False), on_grid=lambda b: None)  # fmt: skip
    assert stage.saved_at == []


def test_caption_dropout_gives_dropped_captions_the_empty_captions_states(trained_ae, batch, tmp_path):
    ae_dir, *_ = trained_ae
    ae = load_autoencoder(ae_dir, preset("tiny"))
    images = batch.images
    other = ["a completely different caption"] * len(batch.captions)

    def loss(dropout_p, captions, dropout=True):
        tr = Trainer(_cfg("dit", tmp_path / f"d{dropout_p}", 1, caption_dropout=dropout_p), preset("tiny"),
                     RepeatBatch(batch), text_encoder=StubTextEncoder(), autoencoder=ae)  # fmt: skip
        torch.manual_seed(5)
        perturb_(tr.model)  # a fresh model's zero-initialised gates would ignore the text
        gen = torch.Generator().manual_seed(7)
        return float(tr.dit_loss(images, captions, gen, model=tr.model, dropout=dropout).detach())

    # Every caption dropped (p = 0.9999, fixed seed): what the captions said cannot matter ...
    assert loss(0.9999, batch.captions) == pytest.approx(loss(0.9999, other), abs=1e-6)
    # ... and none dropped: it does (the same draws from the generator either way).
    assert loss(0.0, batch.captions) != pytest.approx(loss(0.0, other), abs=1e-6)


def test_latents_are_the_autoencoders_posterior_means(trained_ae, batch, tmp_path):
    """The trainer's latents (channels-last, compiled on CUDA) are encode_latents' means."""
    ae = load_autoencoder(trained_ae[0], preset("tiny"))
    ref = ae.encode_latents(batch.images[:4], sample=False)  # (4, C, h, w)
    tr = Trainer(_cfg("dit", tmp_path, 1), preset("tiny"), RepeatBatch(batch), text_encoder=StubTextEncoder(),
                 autoencoder=load_autoencoder(trained_ae[0], preset("tiny")))
    got = tr.latents(batch.images[:4])
    assert got.is_contiguous() and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_init_from_weights_widens_to_input_word_rows(trained_ae, batch, tmp_path):
    """Weights trained on hidden states only start a run that also reads the word rows, as exactly
    the same model; the other way round, or another architecture, is refused."""
    from dataclasses import replace

    ae = load_autoencoder(trained_ae[0], preset("tiny"))
    narrow = Trainer(_cfg("dit", tmp_path / "narrow", 3), preset("tiny"), RepeatBatch(batch),
                     text_encoder=StubTextEncoder(), autoencoder=ae)
    narrow.train()
    export_checkpoint(tmp_path / "narrow", tmp_path / "weights")
    tiny = preset("tiny")
    wide_cfg = replace(tiny, transformer=replace(tiny.transformer, text_embed_dim=384))
    with pytest.raises(ValueError, match="reads 768"):  # the encoder must give the wider features
        Trainer(_cfg("dit", tmp_path / "x", 1), wide_cfg, RepeatBatch(batch), text_encoder=StubTextEncoder(),
                autoencoder=ae)
    wide = Trainer(_cfg("dit", tmp_path / "wide", 1), wide_cfg, RepeatBatch(batch),
                   text_encoder=StubTextEncoder(features="last+embed"), autoencoder=ae)
    wide.init_from_weights(tmp_path / "weights")
    _, t_sd, _ = load_weights(tmp_path / "weights")
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    text, mask = StubTextEncoder().encode(["a cat", "两只狗"], max_length=16)
    wide_text, _ = StubTextEncoder(features="last+embed").encode(["a cat", "两只狗"], max_length=16)
    from zaoxiang.model.mmdit import MMDiT

    ref_model = MMDiT(tiny.transformer)
    ref_model.load_state_dict({k: v.float() for k, v in t_sd.items()})
    with torch.no_grad():
        torch.testing.assert_close(wide.ema.module(x, t, wide_text, mask), ref_model(x, t, text, mask))
    assert wide.model.txt_embed_in[1].weight.abs().sum() == 0
    # one step trains the new projection
    wide.train_step(batch)
    assert wide.model.txt_embed_in[1].weight.abs().sum() > 0
    # narrowing (weights with word rows into a run without) is refused
    wide.save()
    export_checkpoint(tmp_path / "wide", tmp_path / "wide-weights")
    narrow2 = Trainer(_cfg("dit", tmp_path / "n2", 1), tiny, RepeatBatch(batch), text_encoder=StubTextEncoder(),
                      autoencoder=ae)
    with pytest.raises(ValueError, match="differs"):
        narrow2.init_from_weights(tmp_path / "wide-weights")


def test_lr_factor_warms_up_holds_then_decays_to_zero():
    from zaoxiang.training.trainer import lr_factor

    factors = [lr_factor(s, warmup=2, steps=10, cooldown=4) for s in range(11)]
    assert factors[:2] == [0.5, 1.0] and factors[2:6] == [1.0] * 4
    assert factors[6:] == [1.0, 0.75, 0.5, 0.25, 0.0]  # linear over the last 4 of 10 steps
    assert [lr_factor(s, warmup=2, steps=10, cooldown=0) for s in range(11)][2:] == [1.0] * 9


def test_cooldown_ends_a_run_at_a_small_rate_and_a_resume_follows_it(tmp_path, batch):
    tr = Trainer(_cfg("ae", tmp_path / "a", 8, cooldown=4, stats_batches=1), preset("tiny"), RepeatBatch(batch))
    tr.train()
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert max(lrs) == pytest.approx(2e-3)
    assert lrs[-4:] == sorted(lrs[-4:], reverse=True) and lrs[-1] <= 2e-3 / 4 + 1e-12  # decayed, not constant
    assert tr.optimizer.param_groups[0]["lr"] == 0.0

    # A run stopped early and resumed with a cooldown set takes up the new schedule at its step.
    Trainer(_cfg("ae", tmp_path / "b", 5, stats_batches=1), preset("tiny"), RepeatBatch(batch)).train()
    resumed = Trainer(_cfg("ae", tmp_path / "b", 8, cooldown=4, stats_batches=1), preset("tiny"), RepeatBatch(batch))
    assert resumed.resume() and resumed.step == 5
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * 3 / 4)  # lr_factor(5, 2, 8, 4)


@pytest.mark.parametrize("cooldown", [-1, 9])
def test_a_cooldown_outside_the_run_is_refused_by_name(tmp_path, cooldown):
    with pytest.raises(ValueError, match=r"cooldown must be between 0 and steps \(8\)"):
        _cfg("ae", tmp_path, 8, cooldown=cooldown)


@pytest.mark.parametrize("stage", ["ae", "turbo"])
def test_the_cli_refuses_a_cooldown_longer_than_the_run_without_a_traceback(tmp_path, stage):
    from zaoxiang.cli.train import main

    argv = ["--preset", "tiny", "--stage", stage, "--steps", "3", "--cooldown", "5", "--pack", "synthetic",
            "--out", str(tmp_path), "--device", "cpu", "--base", str(tmp_path / "unused")]
    with pytest.raises(SystemExit, match=r"^zaoxiang train: cooldown must be between 0 and steps \(3\), got 5$"):
        main(argv)
