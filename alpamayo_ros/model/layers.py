"""Transformer building blocks shared by the vision encoder, backbone and expert.

Llama-style: RMSNorm, rotary position embedding (the ``rotate_half`` layout that Llama
and Qwen2 use, so our expert can read a Hugging Face backbone's cache), grouped-query
attention (:class:`Attention`: fused q/k/v projection, shared by the backbone and the
expert) with a boolean mask, SwiGLU MLP with fused gate/up projection.
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
        if torch.jit.is_tracing():  # the ONNX export traces: no RMSNorm op before opset 23
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float, heads: int,
                  kv_heads: int, dtype: torch.dtype = torch.float32
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``(B, S, heads + kv_heads, head_dim)`` for :func:`apply_rotary`.

    Integer ``positions (B, S)``; queries and keys are rotated together in the
    ``(B, S, head, head_dim)`` layout the fused projection gives. The query rows carry the
    attention scale ``head_dim ** -0.5`` (the rotation is linear, so this equals scaling the
    scores, on far fewer elements) and ``sin`` carries the sign of ``rotate_half`` (the
    Llama/Qwen2 layout, so the expert reads a Hugging Face backbone's cache).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device,
                                             dtype=torch.float32) / head_dim))
    freqs = positions.to(torch.float32)[..., None] * inv_freq  # (B, S, hd/2)
    cos, sin = freqs.cos(), freqs.sin()
    cos, sin = torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)
    scale = torch.ones(heads + kv_heads, 1, device=positions.device)
    scale[:heads] = head_dim ** -0.5
    return (cos[:, :, None] * scale).to(dtype), (sin[:, :, None] * scale).to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x * cos + rotate_half(x) * sin`` with the sign already in ``sin`` (any layout)."""
    return torch.addcmul(x * cos, torch.roll(x, x.shape[-1] // 2, dims=-1), sin)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      mask: torch.Tensor | None, queries: int) -> torch.Tensor:
    """Grouped-query attention without copying keys/values to every query head.

    ``q (B, H_kv, rep * S, hd)`` already scaled (see :func:`rotary_tables`), the ``rep``
    query heads of one key/value head stacked as rows; ``k/v (B, H_kv, L, hd)``; bool mask
    broadcastable to ``(B, 1, rep * S, L)``; ``queries`` is ``S``.
    """
    if q.device.type == "cpu" and queries > 1:
        # Many queries on a CPU: plain bmm-softmax-bmm is faster than the SDPA kernel at
        # our sizes (64 x ~200, measured); one query (decoding) keeps SDPA, faster there.
        b, hkv, rows, hd = q.shape
        n = k.shape[2]
        scores = torch.bmm(q.reshape(b * hkv, rows, hd),
                           k.reshape(b * hkv, n, hd).transpose(1, 2))
        if mask is not None:
            scores = scores.view(b, hkv, rows, n).masked_fill(~mask, float("-inf"))
            scores = scores.view(b * hkv, rows, n)
        out = torch.bmm(scores.softmax(-1), v.reshape(b * hkv, n, hd))
        return out.view(b, hkv, rows, hd)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)


class Attention(nn.Module):
    """Llama-style attention projections shared by the backbone and the expert.

    One fused ``qkv`` Linear (queries, then keys, then values), rotary queries and keys in
    one pass, grouped-query heads (``heads`` a multiple of ``kv_heads``) and the output
    projection ``o`` added to the residual in one ``addmm``. What the keys/values are
    concatenated with (a KV cache, the backbone's cache) is the caller's business.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int) -> None:
        super().__init__()
        if heads % kv_heads:
            raise ValueError(f"heads {heads} must be a multiple of kv_heads {kv_heads}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.rep = heads // kv_heads
        self.qkv = nn.Linear(dim, (heads + 2 * kv_heads) * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, dim, bias=False)

    def project(self, h: torch.Tensor, b: int, s: int, cos: torch.Tensor, sin: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of the normalised ``h (B * S, D)`` (rows sample-major).

        Returns grouped, scaled, rotated queries ``(B, H_kv, rep * S, hd)`` and rotated
        keys and values ``(B, H_kv, S, hd)`` (tables from :func:`rotary_tables`).
        """
        hq, hkv, hd = self.heads, self.kv_heads, self.head_dim
        qkv = torch.mm(h, self.qkv.weight.t()).view(b, s, hq + 2 * hkv, hd)
        qk = apply_rotary(qkv[:, :, : hq + hkv], cos, sin)
        q = (qk[:, :, :hq].reshape(b, s, hkv, self.rep, hd).permute(0, 2, 3, 1, 4)
             .reshape(b, hkv, self.rep * s, hd))
        return q, qk[:, :, hq:].transpose(1, 2), qkv[:, :, hq + hkv:].transpose(1, 2)

    def add_output(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Residual ``x (B * S, D)`` + ``o(out)``, ``out`` the grouped attention output."""
        b, hkv, rows, hd = out.shape
        merged = (out.view(b, hkv, self.rep, rows // self.rep, hd).permute(0, 3, 1, 2, 4)
                  .reshape(x.shape[0], self.heads * hd))
        return torch.addmm(x, merged, self.o.weight.t())


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
           ) -> torch.Tensor:
    """SDPA with equal query and key heads: ``q (B,H,S,hd)``, ``k/v (B,H,L,hd)``, bool mask."""
    if q.device.type == "cpu" and q.shape[2] > 1:  # see grouped_attention
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class SwiGLU(nn.Module):
    """Gated MLP: ``down(silu(gate(x)) * up(x))``, gate and up fused in one Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)  # rows: gate, then up
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP."""
        return self.down(self._gated(self.gate_up(x)))

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``residual + mlp(x)`` for ``(N, D)`` tensors, the add fused into the matmul."""
        gated = self._gated(torch.mm(x, self.gate_up.weight.t()))
        return torch.addmm(residual, gated, self.down.weight.t())

    def _gated(self, gate_up: torch.Tensor) -> torch.Tensor:
        return F.silu(gate_up[..., : self.hidden]) * gate_up[..., self.hidden:]


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
