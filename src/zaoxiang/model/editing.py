"""img2img, inpaint and outpaint for the built-in model: training-free latent blending.

The built-in model has no inpainting channels, so an edit reuses the text-to-image sampler
(:mod:`zaoxiang.engine.editing` documents the method): encode the canvas with our autoencoder
(the posterior mean: no sampling noise), noise it to the first time of the strength-cut schedule,
run the Euler steps, and after every step put the original latents, noised to the next time,
back outside the mask (:class:`~zaoxiang.engine.editing.LatentBlend`, called from the per-step
hook). The decoded image is then composited over the canvas, so unmasked pixels come back exact.

Reads top to bottom like ``BuiltinPipeline.generate``: plan → encode text → encode canvas →
noise per seed → denoise with blending → guarded decode → composite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from PIL import Image

from zaoxiang.engine.editing import LatentBlend, cut_schedule, mask_to_latent, pil_to_tensor, plan_edit
from zaoxiang.engine.pipelines.base import RunContext
from zaoxiang.engine.precision import guarded_decode
from zaoxiang.engine.prompt_weighting import weight_token_states
from zaoxiang.model.sampler import FlowEulerSampler, apply_guidance, pad_text

if TYPE_CHECKING:
    from zaoxiang.model.pipeline import BuiltinPipeline

EDIT_MODES = frozenset({"img2img", "inpaint", "outpaint"})


def encode_text(pipe: "BuiltinPipeline", texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt states with A1111 weights applied (exactly ``encode`` for prompts without the syntax)."""
    return weight_token_states(texts, pipe.text_encoder, max_length=pipe.config.transformer.max_text_tokens)


@torch.no_grad()
def generate_edit(pipe: "BuiltinPipeline", ctx: RunContext) -> list[Image.Image]:
    req = ctx.request
    n = len(ctx.seeds)
    device, dtype = pipe.policy.device, pipe.policy.dtype

    # 1. Plan in pixel space: canvas, repaint mask, composite alpha.
    plan = plan_edit(req, ctx.inputs)
    if plan.strength == 0.0:
        return plan.unchanged(n)  # no step to run: the input, exactly

    # 2. Text (and the negative prompt when CFG is on).
    guidance = float(req.guidance)
    with ctx.timer.phase("text_encode"):
        text, mask = encode_text(pipe, [req.prompt] * n)  # (n, T, Dt), (n, T)
        neg = neg_mask = None
        if guidance != 1.0:
            neg, neg_mask = encode_text(pipe, [req.negative_prompt] * n)
    text, mask = text.to(device, dtype), mask.to(device)
    use_cfg = neg is not None
    if use_cfg:
        length = max(text.shape[1], neg.shape[1])
        text, mask = pad_text(text, mask, length)
        neg, neg_mask = pad_text(neg.to(device, dtype), neg_mask.to(device), length)
        text, mask = torch.cat([text, neg]), torch.cat([mask, neg_mask])  # (2n, T, Dt)

    with ctx.timer.phase("denoise"):
        # 3. Clean latents of the canvas (posterior mean), and the strength-cut schedule.
        pixels = pil_to_tensor(plan.canvas).to(device, dtype)  # (1, 3, H, W)
        clean = pipe.autoencoder.encode_latents(pixels, sample=False).float().expand(n, -1, -1, -1)  # (n, C, h, w)
        shift = req.sampler.shift if req.sampler.shift is not None else pipe.config.sampler.shift
        sampler = FlowEulerSampler(shift=shift)
        sampler.set_timesteps(int(req.steps), device=device)
        sampler.timesteps = cut_schedule(sampler.timesteps, plan.strength)  # (S' + 1,)
        steps = sampler.num_steps
        # 4. Noise per seed on the CPU (as text-to-image), then the blend.
        noise = torch.stack([
            torch.randn(clean.shape[1:], generator=torch.Generator().manual_seed(s)) for s in ctx.seeds
        ]).to(device)  # (n, C, h, w) fp32
        latent_mask = None
        if plan.repaint is not None:
            latent_mask = mask_to_latent(plan.repaint, (clean.shape[-1], clean.shape[-2])).to(device)  # (1, 1, h, w)
        blend = LatentBlend(clean=clean, noise=noise, sigmas=sampler.timesteps, mask=latent_mask)
        x = blend.start()
        # 5. Euler steps; the blend runs in the per-step hook, before progress is reported.
        for i in range(steps):
            t = sampler.timesteps[i]
            x_in = torch.cat([x, x]) if use_cfg else x
            v = pipe.transformer(x_in, t.expand(x_in.shape[0]), text, mask).float()  # as sampler.denoise calls it
            if use_cfg:
                v = apply_guidance(v[:n], v[n:], guidance)
            x = blend.after_step(i, sampler.step(v, i, x))
            ctx.step(i + 1, steps, x)

    # 6. Decode with the NaN/black guard, composite over the canvas.
    with ctx.timer.phase("decode"):
        images = guarded_decode(pipe._decode, x, pipe.policy)  # (n, 3, H, W) in [-1, 1]
    from zaoxiang.model.pipeline import to_pil

    return [plan.finish(im) for im in to_pil(images)]
