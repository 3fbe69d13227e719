"""img2img, inpaint and outpaint for any flow-matching pipeline: the parts every family shares.

An edit runs in three pieces:

1. **plan** (:func:`plan_edit`, pixel space): the canvas (the input, or the input padded with its
   edge pixels for outpaint), the mask the denoiser repaints (the user's mask, or the new border
   plus a seam band reaching ``2 * mask_blur`` pixels into the original, dilated by the blur
   radius so the feathered zone is repainted too) and the composite alpha (the hard mask
   feathered outwards by a Gaussian of radius ``mask_blur``).
2. **denoise**: per family, either diffusers' dedicated img2img/inpaint pipeline built from the
   loaded components (``from_pipe``, no reload; see ``families.py``) or the training-free latent
   blending below (:class:`LatentBlend`), which the built-in model uses: encode the canvas, noise
   it to the start sigma, and after every step put the original latents, noised to the step's
   sigma, back outside the mask.
3. **finish** (:meth:`EditPlan.finish`): composite the decoded image over the canvas with the
   alpha. Where the alpha is 0 the output *is* the input, byte for byte — stronger than the
   autoencoder's round-trip tolerance, which with latent blending alone would be the bound.

img2img at strength 0 runs no step and returns the input image exactly (not a VAE round trip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from zaoxiang.engine.edit_inputs import Get, load_stored
from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import EditSpec, GenerationRequest


@dataclass(frozen=True)
class EditPlan:
    mode: str
    strength: float
    canvas: Image.Image  # RGB, the output size: what the denoiser starts from
    repaint: Image.Image | None  # L, 255 = denoiser repaints (inpaint/outpaint)
    alpha: Image.Image | None  # L, composite weight of the generated image (0 = keep the canvas)

    @property
    def size(self) -> tuple[int, int]:
        return self.canvas.size

    def unchanged(self, n: int) -> list[Image.Image]:
        """The result of a zero-strength edit: the canvas itself, n times."""
        return [self.canvas.copy() for _ in range(n)]

    def finish(self, generated: Image.Image) -> Image.Image:
        """The generated image composited over the canvas (img2img: returned as is)."""
        if self.alpha is None:
            return generated
        return composite(self.canvas, generated.convert("RGB"), self.alpha)


def steps_run(steps: int, strength: float) -> int:
    """Denoising steps an edit of ``strength`` runs: the tail of the full schedule, as diffusers'
    flow-matching img2img pipelines slice it (``get_timesteps``)."""
    init = min(steps * strength, steps)
    return steps - int(max(steps - init, 0))


def check_edit(request: GenerationRequest) -> None:
    """Request-level rules for an edit (sizes are checked again against the stored inputs)."""
    spec = request.edit
    if spec is None:
        return
    if request.width is None or request.height is None:
        raise InvalidRequest("an edit request carries its output size (width, height)", field="edit")
    strength = spec.effective_strength
    if strength > 0 and request.steps is not None and steps_run(int(request.steps), strength) < 1:
        raise InvalidRequest(
            f"strength {strength} with {request.steps} steps runs no denoising step; raise steps or strength "
            "(or use strength 0 to get the input back)",
            field="edit.strength",
        )


def plan_edit(request: GenerationRequest, get: Get | None) -> EditPlan:
    """Load the stored inputs and build the canvas and masks (pixel space)."""
    spec = request.edit
    assert spec is not None
    image = load_stored(get, spec.image, "edit.image", "RGB")
    mask = load_stored(get, spec.mask, "edit.mask", "L") if spec.mask is not None else None
    if spec.mode == "outpaint":
        canvas, hard = pad_canvas(image, spec)
    else:
        canvas, hard = image, (binarise(mask) if mask is not None else None)
    if canvas.size != (request.width, request.height):
        raise InvalidRequest(
            f"the edit's canvas is {canvas.size[0]}x{canvas.size[1]} but the request asks for "
            f"{request.width}x{request.height}",
            field="edit.image",
        )
    if hard is not None and hard.size != canvas.size:
        raise InvalidRequest("mask and image are different sizes", field="edit.mask")
    if hard is None:
        return EditPlan(spec.mode, spec.effective_strength, canvas, None, None)
    blur = spec.mask_blur
    return EditPlan(spec.mode, spec.effective_strength, canvas, dilate(hard, 3 * blur), feather(hard, blur))


def binarise(mask: Image.Image) -> Image.Image:
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0)


def pad_canvas(image: Image.Image, spec: EditSpec) -> tuple[Image.Image, Image.Image]:
    """The outpaint canvas (edge pixels replicated outwards, a neutral start for strength < 1) and
    the hard mask: the new border plus a seam band ``2 * mask_blur`` pixels into the original."""
    pads = spec.outpaint
    assert pads is not None
    arr = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    padded = np.pad(arr, ((pads.top, pads.bottom), (pads.left, pads.right), (0, 0)), mode="edge")
    h, w = padded.shape[:2]
    hard = np.full((h, w), 255, dtype=np.uint8)  # (H', W')
    seam = 2 * spec.mask_blur
    keep = (
        slice(pads.top + (seam if pads.top else 0), pads.top + arr.shape[0] - (seam if pads.bottom else 0)),
        slice(pads.left + (seam if pads.left else 0), pads.left + arr.shape[1] - (seam if pads.right else 0)),
    )
    hard[keep] = 0
    return Image.fromarray(padded), Image.fromarray(hard, mode="L")


def dilate(mask: Image.Image, radius: int) -> Image.Image:
    """Grow the white area by ``radius`` pixels (square structuring element)."""
    if radius <= 0:
        return mask
    t = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]  # (1, 1, H, W)
    grown = torch.nn.functional.max_pool2d(t, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return Image.fromarray(grown[0, 0].numpy().astype(np.uint8), mode="L")


def feather(hard: Image.Image, blur: int) -> Image.Image:
    """Composite alpha: the hard mask blurred, but never below it (feathering goes outwards only,
    so every pixel the user marked is fully repainted)."""
    if blur <= 0:
        return hard
    soft = np.asarray(hard.filter(ImageFilter.GaussianBlur(blur)))
    return Image.fromarray(np.maximum(soft, np.asarray(hard)), mode="L")


def composite(canvas: Image.Image, generated: Image.Image, alpha: Image.Image) -> Image.Image:
    """canvas·(1-a) + generated·a in uint8; exactly the canvas wherever a = 0."""
    a = np.asarray(alpha, dtype=np.float32)[..., None] / 255.0  # (H, W, 1)
    base = np.asarray(canvas.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    gen = np.asarray(generated.convert("RGB").resize(canvas.size), dtype=np.float32)
    out = np.where(a > 0, base * (1.0 - a) + gen * a, base)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL → (1, 3, H, W) fp32 in [-1, 1]."""
    arr = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32))  # (H, W, 3)
    return (arr.permute(2, 0, 1)[None] / 127.5) - 1.0


