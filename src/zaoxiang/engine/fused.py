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

Qwen-Image (``QwenDoubleStreamAttnProcessor2_0.__call__``) rotates the same way, through
``apply_rotary_emb_qwen(x, freqs, use_real=False)``, four times per block (image q and k, text q and
k; 240 calls per forward over 60 blocks), with two complex64 tables, image (S_img, D/2) and text
(S_txt, D/2), that ``QwenEmbedRope`` (the transformer's ``pos_embed``) returns as a tuple. In the
H100 profile of the regionally compiled forward (bench/results-h100-qwen.md, docs/performance.md
"Run 2") an eager ATen ``elementwise_kernel<…Binary…>`` runs 240 times per forward for 5.0 ms (3.8 %
of it), beside an Inductor kernel named ``…rsqrt_view_view_as_complex`` (the q/k RMSNorm, which
stops at the complex view), and the log carries Inductor's "does not support code generation for
complex operators" warning: the complex multiply is that eager kernel. The same rewrite applies:
the processor below is diffusers' own code with the four rotations through :func:`rotate_real`,
and ``pos_embed`` is wrapped so both tables reach the blocks as real (S, D/2, 2) fp32.

What was *not* rewritten, and why: the adaLN modulation chains of FLUX (``AdaLayerNormZero``:
LayerNorm → ``x * (1 + scale[:, None]) + shift[:, None]``; gate ``gate[:, None] * out``), Qwen-Image
(``_modulate``: the same shape of code) and Z-Image (``RMSNorm(x) * scale``; ``x + gate.tanh() *
RMSNorm(out)``) are plain pointwise ops and reductions in the activation dtype (Z-Image's RMSNorm
upcasts to fp32 and back, which Inductor folds into the same kernel); nothing in them (no complex
dtype, no data-dependent control flow, no ``.item()``) stops Inductor from fusing each chain into
the neighbouring reduction. A hand rewrite would not remove a kernel there, so none was written.
FLUX's RoPE is already real (``apply_rotary_emb(use_real=True)``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_ROPE_MARK = "_zaoxiang_real_rope"


def rotate_real(x: torch.Tensor, cos_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding with real arithmetic in fp32, result in ``x``'s dtype.

    x: (B, S, H, D); cos_sin: (B, S, D/2, 2) fp32 (``view_as_real`` of the complex table; B may be 1).
    Equal to ``view_as_real(view_as_complex(x.float()) * table[:, :, None]).flatten(3)``: per pair
    (x0, x1), out0 = x0·cos + (−x1)·sin and out1 = x1·cos + x0·sin, the complex product's own
    products and sums (negation and the order of two addends are exact).

    Written without stacking the two halves of each pair (``torch.stack(out0, out1)``, the first
    version): Inductor realises a stack of q- or k-sized operands as an fp32 buffer. Here the pair
    swap is a ``flip`` of the last dimension (an index remap that fuses), and only the (B, S, D/2, 2)
    tables are stacked: on the CPU no q- or k-sized fp32 buffer is left, and on an H100 Z-Image's
    norm + RoPE kernel fell from 3.89 to 3.15 ms a forward. There Inductor still writes the rotated
    key in fp32 before the cast (a 0.93 ms copy a forward; docs/performance.md, "Runs 6–8").
    """
    return rotate_pairs(x, *pair_tables(cos_sin))


def pair_tables(cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, D/2, 2) (cos, sin) -> the factors :func:`rotate_pairs` takes, each (B, S, 1, D/2, 2):
    (cos, cos) and (−sin, sin). Built once per attention call and shared by its q and k."""
    cos, sin = cos_sin[..., 0], cos_sin[..., 1]  # (B, S, D/2)
    return torch.stack((cos, cos), dim=-1).unsqueeze(2), torch.stack((-sin, sin), dim=-1).unsqueeze(2)


def rotate_pairs(x: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> torch.Tensor:
    """:func:`rotate_real` with the tables from :func:`pair_tables`. x: (B, S, H, D) -> same shape and dtype."""
    xf = x.float().unflatten(-1, (-1, 2))  # (B, S, H, D/2, 2): pairs (x0, x1)
    out = xf * cos2 + xf.flip(-1) * sin2  # (B, S, H, D/2, 2): (x0·c − x1·s, x1·c + x0·s)
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


class RealQwenRope(nn.Module):
    """Wraps Qwen-Image's ``pos_embed`` (``QwenEmbedRope`` or ``QwenEmbedLayer3DRope``): the same
    (image, text) tables, returned as real (S, D/2, 2) fp32 (cos, sin).

    A module, not a plain wrapper as for Z-Image, because ``pos_embed`` is a registered child module
    (the inner one keeps its lru caches of device tables). It holds no parameters or buffers, so the
    state dict is unchanged. Context parallelism (diffusers' ``_cp_plan`` splits ``pos_embed``'s
    outputs as 2-D tables) is not supported while it is installed.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        img, txt = self.inner(*args, **kwargs)  # (S_img, D/2), (S_txt, D/2) complex64
        return torch.view_as_real(img), torch.view_as_real(txt)  # (S, D/2, 2) fp32 views, no copy


def _rows_real(table: torch.Tensor) -> torch.Tensor:
    """A Qwen table, complex (S, D/2) or real (S, D/2, 2), as (1, S, D/2, 2) fp32 for :func:`rotate_real`
    (the batch dimension of one is what stock's ``freqs_cis.unsqueeze(1)`` broadcasts over)."""
    return (torch.view_as_real(table) if table.is_complex() else table).unsqueeze(0)


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
                cos2, sin2 = pair_tables(table)
                query, key = rotate_pairs(query, cos2, sin2), rotate_pairs(key, cos2, sin2)
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


@functools.cache
def _real_rope_qwen_processor_class() -> type:
    # Built once, on first use, so importing this module does not import diffusers.
    from diffusers.models.attention_dispatch import dispatch_attention_fn
    from diffusers.models.transformers.transformer_qwenimage import QwenDoubleStreamAttnProcessor2_0

    class RealRopeQwenAttnProcessor(QwenDoubleStreamAttnProcessor2_0):
        """``QwenDoubleStreamAttnProcessor2_0`` with the rotary embedding in real arithmetic (see module
        doc). Everything else is the stock code of diffusers 0.42.1, comments included."""

        def __call__(
            self,
            attn: Any,
            hidden_states: torch.FloatTensor,  # Image stream
            encoder_hidden_states: torch.FloatTensor = None,  # Text stream
            encoder_hidden_states_mask: torch.FloatTensor = None,
            attention_mask: torch.FloatTensor | None = None,
            image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if encoder_hidden_states is None:
                raise ValueError("QwenDoubleStreamAttnProcessor2_0 requires encoder_hidden_states (text stream)")

            if attention_mask is not None:
                raise ValueError(
                    "QwenDoubleStreamAttnProcessor2_0 does not accept an external attention_mask. "
                    "Pass encoder_hidden_states_mask to let the processor build the joint mask."
                )

            if encoder_hidden_states_mask is not None:
                seq_img = hidden_states.shape[1]
                image_mask = torch.ones((hidden_states.shape[0], seq_img), dtype=torch.bool, device=hidden_states.device)
                attention_mask = torch.cat([encoder_hidden_states_mask, image_mask], dim=1)  # (B, S_txt + S_img)
                attention_mask = attention_mask[:, None, None, :]  # (B, 1, 1, S_txt + S_img)

            seq_txt = encoder_hidden_states.shape[1]

            # Compute QKV for image stream (sample projections)
            img_query = attn.to_q(hidden_states)  # (B, S_img, H*D)
            img_key = attn.to_k(hidden_states)
            img_value = attn.to_v(hidden_states)

            # Compute QKV for text stream (context projections)
            txt_query = attn.add_q_proj(encoder_hidden_states)  # (B, S_txt, H*D)
            txt_key = attn.add_k_proj(encoder_hidden_states)
            txt_value = attn.add_v_proj(encoder_hidden_states)

            # Reshape by a fixed `head_dim` and let `-1` absorb the head count. Under tensor parallelism each rank
            # holds a column-sharded slice (`attn.heads // tp_degree` heads); this keeps the processor TP-agnostic.
            # The shared Attention has no `head_dim` attribute; derive it from the unsharded `inner_dim`/`heads`.
            head_dim = attn.inner_dim // attn.heads
            img_query = img_query.unflatten(-1, (-1, head_dim))  # (B, S_img, H, D)
            img_key = img_key.unflatten(-1, (-1, head_dim))
            img_value = img_value.unflatten(-1, (-1, head_dim))

            txt_query = txt_query.unflatten(-1, (-1, head_dim))  # (B, S_txt, H, D)
            txt_key = txt_key.unflatten(-1, (-1, head_dim))
            txt_value = txt_value.unflatten(-1, (-1, head_dim))

            # Apply QK normalization
            if attn.norm_q is not None:
                img_query = attn.norm_q(img_query)
            if attn.norm_k is not None:
                img_key = attn.norm_k(img_key)
            if attn.norm_added_q is not None:
                txt_query = attn.norm_added_q(txt_query)
            if attn.norm_added_k is not None:
                txt_key = attn.norm_added_k(txt_key)

            # Apply RoPE: real fp32 arithmetic instead of stock's apply_rotary_emb_qwen(use_real=False). The wrapped
            # pos_embed gives real (S, D/2, 2) tables; complex ones (pos_embed not wrapped) are viewed as real.
            if image_rotary_emb is not None:
                img_freqs, txt_freqs = image_rotary_emb
                img_table, txt_table = _rows_real(img_freqs), _rows_real(txt_freqs)  # (1, S, D/2, 2) fp32
                img_tables, txt_tables = pair_tables(img_table), pair_tables(txt_table)
                img_query = rotate_pairs(img_query, *img_tables)
                img_key = rotate_pairs(img_key, *img_tables)
                txt_query = rotate_pairs(txt_query, *txt_tables)
                txt_key = rotate_pairs(txt_key, *txt_tables)

            # Concatenate for joint attention
            # Order: [text, image]
            joint_query = torch.cat([txt_query, img_query], dim=1)  # (B, S_txt + S_img, H, D)
            joint_key = torch.cat([txt_key, img_key], dim=1)
            joint_value = torch.cat([txt_value, img_value], dim=1)

            joint_hidden_states = dispatch_attention_fn(
                joint_query,
                joint_key,
                joint_value,
                attn_mask=attention_mask,
                dropout_p=0.0,
                is_causal=False,
                backend=self._attention_backend,
                parallel_config=self._parallel_config,
            )  # (B, S_txt + S_img, H, D)

            # Reshape back
            joint_hidden_states = joint_hidden_states.flatten(2, 3)  # (B, S_txt + S_img, H*D)
            joint_hidden_states = joint_hidden_states.to(joint_query.dtype)

            # Split attention outputs back
            txt_attn_output = joint_hidden_states[:, :seq_txt, :]  # Text part
            img_attn_output = joint_hidden_states[:, seq_txt:, :]  # Image part

            # Apply output projections
            img_attn_output = attn.to_out[0](img_attn_output.contiguous())
            if len(attn.to_out) > 1:
                img_attn_output = attn.to_out[1](img_attn_output)  # dropout

            txt_attn_output = attn.to_add_out(txt_attn_output.contiguous())

            return img_attn_output, txt_attn_output

    return RealRopeQwenAttnProcessor


@dataclass(frozen=True)
class _RopeSite:
    """Where one architecture keeps its complex RoPE: the attention processor class diffusers installs,
    its real-valued subclass, and the transformer attribute that builds the table with its wrapper."""

    stock: type
    real: type
    table_attr: str
    wrap: type


def _rope_site(model: nn.Module) -> _RopeSite | None:
    """The site for a Z-Image or Qwen-Image transformer (by class name, so other models import nothing)."""
    name = type(model).__name__
    if name == "ZImageTransformer2DModel" and hasattr(model, "rope_embedder"):
        from diffusers.models.transformers.transformer_z_image import ZSingleStreamAttnProcessor

        return _RopeSite(ZSingleStreamAttnProcessor, _real_rope_processor_class(), "rope_embedder", RealRopeEmbedder)
    if name == "QwenImageTransformer2DModel" and hasattr(model, "pos_embed"):
        from diffusers.models.transformers.transformer_qwenimage import QwenDoubleStreamAttnProcessor2_0

        return _RopeSite(QwenDoubleStreamAttnProcessor2_0, _real_rope_qwen_processor_class(), "pos_embed", RealQwenRope)
    return None


def _set_processor(module: nn.Module, processor: Any) -> None:
    if hasattr(module, "set_processor"):
        module.set_processor(processor)  # diffusers' Attention: its own bookkeeping
    else:
        module.processor = processor


def _swap_processor(module: nn.Module, old: Any, cls: type) -> None:
    new = cls()
    new._attention_backend, new._parallel_config = old._attention_backend, old._parallel_config
    _set_processor(module, new)


def install_real_rope(model: nn.Module) -> int:
    """Swap Z-Image's or Qwen-Image's complex RoPE for the real-valued one (processors + table);
    returns how many attention processors were swapped (0: neither transformer, nothing changed).
    Idempotent. Install before compiling: a compiled block has traced whichever processor it saw."""
    site = _rope_site(model)
    if site is None:
        return 0
    n = 0
    for module in model.modules():
        proc = getattr(module, "processor", None)
        if isinstance(proc, site.stock):
            if not isinstance(proc, site.real):
                _swap_processor(module, proc, site.real)
            n += 1
    table = getattr(model, site.table_attr)
    if n and not isinstance(table, site.wrap):
        setattr(model, site.table_attr, site.wrap(table))
    if n:
        setattr(model, _ROPE_MARK, True)
    return n


def real_rope_installed(model: nn.Module) -> bool:
    """True when every attention processor and the table of a Z-Image or Qwen-Image transformer are
    the real-valued ones."""
    if not getattr(model, _ROPE_MARK, False):
        return False
    site = _rope_site(model)
    if site is None or not isinstance(getattr(model, site.table_attr, None), site.wrap):
        return False
    procs = [m.processor for m in model.modules() if hasattr(m, "processor") and hasattr(m.processor, "_attention_backend")]
    return bool(procs) and all(isinstance(p, site.real) for p in procs)


def uninstall_real_rope(model: nn.Module) -> None:
    """Back to diffusers' stock processors and complex table (bench: switch modes in one process)."""
    if not getattr(model, _ROPE_MARK, False):
        return
    site = _rope_site(model)
    if site is not None:
        for module in model.modules():
            proc = getattr(module, "processor", None)
            if isinstance(proc, site.real):
                _swap_processor(module, proc, site.stock)
        table = getattr(model, site.table_attr)
        if isinstance(table, site.wrap):
            setattr(model, site.table_attr, table.inner)
    model.__dict__.pop(_ROPE_MARK, None)
