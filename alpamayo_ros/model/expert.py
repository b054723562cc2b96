"""Flow-matching action expert: a narrow transformer over the 64 action tokens.

Like AR1's expert (and pi0's), it has the backbone's attention layout with a smaller
width: each layer projects the action tokens to queries/keys/values with the backbone's
heads and head size, and attends *non-causally* to the concatenation of the backbone's
cached keys/values (prefill + reasoning, read-only: stop-gradient in training) and the
action tokens' own keys/values. It predicts the flow velocity of the normalised controls
(the model's ``normalize_actions``: dataset mean/std per channel) at each step,
conditioned on the flow time ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from alpamayo_ros.model.configuration import ExpertConfig
from alpamayo_ros.model.layers import (
    DecoderLayer,
    LayerWeights,
    RMSNorm,
    attention_bmm,
    grouped_attention,
    layer_output,
    layer_qkv,
    rms_norm,
    rotary_tables,
    sinusoidal_embedding,
)

ACTION_DIM = 2  # (acceleration, curvature) per step


@dataclass
class _KVBuffers:
    """One layer's preallocated keys/values: context then the action tokens."""

    k_new: torch.Tensor  # (B, H_kv, T, hd) view: where the action tokens' keys go
    v_new: torch.Tensor
    k_t: torch.Tensor  # (B * H_kv, hd, L + T) view of the whole key buffer
    v: torch.Tensor  # (B * H_kv, L + T, hd) view of the whole value buffer


