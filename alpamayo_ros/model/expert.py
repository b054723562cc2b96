"""Flow-matching action expert: a narrow transformer over the 64 action tokens.

Like AR1's expert (and pi0's), it has the backbone's attention layout with a smaller
width: each layer projects the action tokens to queries/keys/values with the backbone's
heads and head size, and attends *non-causally* to the concatenation of the backbone's
cached keys/values (prefill + reasoning, read-only: stop-gradient in training) and the
action tokens' own keys/values. It predicts the flow velocity of the normalised controls
``(a / 9.8, kappa / 0.2)`` at each step, conditioned on the flow time ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from alpamayo_ros.model.configuration import ExpertConfig
from alpamayo_ros.model.layers import (
    RMSNorm,
    SwiGLU,
    apply_rope,
    attend,
    rope_cos_sin,
    sinusoidal_embedding,
)

ACTION_DIM = 2  # (acceleration, curvature) per step


class _ExpertLayer(nn.Module):
    def __init__(self, cfg: ExpertConfig, heads: int, kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        d = cfg.hidden_size
        self.norm1 = RMSNorm(d)
        self.q = nn.Linear(d, heads * head_dim, bias=False)
        self.k = nn.Linear(d, kv_heads * head_dim, bias=False)
        self.v = nn.Linear(d, kv_heads * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, d, bias=False)
        self.norm2 = RMSNorm(d)
        self.mlp = SwiGLU(d, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                ctx_k: torch.Tensor, ctx_v: torch.Tensor, mask: torch.Tensor | None
                ) -> torch.Tensor:
        b, s, _ = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = self.heads // self.kv_heads
        if rep > 1:  # the context keys arrive already expanded to all heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        k = torch.cat([ctx_k, k], dim=2)
        v = torch.cat([ctx_v, v], dim=2)
        out = attend(q, k, v, mask).transpose(1, 2).reshape(b, s, -1)
        x = x + self.o(out)
        return x + self.mlp(self.norm2(x))


@dataclass
class ExpertContext:
    """What the expert needs from the backbone, prepared once per trajectory.

    Keys/values are expanded to all query heads; the rotary tables and the mask (``None``
    when every context key is valid) are computed once, not at every Euler step.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    cos: torch.Tensor
    sin: torch.Tensor
    mask: torch.Tensor | None


class ActionExpert(nn.Module):
    """Velocity field ``v(x_t, t | backbone cache)`` over ``num_waypoints`` action tokens."""

    def __init__(self, cfg: ExpertConfig, heads: int, kv_heads: int, head_dim: int,
                 rope_theta: float, num_waypoints: int) -> None:
        super().__init__()
        self.cfg, self.head_dim, self.rope_theta = cfg, head_dim, rope_theta
        d = cfg.hidden_size
        self.action_in = nn.Linear(ACTION_DIM, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.step_embedding = nn.Parameter(torch.randn(num_waypoints, d) * 0.02)
        self.layers = nn.ModuleList(_ExpertLayer(cfg, heads, kv_heads, head_dim)
                                    for _ in range(cfg.num_layers))
        self.norm = RMSNorm(d)
        self.action_out = nn.Linear(d, ACTION_DIM)
        nn.init.normal_(self.action_out.weight, std=0.02)
        nn.init.zeros_(self.action_out.bias)

    def prepare(self, ctx_keys: list[torch.Tensor], ctx_values: list[torch.Tensor],
                ctx_valid: torch.Tensor, start_positions: torch.Tensor,
                always_mask: bool = False) -> ExpertContext:
        """Precompute the per-context parts (see :meth:`forward` for the arguments).

        ``always_mask`` keeps the mask even when every key is valid (for tracing/export).
        """
        b, dev = ctx_valid.shape[0], ctx_valid.device
        steps = self.step_embedding.shape[0]
        positions = start_positions[:, None] + torch.arange(steps, device=dev)[None]
        cos, sin = rope_cos_sin(positions, self.head_dim, self.rope_theta)
        rep = self.layers[0].heads // self.layers[0].kv_heads
        if rep > 1:
            ctx_keys = [k.repeat_interleave(rep, dim=1) for k in ctx_keys]
            ctx_values = [v.repeat_interleave(rep, dim=1) for v in ctx_values]
        mask = None
        if always_mask or not bool(ctx_valid.all()):
            ones = torch.ones(b, steps, dtype=torch.bool, device=dev)
            mask = torch.cat([ctx_valid, ones], dim=1)[:, None, None, :]
        return ExpertContext(ctx_keys, ctx_values, cos, sin, mask)

    def run(self, x_t: torch.Tensor, t: torch.Tensor, ctx: ExpertContext) -> torch.Tensor:
        """Velocity ``(B, T, 2)`` over a prepared context."""
        b, steps, _ = x_t.shape
        d = self.cfg.hidden_size
        # Time conditioning: an MLP of the flow time, added to every action token (one
        # row per sample, not per token).
        temb = self.time_mlp(sinusoidal_embedding(t, d).to(x_t.dtype))
        h = self.action_in(x_t) + self.step_embedding[None, :steps] + temb[:, None]
        for layer, k, v in zip(self.layers, ctx.keys, ctx.values):
            h = layer(h, ctx.cos, ctx.sin, k, v, ctx.mask)
        return self.action_out(self.norm(h))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, ctx_keys: list[torch.Tensor],
                ctx_values: list[torch.Tensor], ctx_valid: torch.Tensor,
                start_positions: torch.Tensor) -> torch.Tensor:
        """Velocity ``(B, T, 2)``.

        ``x_t (B, T, 2)`` normalised controls on the path, ``t (B,)``; ``ctx_keys`` /
        ``ctx_values``: one ``(B, H_kv, L, head_dim)`` per expert layer (the backbone's
        cache of the mapped layer); ``ctx_valid (B, L)`` bool; ``start_positions (B,)``
        the rotary position of the first action token.
        """
        return self.run(x_t, t, self.prepare(ctx_keys, ctx_values, ctx_valid,
                                             start_positions))
