"""Transformer building blocks shared by the vision encoder, backbone and expert.

Llama-style: RMSNorm, rotary position embedding (the ``rotate_half`` layout that Llama
and Qwen2 use, so our expert can read a Hugging Face backbone's cache), grouped-query
attention (:class:`Attention`: fused q/k/v projection, shared by the backbone and the
expert) with a boolean mask, SwiGLU MLP with fused gate/up projection.
"""

from __future__ import annotations

import math
from typing import NamedTuple

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
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of the last dimension with a learned scale."""
    if torch.jit.is_tracing():  # the ONNX export traces: no RMSNorm op before opset 23
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


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
                      mask: torch.Tensor | None, batch: int, queries: int) -> torch.Tensor:
    """Grouped-query attention without copying keys/values to every query head.

    ``q (B * H_kv, rep * S, hd)`` from :meth:`Attention.project` (already scaled, the
    ``rep`` query heads of one key/value head stacked as rows); ``k/v (B, H_kv, L, hd)``;
    bool mask broadcastable to ``(B, 1, rep * S, L)``; ``batch`` is ``B``, ``queries`` is
    ``S``. Returns ``(B * H_kv, rep * S, hd)``.
    """
    n, hd = k.shape[2], k.shape[3]
    if q.device.type == "cpu" and queries > 1:
        # Many queries on a CPU: plain bmm-softmax-bmm is faster than the SDPA kernel at
        # our sizes (64 x ~200, measured); one query (decoding) keeps SDPA, faster there.
        return attention_bmm(q, k.reshape(q.shape[0], n, hd).transpose(1, 2),
                             v.reshape(q.shape[0], n, hd), mask, batch)
    out = F.scaled_dot_product_attention(q.view(batch, -1, q.shape[1], hd), k, v,
                                         attn_mask=mask, scale=1.0)
    return out.view(q.shape)


def attention_bmm(q: torch.Tensor, k_t: torch.Tensor, v: torch.Tensor,
                  mask: torch.Tensor | None, batch: int) -> torch.Tensor:
    """``softmax(q @ k_t) @ v`` on 3-D ``(B * H_kv, rows, ...)`` operands.

    ``k_t`` is the keys transposed to ``(B * H_kv, hd, L)``; the bool mask is as in
    :func:`grouped_attention`.
    """
    scores = torch.bmm(q, k_t)
    if mask is not None:
        rows, n = scores.shape[1], scores.shape[2]
        scores = scores.view(batch, -1, rows, n).masked_fill(~mask, float("-inf"))
        scores = scores.view(-1, rows, n)
    return torch.bmm(scores.softmax(-1), v)


class Attention(nn.Module):
    """Llama-style attention parameters: one fused ``qkv`` Linear and the output ``o``.

    ``qkv`` rows are the queries, then keys, then values; grouped-query heads (``heads`` a
    multiple of ``kv_heads``). The arithmetic is in :func:`project_qkv` and
    :func:`add_attention_output`.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int) -> None:
        super().__init__()
        if heads % kv_heads:
            raise ValueError(f"heads {heads} must be a multiple of kv_heads {kv_heads}")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.qkv = nn.Linear(dim, (heads + 2 * kv_heads) * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, dim, bias=False)