@dataclass
class ExpertContext:
    """What the expert needs from the backbone, prepared once per trajectory.

    Keys/values stay at the backbone's key/value heads (grouped-query attention reads
    them as they are); the rotary tables, the mask (``None`` when every key is valid) and,
    for the flow times given to :meth:`ActionExpert.prepare`, the input rows ``step
    embedding + time MLP(t)`` are computed once, not at every Euler step. Without
    autograd, ``buffers`` holds per layer ``(B, H_kv, L + T, hd)`` key and value buffers
    with the context already copied in, so a step writes only the action tokens' part.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    cos: torch.Tensor
    sin: torch.Tensor
    mask: torch.Tensor | None
    time_rows: dict[float, torch.Tensor] = field(default_factory=dict)  # t -> (B*T, D)
    buffers: list[_KVBuffers] | None = None
    weights: list[LayerWeights] = field(default_factory=list)


class ActionExpert(nn.Module):
    """Velocity field ``v(x_t, t | backbone cache)`` over ``num_waypoints`` action tokens."""

    def __init__(self, cfg: ExpertConfig, heads: int, kv_heads: int, head_dim: int,
                 rope_theta: float, num_waypoints: int) -> None:
        super().__init__()
        self.cfg, self.head_dim, self.rope_theta = cfg, head_dim, rope_theta
        self.heads, self.kv_heads = heads, kv_heads
        d = cfg.hidden_size
        self.action_in = nn.Linear(ACTION_DIM, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.step_embedding = nn.Parameter(torch.randn(num_waypoints, d) * 0.02)
        self.layers = nn.ModuleList(
            DecoderLayer(d, heads, kv_heads, head_dim, cfg.intermediate_size)
            for _ in range(cfg.num_layers))
        self.norm = RMSNorm(d)
        self.action_out = nn.Linear(d, ACTION_DIM)
        nn.init.normal_(self.action_out.weight, std=0.02)
        nn.init.zeros_(self.action_out.bias)

    def time_rows(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Input rows ``(N, T, D)`` of flow times ``t (N,)``.

        Step embedding + time MLP + the input projection's bias: the time conditioning is
        an MLP of the flow time, added to every action token.
        """
        temb = self.time_mlp(sinusoidal_embedding(t, self.cfg.hidden_size).to(dtype))
        return (self.step_embedding + self.action_in.bias)[None] + temb[:, None]

    def prepare(self, ctx_keys: list[torch.Tensor], ctx_values: list[torch.Tensor],
                ctx_valid: torch.Tensor, start_positions: torch.Tensor,
                always_mask: bool = False, times: torch.Tensor | None = None
                ) -> ExpertContext:
        """Precompute the per-context parts (see :meth:`forward` for the arguments).

        ``always_mask`` keeps the mask even when every key is valid (for tracing/export).
        ``times`` (1-D): flow times whose input rows are computed now, in one batch (the
        solver's grid, :func:`alpamayo_ros.model.flow_matching.euler_times`); :meth:`run`
        looks them up when every sample of its batch is at one of them.
        """
        b, dev = ctx_valid.shape[0], ctx_valid.device
        steps = self.step_embedding.shape[0]
        positions = start_positions[:, None] + torch.arange(steps, device=dev)[None]
        dtype = ctx_keys[0].dtype
        cos, sin = rotary_tables(positions, self.head_dim, self.rope_theta, self.heads,
                                 self.kv_heads, dtype)
        mask = None
        if always_mask or not bool(ctx_valid.all()):
            ones = torch.ones(b, steps, dtype=torch.bool, device=dev)
            mask = torch.cat([ctx_valid, ones], dim=1)[:, None, None, :]
        rows: dict[float, torch.Tensor] = {}
        if times is not None and times.numel():
            table = self.time_rows(times.to(dev), self.step_embedding.dtype)
            table = table[:, None].expand(-1, b, -1, -1).reshape(len(times), b * steps, -1)
            rows = dict(zip(times.tolist(), table.unbind(0)))
        buffers = None
        if not torch.is_grad_enabled() and not torch.jit.is_tracing():
            buffers = []
            for k, v in zip(ctx_keys, ctx_values):
                n, hd = k.shape[2], k.shape[3]
                kb = k.new_empty(k.shape[0], k.shape[1], n + steps, hd)
                vb = v.new_empty(kb.shape)
                kb[:, :, :n] = k
                vb[:, :, :n] = v
                flat = (-1, n + steps, hd)
                buffers.append(_KVBuffers(kb[:, :, n:], vb[:, :, n:],
                                          kb.view(flat).transpose(1, 2), vb.view(flat)))
        return ExpertContext(list(ctx_keys), list(ctx_values), cos, sin, mask, rows, buffers,
                             [layer.weights() for layer in self.layers])

    def run(self, x_t: torch.Tensor, t: torch.Tensor, ctx: ExpertContext) -> torch.Tensor:
        """Velocity ``(B, T, 2)`` over a prepared context."""
        b, steps, _ = x_t.shape
        d = self.cfg.hidden_size
        rows = self._prepared_rows(t, ctx) if ctx.time_rows else None
        if rows is None or rows.shape[0] != b * steps:
            rows = self.time_rows(t, x_t.dtype)[:, :steps].reshape(b * steps, d)
        h = torch.addmm(rows, x_t.reshape(b * steps, ACTION_DIM), self.action_in.weight.t())
        # The buffers are rewritten in place: only without autograd (a second run would
        # overwrite what the first saved for its backward pass).
        cos, sin, mask = ctx.cos, ctx.sin, ctx.mask
        if (ctx.buffers is not None and not torch.is_grad_enabled()
                and steps == self.step_embedding.shape[0]):
            for w, buf in zip(ctx.weights, ctx.buffers):
                q, k, v = layer_qkv(h, w, b, steps, cos, sin)
                buf.k_new.copy_(k)  # the context is already in the buffers
                buf.v_new.copy_(v)
                h = layer_output(h, attention_bmm(q, buf.k_t, buf.v, mask, b), w)
        else:
            for w, ctx_k, ctx_v in zip(ctx.weights, ctx.keys, ctx.values):
                q, k, v = layer_qkv(h, w, b, steps, cos, sin)
                out = grouped_attention(q, torch.cat([ctx_k, k], dim=2),
                                        torch.cat([ctx_v, v], dim=2), mask, b, steps)
                h = layer_output(h, out, w)
        norm, head = self.norm, self.action_out
        out = torch.addmm(head.bias, rms_norm(h, norm.weight, norm.eps), head.weight.t())
        return out.view(b, steps, ACTION_DIM)

    @staticmethod
    def _prepared_rows(t: torch.Tensor, ctx: ExpertContext) -> torch.Tensor | None:
        """The precomputed input rows when every sample is at one prepared time, else None.

        Looked up on the CPU only: reading ``t`` there costs nothing, on a GPU it would
        stall the stream (the MLP runs instead). Export never prepares times.
        """
        if t.device.type != "cpu":
            return None
        values = t.tolist()
        first = values[0]
        if any(tt != first for tt in values):
            return None
        return ctx.time_rows.get(first)

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
