"""A fake pipeline for engine/service tests that need no model: solid colours from the seed."""

from __future__ import annotations

import torch
from PIL import Image

from zaoxiang.engine.pipelines.base import LoadedPipeline, ModelDefaults, RunContext
from zaoxiang.engine.precision import guarded_decode
from zaoxiang.engine.registry import ModelEntry
from zaoxiang.protocol import ModelIdentity


class ColourPipeline(LoadedPipeline):
    """Latents are one RGB value per image drawn from the seed; each step nudges them."""

    def __init__(self, entry: ModelEntry, nan_at_step: int | None = None, decode_fn=None):
        self.identity = ModelIdentity(entry.name, entry.family, "fake", str(entry.path))
        self.defaults = ModelDefaults(width=64, height=64, steps=3, guidance=1.0)
        self.nan_at_step = nan_at_step
        self.decode_fn = decode_fn
        self.loads = 1
        self.unloaded = False

    def generate(self, ctx: RunContext):
        r = ctx.request
        with ctx.timer.phase("text_encode"):
            bias = (len(r.prompt) % 7) / 10.0
        with ctx.timer.phase("denoise"):
            lat = torch.stack([torch.rand(3, generator=torch.Generator().manual_seed(s)) for s in ctx.seeds])
            for i in range(r.steps):
                lat = lat * 0.9 + bias * 0.1
                if self.nan_at_step == i + 1:
                    lat = lat * float("nan")
                ctx.step(i + 1, r.steps, lat)
        with ctx.timer.phase("decode"):
            decode = self.decode_fn or (lambda z, dtype: (z.to(dtype) * 2 - 1)[:, :, None, None].expand(-1, -1, r.height, r.width))
            imgs = guarded_decode(decode, lat, ctx.precision)
        out = []
        for img in imgs:
            arr = ((img.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
            out.append(Image.fromarray(arr, "RGB"))
        return out

    def unload(self) -> None:
        self.unloaded = True


def fake_entry(name: str = "fake", tmp=None) -> ModelEntry:
    from pathlib import Path

    return ModelEntry(name=name, kind="diffusers", family="flux", path=Path(tmp or "/nonexistent"), pipeline_class="FluxPipeline")