def mask_to_latent(mask: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """L mask → (1, 1, h, w) in {0, 1} at latent size (w, h); a latent cell is repainted if any
    of its pixels is (max-pool), so the repaint never falls short of the mask."""
    t = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None, None]  # (1, 1, H, W)
    w, h = size
    return (torch.nn.functional.adaptive_max_pool2d(t, (h, w)) > 0.5).float()


@dataclass
class LatentBlend:
    """Training-free inpainting for rectified-flow samplers (x_t = (1 - t)·x0 + t·noise).

    ``start`` noises the clean latents of the canvas to the first sigma of the (strength-cut)
    schedule; ``after_step(i, x)`` is called from the per-step callback with the latents after
    step i and re-injects the original, noised to sigma_{i+1}, outside the mask. After the last
    step sigma is 0, so the unmasked latents are exactly the encoded canvas.
    """

    clean: torch.Tensor  # (B, C, h, w) encoded canvas
    noise: torch.Tensor  # (B, C, h, w) the run's noise
    sigmas: torch.Tensor  # (S + 1,) the schedule actually run, ending at 0
    mask: torch.Tensor | None  # (1, 1, h, w) 1 = repaint; None for img2img

    def noised(self, index: int) -> torch.Tensor:
        s = self.sigmas[index].to(self.clean.dtype)
        return (1.0 - s) * self.clean + s * self.noise

    def start(self) -> torch.Tensor:
        return self.noised(0)

    def after_step(self, index: int, latents: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return latents
        m = self.mask.to(latents.device, latents.dtype)
        return m * latents + (1.0 - m) * self.noised(index + 1).to(latents.device, latents.dtype)


def cut_schedule(sigmas: torch.Tensor, strength: float) -> torch.Tensor:
    """The tail of a full (S + 1,) schedule (1 → 0) that an edit of ``strength`` runs."""
    steps = len(sigmas) - 1
    run = steps_run(steps, strength)
    return sigmas[steps - run :]
