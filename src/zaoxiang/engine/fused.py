"""Lossless rewrites of hot elementwise chains into forms torch.compile (Inductor) can fuse.

Z-Image's rotary embedding (diffusers 0.42.1, ``ZSingleStreamAttnProcessor.__call__``) does::

    x = torch.view_as_complex(x_in.float().reshape(*x_in.shape[:-1], -1, 2))   # (B, S, H, D/2) complex64
    x_out = torch.view_as_real(x * freqs_cis.unsqueeze(2)).flatten(3)            # (B, S, H, D) fp32
    return x_out.type_as(x_in)

with ``freqs_cis`` a complex64 (B, S, D/2) table built by ``RopeEmbedder``. Inductor has no complex
dtype codegen: the complex multiply runs as its own ATen kernel, and the views into and out of
complex split the chain into separate kernels (bf16→fp32 copy, complex mul, fp32→bf16 copy), each a
full pass over q or k, for every attention call (34 per forward at 1024²: 30 layers + 2 + 2
refiners). The rewrite below computes the same products with real arithmetic:

    out_even = x_even * cos - x_odd * sin,   out_odd = x_even * sin + x_odd * cos      (fp32)

which is exactly what a complex64 multiply computes (same operands, same fp32 products and sums),
so Inductor fuses the read of q/k, the RMSNorm before it and the rounding back to bf16 into one
kernel. The RoPE table is handed to the blocks as a real (..., D/2, 2) fp32 tensor (cos, sin), so no
complex tensor enters the compiled region at all.

What was *not* rewritten, and why: the adaLN modulation chains of FLUX (``AdaLayerNormZero``:
LayerNorm → ``x * (1 + scale[:, None]) + shift[:, None]``; gate ``gate[:, None] * out``), Qwen-Image
(``_modulate``: the same shape of code) and Z-Image (``RMSNorm(x) * scale``; ``x + gate.tanh() *
RMSNorm(out)``) are plain pointwise ops and reductions in the activation dtype (Z-Image's RMSNorm
upcasts to fp32 and back, which Inductor folds into the same kernel); nothing in them (no complex
dtype, no data-dependent control flow, no ``.item()``) stops Inductor from fusing each chain into
the neighbouring reduction. A hand rewrite would not remove a kernel there, so none was written.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

_ROPE_MARK = "_zaoxiang_real_rope"


def rotate_real(x: torch.Tensor, cos_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding with real arithmetic in fp32, result in ``x``'s dtype.

    x: (B, S, H, D); cos_sin: (B, S, D/2, 2) fp32 (``view_as_real`` of the complex table).
    Equal to ``view_as_real(view_as_complex(x.float()) * table[:, :, None]).flatten(3)``.
    """
    xf = x.float().unflatten(-1, (-1, 2))  # (B, S, H, D/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]  # (B, S, H, D/2)
    cos = cos_sin[..., 0].unsqueeze(2)  # (B, S, 1, D/2)
    sin = cos_sin[..., 1].unsqueeze(2)
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)  # (B, S, H, D/2, 2)
    return out.flatten(3).type_as(x)  # (B, S, H, D)


