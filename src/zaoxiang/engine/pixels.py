"""Decoded images (B, C, H, W) -> PIL images, quantised where the images are.

diffusers' ``VaeImageProcessor.postprocess(images, "pil")`` (0.42.1) denormalises on the device,
then copies the float images to the host and quantises them there with numpy, on a permuted
(strided) array: one 1024² image costs ~75 ms of host time on the 2-core CI machine
(``bench/postprocess.py``), and on a GPU it copies 12 MB of fp32 instead of 3 MB of uint8.
:func:`postprocess_pil` does the very same arithmetic (diffusers' own ``denormalize`` in the images'
dtype, then ``x * 255`` in fp32, rounded half to even, cast to uint8) on the device, and copies
uint8 (H, W, C) rows: the pixels are identical (``tests/test_pixels.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image


def postprocess_pil(processor: Any, images: torch.Tensor) -> list[Image.Image]:
    """``processor.postprocess(images, output_type="pil")``, quantised on ``images``' device.

    images: (B, C, H, W), C = 3 (RGB) or 1 (grey), in [-1, 1] when the processor normalises.
    A processor whose class changes diffusers' postprocessing gets its own ``postprocess``.
    """
    from diffusers.image_processor import VaeImageProcessor

    cls = type(processor)
    stock = all(getattr(cls, name) is getattr(VaeImageProcessor, name)
                for name in ("postprocess", "_denormalize_conditionally", "denormalize", "pt_to_numpy", "numpy_to_pil"))
    if not stock or images.ndim != 4 or images.shape[1] not in (1, 3):
        return processor.postprocess(images, output_type="pil")
    x = processor.denormalize(images) if processor.config.do_normalize else images  # (B, C, H, W), images' dtype
    q = (x.float() * 255).round().to(torch.uint8)  # numpy_to_pil's arithmetic, in fp32 as pt_to_numpy leaves it
    hwc = q.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (B, H, W, C) uint8
    if hwc.shape[-1] == 1:
        return [Image.fromarray(a[..., 0]) for a in hwc]  # 2-D uint8: mode "L"
    return [Image.fromarray(a) for a in hwc]
