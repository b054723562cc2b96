"""Transformer building blocks shared by the vision encoder, backbone and expert.

Llama-style: RMSNorm, rotary position embedding (the ``rotate_half`` layout that Llama
and Qwen2 use, so our expert can read a Hugging Face backbone's cache), grouped-query
attention on ``scaled_dot_product_attention`` with a boolean mask, SwiGLU MLP.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dimension."""
        if torch.onnx.is_in_onnx_export():  # no RMSNorm op before ONNX opset 23
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for integer ``positions (B, S)`` -> ``(B, 1, S, head_dim)`` each."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device,
                                             dtype=torch.float32) / head_dim))
    freqs = positions.to(torch.float32)[..., None] * inv_freq  # (B, S, hd/2)
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (B, H, S, hd)`` (``rotate_half`` layout)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
           ) -> torch.Tensor:
    """SDPA with grouped-query heads: ``q (B,H,S,hd)``, ``k/v (B,Hkv,L,hd)``, bool mask."""
    if k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    if q.device.type == "cpu" and q.shape[2] > 1:
        # Many queries on a CPU: plain matmul-softmax is ~4x faster than the SDPA kernel
        # at our sizes (64 x ~200, measured); one query (decoding) keeps SDPA, faster there.
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class SwiGLU(nn.Module):
    """Gated MLP: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP."""
        return self.down(F.silu(self.gate(x)) * self.up(x))


class EncoderBlock(nn.Module):
    """Pre-norm bidirectional block: self-attention (optionally cross) + MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, cross: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.cross = cross
        if cross:
            self.norm_q = RMSNorm(dim)
            self.norm_kv = RMSNorm(dim)
            self.q = nn.Linear(dim, dim, bias=False)
            self.kv = nn.Linear(dim, 2 * dim, bias=False)
            self.cross_proj = nn.Linear(dim, dim, bias=False)
        self.norm2 = RMSNorm(dim)
        self.mlp = SwiGLU(dim, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        return x.view(b, s, self.heads, d // self.heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, s, hd = x.shape
        return x.transpose(1, 2).reshape(b, s, h * hd)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x (B,S,D)``; with ``cross``, first attend to ``context (B,L,D)`` (mask (B,L))."""
        if self.cross:
            q = self._split(self.q(self.norm_q(x)))
            k, v = (self._split(t) for t in self.kv(self.norm_kv(context)).chunk(2, dim=-1))
            mask = None if context_mask is None else context_mask[:, None, None, :]
            x = x + self.cross_proj(self._merge(attend(q, k, v, mask)))
        q, k, v = (self._split(t) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        x = x + self.proj(self._merge(attend(q, k, v, None)))
        return x + self.mlp(self.norm2(x))


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0
                         ) -> torch.Tensor:
    """Sinusoidal features of a scalar per batch item, ``(B,)`` -> ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device,
                                                           dtype=torch.float32) / half)
    args = (t.to(torch.float32) * 1000.0)[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)