class RealRopeEmbedder:
    """Wraps Z-Image's ``RopeEmbedder``: same table, returned as real (L, D/2, 2) fp32 (cos, sin).

    The transformer only splits, pads (with zeros: cos = sin = 0, as the complex 0 it replaces),
    slices and concatenates the table along the sequence dimension, which is the same for a
    trailing (…, 2) dimension, and hands it to the attention processors.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(self.inner(ids))  # (L, D/2) complex64 -> (L, D/2, 2) fp32


@functools.cache
def _real_rope_processor_class() -> type:
    # Built once, on first use, so importing this module does not import diffusers.
    from diffusers.models.attention_dispatch import dispatch_attention_fn
    from diffusers.models.transformers.transformer_z_image import ZSingleStreamAttnProcessor

    class RealRopeZImageAttnProcessor(ZSingleStreamAttnProcessor):
        """``ZSingleStreamAttnProcessor`` with the rotary embedding in real arithmetic (see module doc).
        Everything else is the stock code of diffusers 0.42.1."""

        def __call__(
            self,
            attn: Any,
            hidden_states: torch.Tensor,
            encoder_hidden_states: torch.Tensor | None = None,
            attention_mask: torch.Tensor | None = None,
            freqs_cis: torch.Tensor | None = None,
        ) -> torch.Tensor:
            query = attn.to_q(hidden_states).unflatten(-1, (attn.heads, -1))  # (B, S, H, D)
            key = attn.to_k(hidden_states).unflatten(-1, (attn.heads, -1))
            value = attn.to_v(hidden_states).unflatten(-1, (attn.heads, -1))
            if attn.norm_q is not None:
                query = attn.norm_q(query)
            if attn.norm_k is not None:
                key = attn.norm_k(key)
            if freqs_cis is not None:
                # The wrapped embedder gives (B, S, D/2, 2) fp32; a complex table (embedder not wrapped) is viewed as one.
                table = torch.view_as_real(freqs_cis) if freqs_cis.is_complex() else freqs_cis
                query, key = rotate_real(query, table), rotate_real(key, table)
            if attention_mask is not None and attention_mask.ndim == 2:
                attention_mask = attention_mask[:, None, None, :]  # (B, 1, 1, S)
            dtype = query.dtype
            hidden_states = dispatch_attention_fn(
                query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                backend=self._attention_backend, parallel_config=self._parallel_config,
            )  # (B, S, H, D)
            hidden_states = hidden_states.flatten(2, 3).to(dtype)  # (B, S, H*D)
            output = attn.to_out[0](hidden_states)
            if len(attn.to_out) > 1:  # dropout
                output = attn.to_out[1](output)
            return output

    return RealRopeZImageAttnProcessor


def _set_processor(module: nn.Module, processor: Any) -> None:
    if hasattr(module, "set_processor"):
        module.set_processor(processor)  # diffusers' Attention: its own bookkeeping
    else:
        module.processor = processor


def install_real_rope(model: nn.Module) -> int:
    """Swap Z-Image's complex RoPE for the real-valued one (processors + table); returns how many
    attention processors were swapped (0: not a Z-Image transformer, nothing changed). Idempotent.
    Install before compiling: a compiled block has traced whichever processor it saw."""
    if type(model).__name__ != "ZImageTransformer2DModel" or not hasattr(model, "rope_embedder"):
        return 0
    from diffusers.models.transformers.transformer_z_image import ZSingleStreamAttnProcessor

    cls = _real_rope_processor_class()
    n = 0
    for module in model.modules():
        proc = getattr(module, "processor", None)
        if isinstance(proc, ZSingleStreamAttnProcessor):
            if not isinstance(proc, cls):
                new = cls()
                new._attention_backend, new._parallel_config = proc._attention_backend, proc._parallel_config
                _set_processor(module, new)
            n += 1
    if n and not isinstance(model.rope_embedder, RealRopeEmbedder):
        model.rope_embedder = RealRopeEmbedder(model.rope_embedder)
    if n:
        setattr(model, _ROPE_MARK, True)
    return n


def real_rope_installed(model: nn.Module) -> bool:
    """True when every Z-Image attention processor and the table are the real-valued ones."""
    if not getattr(model, _ROPE_MARK, False) or not isinstance(getattr(model, "rope_embedder", None), RealRopeEmbedder):
        return False
    procs = [m.processor for m in model.modules() if hasattr(m, "processor") and hasattr(m.processor, "_attention_backend")]
    return bool(procs) and all(type(p).__name__ == "RealRopeZImageAttnProcessor" for p in procs)


def uninstall_real_rope(model: nn.Module) -> None:
    """Back to diffusers' stock processors and complex table (bench: switch modes in one process)."""
    if not getattr(model, _ROPE_MARK, False):
        return
    from diffusers.models.transformers.transformer_z_image import ZSingleStreamAttnProcessor

    for module in model.modules():
        proc = getattr(module, "processor", None)
        if type(proc).__name__ == "RealRopeZImageAttnProcessor":
            stock = ZSingleStreamAttnProcessor()
            stock._attention_backend, stock._parallel_config = proc._attention_backend, proc._parallel_config
            _set_processor(module, stock)
    if isinstance(model.rope_embedder, RealRopeEmbedder):
        model.rope_embedder = model.rope_embedder.inner
    model.__dict__.pop(_ROPE_MARK, None)
