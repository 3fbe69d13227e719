"""engine.pixels.postprocess_pil: the same pixels as diffusers' VaeImageProcessor.postprocess."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zaoxiang.engine.pixels import postprocess_pil


def _images(dtype: torch.dtype, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, channels, 48, 64, generator=g) * 2.4 - 1.2  # (B, C, H, W), some outside [-1, 1]
    # Values whose x * 255 lands on or next to a half: where a different rounding would show.
    halves = (torch.arange(0, 256, dtype=torch.float64) + 0.5) / 255 * 2 - 1  # (256,)
    x[0, 0, 0, :64] = halves[:64].float()
    x[0, 0, 1, :64] = halves[64:128].float()
    x[1, 0, 0, :64] = torch.nextafter(halves[128:192].float(), torch.tensor(2.0))
    x[1, 0, 1, :64] = torch.nextafter(halves[192:].float(), torch.tensor(-2.0))
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels", [3, 1])
def test_same_pixels_as_diffusers(dtype, channels):
    from diffusers.image_processor import VaeImageProcessor

    proc = VaeImageProcessor(vae_scale_factor=8)
    images = _images(dtype, channels)
    ours = postprocess_pil(proc, images)
    theirs = proc.postprocess(images, output_type="pil")
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert a.mode == b.mode and a.size == b.size == (64, 48)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_processor_without_normalising_is_followed():
    from diffusers.image_processor import VaeImageProcessor

    proc = VaeImageProcessor(vae_scale_factor=8, do_normalize=False)
    images = _images(torch.float32).clamp(0, 1)
    for a, b in zip(postprocess_pil(proc, images), proc.postprocess(images, output_type="pil")):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_processor_that_changes_postprocessing_keeps_its_own():
    from diffusers.image_processor import VaeImageProcessor

    class Inverting(VaeImageProcessor):
        def postprocess(self, image, output_type="pil", do_denormalize=None):
            return super().postprocess(-image, output_type=output_type, do_denormalize=do_denormalize)

    proc = Inverting(vae_scale_factor=8)
    images = _images(torch.float32)
    for a, b in zip(postprocess_pil(proc, images), proc.postprocess(images, output_type="pil")):
        assert np.array_equal(np.asarray(a), np.asarray(b))