def project_qkv(h: torch.Tensor, qkv_weight: torch.Tensor, b: int, s: int, heads: int,
                kv_heads: int, cos: torch.Tensor, sin: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of the normalised ``h (B * S, D)`` (rows sample-major).

    One matmul with the fused ``qkv_weight``; queries and keys rotated in one pass (tables
    from :func:`rotary_tables`, the attention scale in the query rows). Returns grouped
    queries ``(B * H_kv, rep * S, hd)`` (the ``rep`` query heads of a key/value head
    stacked as rows, what :func:`grouped_attention` takes) and keys and values
    ``(B, H_kv, S, hd)``.
    """
    rep = heads // kv_heads
    qkv = F.linear(h, qkv_weight).view(b, s, heads + 2 * kv_heads, -1)
    hd = qkv.shape[-1]
    qk = apply_rotary(qkv[:, :, : heads + kv_heads], cos, sin)
    q = (qk[:, :, :heads].view(b, s, kv_heads, rep, hd).permute(0, 2, 3, 1, 4)
         .reshape(b * kv_heads, rep * s, hd))
    return q, qk[:, :, heads:].transpose(1, 2), qkv[:, :, heads + kv_heads:].transpose(1, 2)


def add_attention_output(x: torch.Tensor, out: torch.Tensor, o_weight_t: torch.Tensor,
                         kv_heads: int) -> torch.Tensor:
    """Residual ``x (B * S, D)`` + the output projection of the attention output.

    ``out (B * H_kv, rep * S, hd)`` as :func:`grouped_attention` returns it; the add is
    fused into the matmul.
    """
    n, rows, hd = x.shape[0], out.shape[1], out.shape[2]
    rep = o_weight_t.shape[0] // (kv_heads * hd)
    merged = (out.view(-1, kv_heads, rep, rows // rep, hd).permute(0, 3, 1, 2, 4)
              .reshape(n, o_weight_t.shape[0]))
    return torch.addmm(x, merged, o_weight_t)


def add_swiglu(x: torch.Tensor, h: torch.Tensor, gate_up_weight: torch.Tensor,
               down_weight_t: torch.Tensor) -> torch.Tensor:
    """``x + down(silu(gate(h)) * up(h))`` for ``(N, D)`` tensors, gate/up fused."""
    gate, up = F.linear(h, gate_up_weight).chunk(2, dim=-1)
    return torch.addmm(x, F.silu(gate) * up, down_weight_t)


class LayerWeights(NamedTuple):
    """One :class:`DecoderLayer`'s tensors as :func:`layer_qkv` and :func:`layer_output` read.

    Views of the parameters: gradients and in-place updates go through.
    """

    norm1: torch.Tensor
    qkv: torch.Tensor
    o_t: torch.Tensor
    norm2: torch.Tensor
    gate_up: torch.Tensor
    down_t: torch.Tensor
    eps: float
    heads: int
    kv_heads: int


class DecoderLayer(nn.Module):
    """Pre-norm Llama layer (RMSNorm, attention, RMSNorm, SwiGLU): backbone and expert.

    The computation is split around the attention, whose keys/values each caller
    completes its own way (the backbone's KV cache, the expert's context):
    ``q, k, v = layer_qkv(x, w, ...)`` then ``layer_output(x, attention(q, k, v), w)``
    with ``w = layer.weights()``.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, hidden: int
                 ) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, heads, kv_heads, head_dim)
        self.norm2 = RMSNorm(dim)
        self.mlp = SwiGLU(dim, hidden)

    def weights(self) -> LayerWeights:
        """The tensors of this layer for :func:`layer_qkv` and :func:`layer_output`."""
        attn, mlp = self.attn, self.mlp
        return LayerWeights(self.norm1.weight, attn.qkv.weight, attn.o.weight.t(),
                            self.norm2.weight, mlp.gate_up.weight, mlp.down.weight.t(),
                            self.norm1.eps, attn.heads, attn.kv_heads)


def layer_qkv(x: torch.Tensor, w: LayerWeights, b: int, s: int, cos: torch.Tensor,
              sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First half of a :class:`DecoderLayer` on ``x (B * S, D)``: see :func:`project_qkv`."""
    return project_qkv(rms_norm(x, w.norm1, w.eps), w.qkv, b, s, w.heads, w.kv_heads,
                       cos, sin)


def layer_output(x: torch.Tensor, out: torch.Tensor, w: LayerWeights) -> torch.Tensor:
    """Second half of a :class:`DecoderLayer`: attention output and MLP residuals."""
    x = add_attention_output(x, out, w.o_t, w.kv_heads)
    return add_swiglu(x, rms_norm(x, w.norm2, w.eps), w.gate_up, w.down_t)


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
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)  # rows: gate, then up
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP."""
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


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
