"""The built-in rectified-flow transformer: MMDiT (SD3) dual-stream blocks, then FLUX-style
single-stream blocks, over autoencoder latents.

- Text tokens (frozen multilingual-e5 hidden states) and image tokens (2×2 latent patches) attend
  jointly; a key padding mask removes padded text tokens.
- 2-D RoPE (fp32 tables) on image tokens; text tokens sit at position 0 (no rotation): e5 states
  already carry their own positions.
- Timestep (+ pooled text) modulation is adaLN-single (PixArt-α): one shared projection of the
  conditioning vector to 6·D, plus a small learned table per block. Per-block adaLN-zero would
  cost ≈ 5.7M of our ≈ 18M parameters at D=384; the shared form costs 0.9M. Gates start at zero,
  so every block starts as the identity (the "zero" of adaLN-zero).
- q/k RMSNorm per head keeps bf16 attention logits tame.

Time convention (rectified flow, SD3/FLUX): x_t = (1 - t)·x0 + t·noise, t ∈ [0, 1]; t = 0 is data,
t = 1 is pure noise. The model predicts the velocity v = noise - x0 (= dx_t/dt); sampling walks t
from 1 to 0 (``zaoxiang.model.sampler``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zaoxiang.model.config import TransformerConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """(B,) t in [0, 1] -> (B, dim) sinusoidal features (computed in fp32)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_2d(h: int, w: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (h*w, head_dim/2) in fp32: the first half of the rotary pairs encodes the row,
    the second half the column."""
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)  # (Dh/4,)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    angles = torch.cat([ys.reshape(-1, 1) * freqs, xs.reshape(-1, 1) * freqs], dim=-1)  # (N, Dh/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (B, H, L, Dh) by tables (L, Dh/2); math in fp32."""
    xf = x.float().unflatten(-1, (-1, 2))  # (B, H, L, Dh/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, L, D), shift/scale (B, D)."""
    return x * (1.0 + scale[:, None]) + shift[:, None]


class QKNorm(nn.Module):
    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.q = nn.RMSNorm(head_dim, eps=1e-6)
        self.k = nn.RMSNorm(head_dim, eps=1e-6)


def _split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L, 3D) -> q, k, v each (B, H, L, Dh)."""
    b, l, _ = qkv.shape
    q, k, v = qkv.view(b, l, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def attention(q, k, v, cos, sin, mask) -> torch.Tensor:
    """q, k, v (B, H, L, Dh); cos/sin (L, Dh/2); mask (B, 1, 1, L) bool -> (B, L, H*Dh)."""
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, Dh)
    return out.transpose(1, 2).flatten(2)


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class StreamWeights(nn.Module):
    """One stream's half of a dual block (SD3 MMDiT): pre-attention qkv, post-attention proj + MLP."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.qk_norm = QKNorm(cfg.head_dim)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        self.table = nn.Parameter(torch.zeros(6, d))  # per-block offsets to the shared modulation

    def pre(self, x: torch.Tensor, mod: torch.Tensor, heads: int):
        """x (B, L, D), mod (B, 6, D) -> q, k, v (B, H, L, Dh) and the modulation chunks."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod + self.table).unbind(1)  # each (B, D)
        q, k, v = _split_heads(self.qkv(modulate(self.norm1(x), shift1, scale1)), heads)
        q, k = self.qk_norm.q(q), self.qk_norm.k(k)
        return q, k, v, (gate1, shift2, scale2, gate2)

    def post(self, x: torch.Tensor, attn: torch.Tensor, chunks) -> torch.Tensor:
        gate1, shift2, scale2, gate2 = chunks
        x = x + gate1[:, None] * self.proj(attn)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DualStreamBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.img = StreamWeights(cfg)
        self.txt = StreamWeights(cfg)

    def forward(self, img, txt, mod, cos, sin, mask):
        """img (B, N, D), txt (B, T, D), mod (B, 6, D) -> img, txt (same shapes)."""
        qi, ki, vi, ci = self.img.pre(img, mod, self.heads)
        qt, kt, vt, ct = self.txt.pre(txt, mod, self.heads)
        t = txt.shape[1]
        attn = attention(
            torch.cat([qt, qi], dim=2), torch.cat([kt, ki], dim=2), torch.cat([vt, vi], dim=2), cos, sin, mask
        )  # (B, T+N, D)
        return self.img.post(img, attn[:, t:], ci), self.txt.post(txt, attn[:, :t], ct)


class SingleStreamBlock(nn.Module):
    """FLUX single-stream block: parallel attention + MLP from one fused input projection."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.num_heads
        self.mlp_hidden = int(d * cfg.mlp_ratio)
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.linear1 = nn.Linear(d, 3 * d + self.mlp_hidden)
        self.qk_norm = QKNorm(cfg.head_dim)
        self.linear2 = nn.Linear(d + self.mlp_hidden, d)
        self.table = nn.Parameter(torch.zeros(3, d))

    def forward(self, x, mod, cos, sin, mask):
        """x (B, T+N, D), mod (B, 6, D): uses the shared (shift, scale, gate) of the attention half."""
        shift, scale, gate = (mod[:, :3] + self.table).unbind(1)  # each (B, D)
        h = self.linear1(modulate(self.norm(x), shift, scale))  # (B, L, 3D + M)
        qkv, mlp = h.split([3 * x.shape[-1], self.mlp_hidden], dim=-1)
        q, k, v = _split_heads(qkv, self.heads)
        q, k = self.qk_norm.q(q), self.qk_norm.k(k)
        attn = attention(q, k, v, cos, sin, mask)  # (B, L, D)
        out = self.linear2(torch.cat([attn, F.gelu(mlp, approximate="tanh")], dim=-1))
        return x + gate[:, None] * out


class MMDiT(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        d, p = cfg.hidden_size, cfg.patch_size
        self.img_in = nn.Linear(cfg.in_channels * p * p, d)
        self.txt_in = nn.Sequential(nn.RMSNorm(cfg.text_dim, eps=1e-6), nn.Linear(cfg.text_dim, d))
        # The input word rows get their own norm and projection, added to txt_in's: zero-initialised
        # so that weights trained without them load and compute exactly what they did.
        self.txt_embed_in = (
            nn.Sequential(nn.RMSNorm(cfg.text_embed_dim, eps=1e-6), nn.Linear(cfg.text_embed_dim, d, bias=False))
            if cfg.text_embed_dim else None
        )
        self.time_in = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.pooled_in = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # shared by all blocks (adaLN-single)
        self.dual = nn.ModuleList(DualStreamBlock(cfg) for _ in range(cfg.dual_blocks))
        self.single = nn.ModuleList(SingleStreamBlock(cfg) for _ in range(cfg.single_blocks))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_table = nn.Parameter(torch.zeros(2, d))
        self.final = nn.Linear(d, cfg.in_channels * p * p)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_in[0].weight, std=0.02)
        nn.init.normal_(self.time_in[2].weight, std=0.02)
        # adaLN-zero: zero modulation and zero output layer, so the model starts as a no-op.
        nn.init.zeros_(self.adaln[1].weight)
        nn.init.zeros_(self.final.weight)
        if self.txt_embed_in is not None:
            nn.init.zeros_(self.txt_embed_in[1].weight)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        x: torch.Tensor,  # (B, C, h, w) noisy latents x_t
        t: torch.Tensor,  # (B,) in [0, 1]
        text: torch.Tensor,  # (B, T, text_input_dim) hidden states (+ input word rows)
        text_mask: torch.Tensor,  # (B, T) bool, True for real tokens
    ) -> torch.Tensor:  # (B, C, h, w) velocity
        cfg = self.config
        b, c, h, w = x.shape
        p = cfg.patch_size
        gh, gw = h // p, w // p
        dtype = self.img_in.weight.dtype  # under autocast, matmuls still run in bf16

        # Patchify: (B, C, h, w) -> (B, N, C*p*p)
        patches = x.view(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * p * p)
        img = self.img_in(patches.to(dtype))  # (B, N, D)
        if text.shape[-1] != cfg.text_input_dim:
            raise ValueError(f"text features are {text.shape[-1]} wide, this transformer reads {cfg.text_input_dim}")
        text, words = text[..., : cfg.text_dim], text[..., cfg.text_dim :]  # (B, T, text_dim), (B, T, embed)
        txt = self.txt_in(text.to(dtype))  # (B, T, D)
        if self.txt_embed_in is not None:
            txt = txt + self.txt_embed_in(words.to(dtype))

        maskf = text_mask.to(text.dtype)[..., None]  # (B, T, 1)
        pooled = (text * maskf).sum(1) / maskf.sum(1).clamp_min(1.0)  # (B, text_dim), e5 mean pooling
        cond = self.time_in(timestep_embedding(t, 256).to(dtype)) + self.pooled_in(pooled.to(dtype))  # (B, D)
        mod = self.adaln(cond).view(b, 6, -1)  # (B, 6, D)

        n_txt = txt.shape[1]
        cos_i, sin_i = rope_2d(gh, gw, cfg.head_dim, cfg.rope_theta, x.device)  # (N, Dh/2)
        cos = torch.cat([torch.ones(n_txt, cos_i.shape[1], device=x.device), cos_i])  # (T+N, Dh/2)
        sin = torch.cat([torch.zeros(n_txt, sin_i.shape[1], device=x.device), sin_i])
        full_mask = torch.cat([text_mask, text_mask.new_ones(b, gh * gw)], dim=1)[:, None, None, :]  # (B,1,1,T+N)

        for block in self.dual:
            img, txt = block(img, txt, mod, cos, sin, full_mask)
        seq = torch.cat([txt, img], dim=1)  # (B, T+N, D)
        for block in self.single:
            seq = block(seq, mod, cos, sin, full_mask)
        img = seq[:, n_txt:]  # (B, N, D)

        shift, scale = (self.final_table[None] + cond[:, None]).unbind(1)  # each (B, D)
        out = self.final(modulate(self.norm_out(img), shift, scale))  # (B, N, C*p*p)
        # Unpatchify: (B, N, C*p*p) -> (B, C, h, w)
        out = out.view(b, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
        return out.to(x.dtype)
