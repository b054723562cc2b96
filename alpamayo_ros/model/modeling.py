"""The policy network: vision tokenizer + decoder backbone + flow-matching action expert.

Sequence (one id space, see :mod:`alpamayo_ros.model.tokenizer`)::

    <bos> [vision: frames x tokens_per_timestep] [ego history: 16] <nav> nav... </nav>
    <coc> reasoning... </coc> <traj> a_0 k_0 ... a_63 k_63 </traj> <eos>

Everything up to ``<coc>`` is the prefill. The backbone then generates the reasoning
autoregressively with its KV cache until ``</coc>``. The trajectory comes either from
the flow-matching expert, which attends to that cache (prefill + reasoning), or by
autoregressive decoding of the 128 trajectory tokens. Trajectory-only mode feeds
``</coc>`` right after the prefill (empty reasoning).

Padding (navigation text shorter than its budget, samples of a batch that finished their
reasoning early) is masked out as keys and does not advance rotary positions, so a
sample's outputs do not depend on what else is in its batch.

Losses for training (the loops live in :mod:`alpamayo_ros.training`):
:meth:`AlpamayoModel.compute_losses` returns per-sample losses (:class:`Losses`): the
reasoning cross-entropy, the trajectory-token cross-entropy, the flow-matching loss
(expert over the stop-gradient backbone cache) and two auxiliary losses that make the
model read the scene: a perception head on the vision tokens predicts the simulator's
privileged state (:mod:`alpamayo_ros.perception`), and decision heads on the prefix
predict the (longitudinal, lateral) decision class. The flow matches actions normalised
by the training data's statistics (``action_mean``, ``action_std``: buffers saved with the
weights), so its targets have unit scale like its noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alpamayo_ros.model import flow_matching as fm
from alpamayo_ros.model.backbone import Backbone, build_backbone
from alpamayo_ros.model.configuration import PolicyConfig
from alpamayo_ros.model.expert import ActionExpert
from alpamayo_ros.model.processor import (
    CONTROL_SCALE,
    EGO_FEATURES,
    ModelInputs,
    denormalize_controls,
    normalize_controls,
)
from alpamayo_ros.model.tokenizer import CocTokenizer
from alpamayo_ros.model.vision import VisionTokenizer
from alpamayo_ros.perception import BINARY_MASK
from alpamayo_ros.taxonomy import LATERAL_CLASSES, LONGITUDINAL_CLASSES
from alpamayo_ros.unicycle import MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M

LOSS_NAMES = ("reasoning", "trajectory_tokens", "flow", "perception", "decision")
PERCEPTION_REAL_BETA = 0.05  # smooth-L1 transition of the scaled real targets


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the model needs (from the tokenizer; saved in config.json)."""

    pad: int
    bos: int
    eos: int
    nav_start: int
    nav_end: int
    coc_start: int
    coc_end: int
    traj_start: int
    traj_end: int
    accel_offset: int
    curv_offset: int
    bins: int

    @classmethod
    def from_tokenizer(cls, tok: CocTokenizer) -> SpecialIds:
        """Read the ids from a tokenizer."""
        return cls(tok.pad_id, tok.bos_id, tok.eos_id, tok.nav_start_id, tok.nav_end_id,
                   tok.coc_start_id, tok.coc_end_id, tok.traj_start_id, tok.traj_end_id,
                   tok.accel_offset, tok.curv_offset, tok.trajectory_bins)


@dataclass
class Context:
    """Backbone state: the cache, which keys are valid, where each sample's next token goes.

    The cache object is shared and grows in place; :meth:`AlpamayoModel.restore` rolls
    it back to a recorded length.
    """

    cache: Any
    key_valid: torch.Tensor  # bool (B, L)
    next_position: torch.Tensor  # long (B,): valid tokens so far (rotary position)
    logits: torch.Tensor  # (B, V) next-token logits after the last valid token

    @property
    def length(self) -> int:
        """Cached positions (valid or not)."""
        return self.key_valid.shape[1]


@dataclass
class Losses:
    """Per-sample training losses of one batch.

    ``per_sample[name]`` is ``(B,)`` and ``mask[name]`` says which samples have that target
    (e.g. a CoC text). A loss is a masked mean over samples; :meth:`total` takes the counts
    to divide by, so data-parallel ranks can pass the all-reduced global counts and match
    one process with the whole batch.
    """

    per_sample: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor]

    def count(self, name: str) -> torch.Tensor:
        """Samples that have the target ``name`` (float scalar)."""
        return self.mask[name].float().sum()

    def mean(self, name: str) -> torch.Tensor:
        """Masked mean of one loss over the batch (0, still in the graph, when empty)."""
        m = self.mask[name].to(self.per_sample[name].dtype)
        return (self.per_sample[name] * m).sum() / m.sum().clamp_min(1.0)

    @property
    def reasoning_ce(self) -> torch.Tensor:
        """Reasoning cross-entropy (per-sample token mean, averaged over samples with text)."""
        return self.mean("reasoning")

    @property
    def trajectory_ce(self) -> torch.Tensor:
        """Cross-entropy of the 128 trajectory tokens."""
        return self.mean("trajectory_tokens")

    @property
    def flow_matching(self) -> torch.Tensor:
        """Flow-matching MSE of the expert."""
        return self.mean("flow")

    def total(self, weights: dict[str, float] | None = None,
              counts: dict[str, float | torch.Tensor] | None = None) -> torch.Tensor:
        """``sum_name weight * sum(per_sample * mask) / counts[name]``.

        ``weights`` default to 1 for every loss; ``counts`` default to the local mask sums.
        """
        weights = {name: 1.0 for name in LOSS_NAMES} if weights is None else weights
        unknown = set(weights) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"unknown loss names {sorted(unknown)}; choose from {LOSS_NAMES}")
        total = None
        for name, weight in weights.items():
            if weight == 0.0:
                continue
            m = self.mask[name].to(self.per_sample[name].dtype)
            count = self.count(name) if counts is None else counts[name]
            if not isinstance(count, torch.Tensor):
                count = torch.tensor(float(count))
            term = weight * (self.per_sample[name] * m).sum() / count.clamp_min(1.0)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("every loss weight is 0")
        return total

    def scalars(self) -> dict[str, float]:
        """Masked means as floats (for logging)."""
        return {name: float(self.mean(name).detach()) for name in self.per_sample}


class PerceptionHead(nn.Module):
    """Pooling over the vision tokens, then a read-out to the perception targets.

    ``pooling="attention"``: ``queries`` learned queries, then an MLP; ``"max"``: a max
    over the tokens, then a linear layer (the session 10 probe: attention pooling averaged
    a small object away, a max kept it); ``"max_mean"``: the max and the mean over the
    tokens side by side, then a linear layer (the mean passes the loss's gradient to every
    token, so a quantity spread over the image, the lane lines' position and direction,
    can be written into the tokens, not only into each feature's strongest one).
    """

    def __init__(self, dim: int, out_dim: int, queries: int, pooling: str = "attention"
                 ) -> None:
        super().__init__()
        self.pooling = pooling
        if pooling in ("max", "max_mean"):  # a linear read-out of the pooled tokens (an
            # MLP or a LayerNorm on the max stayed at the majority answer in the probe:
            # tools/vision_probe.py, session 11)
            self.mlp = nn.Linear(dim * (2 if pooling == "max_mean" else 1), out_dim)
            return
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(queries * dim, 2 * dim), nn.SiLU(),
                                 nn.Linear(2 * dim, out_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` vision tokens -> ``(B, out_dim)`` predictions (logits / values)."""
        if self.pooling == "max":
            return self.mlp(tokens.amax(dim=1))
        if self.pooling == "max_mean":
            return self.mlp(torch.cat([tokens.amax(dim=1), tokens.mean(dim=1)], dim=-1))
        x = self.norm(tokens)
        att = torch.softmax(torch.einsum("qd,bnd->bqn", self.queries, x)
                            / x.shape[-1] ** 0.5, dim=-1)
        return self.mlp(torch.einsum("bqn,bnd->bqd", att, x).flatten(1))


def perception_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    field_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample perception loss ``(B,)``: logistic for binary fields, smooth-L1 for real.

    Averaged over each sample's known entries (:data:`alpamayo_ros.perception.
    BINARY_MASK` says which field is which), weighted by ``field_weights`` ``(D,)`` when
    given (a weighted mean: :func:`alpamayo_ros.perception.field_weight_vector`).
    """
    binary = torch.tensor(BINARY_MASK[: pred.shape[1]], device=pred.device)
    bce = F.binary_cross_entropy_with_logits(pred, target.clamp(0.0, 1.0), reduction="none")
    reg = F.smooth_l1_loss(pred, target, reduction="none", beta=PERCEPTION_REAL_BETA)
    per_entry = torch.where(binary[None], bce, reg)
    m = mask.to(pred.dtype)
    if field_weights is None:
        return (per_entry * m).sum(1) / m.sum(1).clamp_min(1.0)
    m = m * field_weights.to(pred)[None]
    return (per_entry * m).sum(1) / m.sum(1).clamp_min(1e-9)


class AlpamayoModel(nn.Module):
    """Vision tokenizer, ego encoder, backbone (own or HF) and action expert."""

    def __init__(self, config: PolicyConfig, vocab_size: int, ids: SpecialIds) -> None:
        super().__init__()
        self.config, self.ids, self.vocab_size = config, ids, vocab_size
        self.backbone: Backbone = build_backbone(config.backbone, vocab_size)
        config.validate_layer_map(self.backbone.num_layers)
        if not config.expert.layer_map:
            from alpamayo_ros.model.configuration import default_layer_map

            config.expert.layer_map = default_layer_map(config.expert.num_layers,
                                                        self.backbone.num_layers)
        d = self.backbone.hidden_size
        self.vision = VisionTokenizer(config.vision, d)
        self.ego_in = nn.Linear(EGO_FEATURES, d)
        self.ego_step = nn.Parameter(torch.randn(config.ego_history_steps, d) * 0.02)
        self.expert = ActionExpert(config.expert, self.backbone.num_heads,
                                   self.backbone.num_kv_heads, self.backbone.head_dim,
                                   self.backbone.rope_theta, config.num_waypoints)
        # Flow-matching action normalisation (set from training data; saved with weights).
        self.register_buffer("action_mean", torch.zeros(2))
        self.register_buffer("action_std", torch.tensor(CONTROL_SCALE, dtype=torch.float32))
        self.perception_head = (PerceptionHead(d, config.perception_dim,
                                               config.perception_queries,
                                               config.perception_pooling)
                                if config.perception_dim else None)
        self.decision_head = (nn.Linear(d, len(LONGITUDINAL_CLASSES) + len(LATERAL_CLASSES))
                              if config.decision_heads else None)

    # --- action normalisation ---------------------------------------------------------
    def set_action_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Normalise flow-matching actions with per-channel ``mean``/``std`` (each ``(2,)``)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != (2,) or std.shape != (2,):
            raise ValueError(f"action stats must have shape (2,), got {tuple(mean.shape)} "
                             f"and {tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError(f"action stats must be finite with std > 0, got mean "
                             f"{mean.tolist()} std {std.tolist()}")
        self.action_mean.copy_(mean)
        self.action_std.copy_(std)

    def normalize_actions(self, controls: torch.Tensor) -> torch.Tensor:
        """Controls ``(..., 2)`` (m/s^2, 1/m) -> the expert's unit-scale action space."""
        return (controls - self.action_mean) / self.action_std

    def denormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize_actions`."""
        return actions * self.action_std + self.action_mean

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.parameters()).device

    # --- prefill -----------------------------------------------------------------------
    def encode_vision(self, inputs: ModelInputs) -> torch.Tensor:
        """Vision tokens ``(B, frames * tokens_per_timestep, D)``."""
        return self.vision(inputs.images, inputs.camera_valid, inputs.intrinsics,
                           inputs.camera_to_ego)

    def prefix(self, inputs: ModelInputs, vision_tokens: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefill embeddings ``(B, P, D)`` and their validity ``(B, P)``."""
        b, dev, ids = inputs.batch_size, inputs.images.device, self.ids
        vis = self.encode_vision(inputs) if vision_tokens is None else vision_tokens
        ego = self.ego_in(inputs.ego_history) + self.ego_step[None]

        def tok(i: int) -> torch.Tensor:
            return self.backbone.embed(torch.full((b, 1), i, dtype=torch.long, device=dev))

        parts = [tok(ids.bos), vis.to(ego.dtype), ego, tok(ids.nav_start),
                 self.backbone.embed(inputs.nav_ids), tok(ids.nav_end), tok(ids.coc_start)]
        def ones(n: int) -> torch.Tensor:
            return torch.ones(b, n, dtype=torch.bool, device=dev)

        valid = [ones(1 + vis.shape[1] + ego.shape[1] + 1), inputs.nav_valid, ones(2)]
        return torch.cat(parts, dim=1), torch.cat(valid, dim=1)

    def encode_prefix(self, inputs: ModelInputs, vision_tokens: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """The backbone over the prefix: ``(hidden, cache, valid)``; it ends with ``<coc>``.

        ``hidden[:, -1]`` is what the decision heads read (``compute_losses``).
        """
        embeds, valid = self.prefix(inputs, vision_tokens)
        positions = (valid.long().cumsum(1) - 1).clamp_min(0)
        hidden, cache = self.backbone(embeds, positions, valid, None)
        return hidden, cache, valid

    def prefill(self, inputs: ModelInputs, vision_tokens: torch.Tensor | None = None
                ) -> Context:
        """Run the prefix through the backbone; the context ends after ``<coc>``."""
        hidden, cache, valid = self.encode_prefix(inputs, vision_tokens)
        ctx = Context(cache, valid, valid.long().sum(1), self.backbone.logits(hidden[:, -1]))
        return self.compact(ctx)

    def compact(self, ctx: Context) -> Context:
        """Drop cache positions that no sample attends to (padding in every row).

        Exact: rotary positions are already in the cached keys. With one sample (the
        robot's case) every remaining key is valid and attention needs no mask.
        """
        keep = ctx.key_valid.any(0)
        if bool(keep.all()):
            return ctx
        index = keep.nonzero()[:, 0]
        self.backbone.select_cache(ctx.cache, index)
        return Context(ctx.cache, ctx.key_valid[:, index], ctx.next_position, ctx.logits)

    def step(self, ctx: Context, ids: torch.Tensor, valid: torch.Tensor | None = None
             ) -> Context:
        """Feed one token per sample (``valid`` False: a masked pad); returns the new context."""
        valid = torch.ones_like(ids, dtype=torch.bool) if valid is None else valid
        key_valid = torch.cat([ctx.key_valid, valid[:, None]], dim=1)
        hidden, cache = self.backbone(self.backbone.embed(ids[:, None]),
                                      ctx.next_position[:, None], key_valid, ctx.cache)
        logits = self.backbone.logits(hidden[:, -1])
        # A pad step keeps the logits of the last valid token.
        logits = torch.where(valid[:, None], logits, ctx.logits)
        return Context(cache, key_valid, ctx.next_position + valid.long(), logits)

    def restore(self, ctx: Context) -> Context:
        """Roll the shared cache back to ``ctx`` (undo later steps)."""
        self.backbone.crop_cache(ctx.cache, ctx.length)
        return ctx

    # --- reasoning ---------------------------------------------------------------------
    def _pick(self, logits: torch.Tensor, allowed: torch.Tensor, temperature: float,
              generator: torch.Generator | None) -> torch.Tensor:
        logits = logits.masked_fill(~allowed, float("-inf"))
        if temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    def generate_reasoning(self, ctx: Context, max_tokens: int, temperature: float = 0.0,
                           generator: torch.Generator | None = None,
                           draft: Sequence[int] | None = None,
                           stats: dict[str, int] | None = None
                           ) -> tuple[torch.Tensor, Context]:
        """Generate CoC text tokens until ``</coc>`` (fed into the cache) or ``max_tokens``.

        Returns the text ids ``(B, n)`` (pad after a sample's end) and the context after
        ``</coc>``. Only text tokens and ``</coc>`` can be generated here.

        ``draft``: text ids expected to recur (the previous plan's reasoning; ``</coc>``
        is appended to them), for one sample decoded greedily (``temperature`` 0): the
        tokens are then verified in batches (:meth:`_generate_with_draft`, speculative
        decoding with the draft as the proposal), which keeps the greedy output and needs
        one backbone pass per mismatch instead of one per token. Ignored for batches and
        sampling. ``stats`` (a dict) receives ``passes`` (backbone passes) and
        ``draft_accepted`` (tokens taken from the draft).
        """
        b, dev, ids = ctx.logits.shape[0], ctx.logits.device, self.ids
        allowed = torch.zeros(ctx.logits.shape[-1], dtype=torch.bool, device=dev)
        allowed[: ids.pad] = True  # BPE text ids come first in the vocabulary
        allowed[ids.coc_end] = True
        if draft is not None and temperature <= 0 and b == 1 and bool(ctx.key_valid.all()):
            proposal = [int(i) for i in draft if int(i) != ids.pad] + [ids.coc_end]
            return self._generate_with_draft(ctx, max_tokens, allowed, proposal, stats)
        if stats is not None:
            stats.update(passes=0, draft_accepted=0)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        out = []
        for _ in range(max_tokens):
            nxt = self._pick(ctx.logits, allowed, temperature, generator)
            nxt = torch.where(done, torch.full_like(nxt, ids.pad), nxt)
            ctx = self.step(ctx, nxt, ~done)
            if stats is not None:
                stats["passes"] += 1
            done = done | (nxt == ids.coc_end)
            out.append(torch.where(nxt == ids.coc_end, torch.full_like(nxt, ids.pad), nxt))
            if bool(done.all()):
                break
        if not bool(done.all()):  # close the reasoning of samples that hit the budget
            ctx = self.step(ctx, torch.full((b,), ids.coc_end, device=dev), ~done)
            if stats is not None:
                stats["passes"] += 1
        text = torch.stack(out, 1) if out else torch.empty(b, 0, dtype=torch.long, device=dev)
        return text, self.compact(ctx)

    def feed(self, ctx: Context, ids: torch.Tensor) -> tuple[Context, torch.Tensor]:
        """Feed the valid tokens ``ids (B, S)`` in one backbone pass.

        Returns the context after them and the logits ``(B, S, V)`` after each token (row
        ``j`` predicts the token after ``ids[:, j]``). With ``S = 1`` this is :meth:`step`.
        """
        b, s = ids.shape
        valid = torch.ones(b, s, dtype=torch.bool, device=ids.device)
        key_valid = torch.cat([ctx.key_valid, valid], dim=1)
        positions = ctx.next_position[:, None] + torch.arange(s, device=ids.device)[None]
        hidden, cache = self.backbone(self.backbone.embed(ids), positions, key_valid,
                                      ctx.cache)
        logits = self.backbone.logits(hidden)
        return Context(cache, key_valid, ctx.next_position + s, logits[:, -1]), logits

    def truncate(self, ctx: Context, length: int, logits: torch.Tensor) -> Context:
        """Keep the first ``length`` cached positions (every one valid); ``logits`` after them."""
        removed = ctx.length - length
        if removed <= 0:
            return Context(ctx.cache, ctx.key_valid, ctx.next_position, logits)
        self.backbone.crop_cache(ctx.cache, length)
        return Context(ctx.cache, ctx.key_valid[:, :length], ctx.next_position - removed,
                       logits)

    def _generate_with_draft(self, ctx: Context, max_tokens: int, allowed: torch.Tensor,
                             draft: list[int], stats: dict[str, int] | None
                             ) -> tuple[torch.Tensor, Context]:
        """Greedy reasoning of one sample, verifying proposals from ``draft`` in batches.

        Each pass feeds the next token (the greedy pick from the current logits) followed
        by the draft's continuation after the text so far (:func:`draft_continuation`) and
        keeps the proposal up to its first token that differs from the greedy pick at
        that position; the rest is cropped from the cache. The tokens (and the budget
        rule: at most ``max_tokens`` text tokens, then ``</coc>``) are those of the
        token-by-token loop; the kept keys/values come from a batched pass and so can
        differ from it by float rounding (test/test_model_fast_decode.py compares both).
        """
        ids, dev = self.ids, ctx.logits.device
        text: list[int] = []
        passes = accepted_from_draft = 0
        closed_by_model = False
        while True:
            if len(text) >= max_tokens:  # budget reached: close the reasoning
                proposal = [ids.coc_end]
            else:
                first = int(self._pick(ctx.logits, allowed, 0.0, None)[0])
                proposal = [first]
                if first != ids.coc_end:
                    room = max_tokens - len(text) - 1
                    for tok in draft_continuation(draft, text + [first]):
                        if tok == ids.coc_end:
                            proposal.append(tok)
                            break
                        if room <= 0 or not 0 <= tok < ids.pad:
                            break
                        proposal.append(tok)
                        room -= 1
            start = ctx.length
            ctx, rows = self.feed(ctx, torch.tensor([proposal], device=dev))
            passes += 1
            n = 1
            if len(proposal) > 1:
                picks = self._pick(rows[0, :-1], allowed, 0.0, None).tolist()
                while n < len(proposal) and (
                        picks[n - 1] == proposal[n]
                        # after the budget's last text token </coc> is forced, not picked
                        or (proposal[n] == ids.coc_end and len(text) + n >= max_tokens)):
                    n += 1
                accepted_from_draft += n - 1
            if n < len(proposal):
                ctx = self.truncate(ctx, start + n, rows[:, n - 1])
            for tok in proposal[:n]:
                if tok == ids.coc_end:
                    closed_by_model = len(text) < max_tokens
                    break
                text.append(tok)
            if proposal[n - 1] == ids.coc_end:
                break
        if stats is not None:
            stats.update(passes=passes, draft_accepted=accepted_from_draft)
        row = text + [ids.pad] if closed_by_model else text
        out = torch.tensor([row], dtype=torch.long, device=dev).view(1, len(row))
        return out, ctx

    def skip_reasoning(self, ctx: Context) -> Context:
        """Trajectory-only mode: close the (empty) reasoning right after the prefill."""
        b = ctx.logits.shape[0]
        return self.step(ctx, torch.full((b,), self.ids.coc_end, device=ctx.logits.device))

    # --- trajectory --------------------------------------------------------------------
    def expert_context(self, ctx: Context, repeats: int = 1
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor,
                                  torch.Tensor]:
        """Keys/values of the mapped backbone layers, validity and start positions."""
        keys, values = [], []
        for layer in self.config.expert.layer_map:
            k, v = self.backbone.layer_kv(ctx.cache, layer)
            k, v = k[:, :, : ctx.length], v[:, :, : ctx.length]
            keys.append(k.repeat_interleave(repeats, 0) if repeats > 1 else k)
            values.append(v.repeat_interleave(repeats, 0) if repeats > 1 else v)
        valid = ctx.key_valid.repeat_interleave(repeats, 0)
        start = self.action_start(ctx.next_position).repeat_interleave(repeats, 0)
        return keys, values, valid, start

    def action_start(self, next_position: torch.Tensor) -> torch.Tensor:
        """Rotary position of the first action token per sample (``ExpertConfig.action_position``).

        ``next_position (B,)``: the position after each sample's context (its length).
        """
        if self.config.expert.action_position == "fixed":
            return torch.full_like(next_position, self.config.action_start_position)
        return next_position

    def velocity_fn(self, ctx: Context, repeats: int = 1, steps: int | None = None
                    ) -> fm.VelocityFn:
        """The expert as a ``(x_t, t) -> v`` function over ``ctx`` (for the solver).

        With ``steps``, the time conditioning of the solver's ``steps`` times
        (:func:`fm.euler_times`) is computed once here, in one batch.
        """
        times = None if steps is None else fm.euler_times(steps, device=ctx.logits.device)
        prepared = self.expert.prepare(*self.expert_context(ctx, repeats), times=times)
        run = self.expert.run

        def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return run(x_t, t, prepared)

        return fn

    def flow_trajectory(self, ctx: Context, steps: int, num_samples: int = 1,
                        noise: torch.Tensor | None = None,
                        generator: torch.Generator | None = None,
                        noise_scale: float = 1.0) -> torch.Tensor:
        """Controls ``(B, K, 64, 2)`` (m/s^2, 1/m) by Euler-integrating the expert's flow.

        ``noise_scale`` multiplies drawn noise (not a given ``noise``).
        """
        b = ctx.logits.shape[0]
        shape = (b * num_samples, self.config.num_waypoints, 2)
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=ctx.logits.device)
            if noise_scale != 1.0:
                noise = noise * noise_scale
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        fn = self.velocity_fn(ctx, num_samples, steps=steps)
        actions = fm.euler_solve(fn, noise.float(), steps)
        return clamp_controls(self.denormalize_actions(actions)).view(b, num_samples, -1, 2)

    def decode_trajectory_tokens(self, ctx: Context, temperature: float = 0.0,
                                 generator: torch.Generator | None = None,
                                 restore: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Autoregressive decoding of the 128 trajectory tokens (AR1's slow path).

        Feeds ``<traj>`` then picks each token among the acceleration bins (even steps) or
        curvature bins (odd steps). Returns controls ``(B, 64, 2)`` (bin centres) and the
        ids ``(B, 128)``; with ``restore`` the cache is rolled back to ``ctx`` afterwards.
        """
        b, dev, ids = ctx.logits.shape[0], ctx.logits.device, self.ids
        vocab = ctx.logits.shape[-1]
        allow_a = torch.zeros(vocab, dtype=torch.bool, device=dev)
        allow_a[ids.accel_offset: ids.accel_offset + ids.bins] = True
        allow_k = torch.zeros(vocab, dtype=torch.bool, device=dev)
        allow_k[ids.curv_offset: ids.curv_offset + ids.bins] = True
        cur = self.step(ctx, torch.full((b,), ids.traj_start, device=dev))
        out = []
        for i in range(2 * self.config.num_waypoints):
            nxt = self._pick(cur.logits, allow_k if i % 2 else allow_a, temperature, generator)
            out.append(nxt)
            if i + 1 < 2 * self.config.num_waypoints:
                cur = self.step(cur, nxt)
        if restore:
            self.restore(ctx)
        tokens = torch.stack(out, 1)
        return self.tokens_to_controls(tokens), tokens

    def tokens_to_controls(self, tokens: torch.Tensor) -> torch.Tensor:
        """Trajectory ids ``(B, 128)`` -> bin-centre controls ``(B, 64, 2)``."""
        pairs = tokens.view(tokens.shape[0], -1, 2)
        offsets = pairs.new_tensor([self.ids.accel_offset, self.ids.curv_offset])
        unit = ((pairs - offsets).float() + 0.5) / self.ids.bins * 2.0 - 1.0
        return denormalize_controls(unit)

    def controls_to_tokens(self, controls: torch.Tensor) -> torch.Tensor:
        """Controls ``(B, 64, 2)`` -> trajectory ids ``(B, 128)`` (uniform bins)."""
        unit = (normalize_controls(controls).clamp(-1.0, 1.0) + 1.0) / 2.0
        bins = (unit * self.ids.bins).long().clamp(max=self.ids.bins - 1)
        ids = bins + bins.new_tensor([self.ids.accel_offset, self.ids.curv_offset])
        return ids.reshape(controls.shape[0], -1)

    # --- training losses ---------------------------------------------------------------
    def compute_losses(self, inputs: ModelInputs, generator: torch.Generator | None = None,
                       trajectory_tokens: bool = True,
                       decision_token_weight: float = 1.0,
                       perception_field_weights: torch.Tensor | None = None) -> Losses:
        """Teacher-forced per-sample losses of one batch with targets.

        One backbone pass over ``prefix, reasoning, </coc>, <traj>, 128 trajectory
        tokens, </traj>, <eos>`` (packed per sample, right-padded) gives the reasoning CE
        (text + ``</coc>``, a per-sample token mean; samples with no CoC text are masked
        out) and the trajectory-token CE. The expert then attends to the *detached* cache
        up to ``</coc>`` and is trained with the flow-matching loss (times from the
        shifted Beta) on normalised actions. The perception head reads the vision tokens,
        the decision heads the hidden state at ``<coc>`` (the last prefill position, the
        one reasoning starts from). ``trajectory_tokens=False`` leaves the 128 trajectory
        tokens out of the sequence (about half the backbone's work; their loss is then
        masked out): for stages that train the trajectory through the expert only.
        ``decision_token_weight`` weighs the reasoning tokens inside a decision phrase
        (``inputs.reasoning_decision``) that much more in each sample's reasoning mean (1:
        every token alike): the few tokens that name the decision, where the texts of a
        scene branch, against the many that repeat the cause and its numbers.
        ``perception_field_weights`` ``(perception_dim,)`` weighs the perception fields in
        each sample's perception mean (None: all alike). Samples flagged
        ``inputs.perception_only`` count in the perception loss only.
        """
        if inputs.controls is None or inputs.reasoning_ids is None:
            raise ValueError("compute_losses needs targets (controls and reasoning ids)")
        b, dev, ids = inputs.batch_size, inputs.images.device, self.ids
        vision_tokens = self.encode_vision(inputs)
        embeds, pvalid = self.prefix(inputs, vision_tokens)
        p = embeds.shape[1]
        traj = self.controls_to_tokens(inputs.controls)
        if not trajectory_tokens:
            traj = traj[:, :0]
        n_reason = inputs.reasoning_valid.long().sum(1)
        has_text = inputs.reasoning_valid.any(1)
        suffix_len = int(n_reason.max()) + 2 + traj.shape[1] + 2
        seq = torch.full((b, suffix_len), ids.pad, dtype=torch.long, device=dev)
        for i in range(b):  # pack: reasoning, </coc>, <traj>, trajectory, </traj>, <eos>
            r = inputs.reasoning_ids[i][inputs.reasoning_valid[i]]
            row = torch.cat([r, r.new_tensor([ids.coc_end, ids.traj_start]), traj[i],
                             r.new_tensor([ids.traj_end, ids.eos])])
            seq[i, : row.numel()] = row
        svalid = seq != ids.pad
        valid = torch.cat([pvalid, svalid], dim=1)
        positions = (valid.long().cumsum(1) - 1).clamp_min(0)
        hidden, cache = self.backbone(torch.cat([embeds, self.backbone.embed(seq)], dim=1),
                                      positions, valid, None)
        logits = self.backbone.logits(hidden[:, p - 1: -1])  # predicts seq[:, j]
        col = torch.arange(suffix_len, device=dev)[None]
        in_reasoning = ((col <= n_reason[:, None]) & has_text[:, None]).float()
        if decision_token_weight != 1.0 and inputs.reasoning_decision is not None:
            # reasoning tokens are packed from position 0 (right padding): same columns
            width = min(suffix_len, inputs.reasoning_decision.shape[1])
            phrase = torch.zeros_like(in_reasoning)
            phrase[:, :width] = inputs.reasoning_decision[:, :width].float()
            in_reasoning = in_reasoning * (1.0 + (decision_token_weight - 1.0) * phrase)
        traj_start = n_reason[:, None] + 2
        in_traj = ((col >= traj_start) & (col < traj_start + traj.shape[1])).float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), seq.reshape(-1),
                             reduction="none").view(b, suffix_len)
        per_sample = {
            "reasoning": (ce * in_reasoning).sum(1) / in_reasoning.sum(1).clamp_min(1.0),
            "trajectory_tokens": (ce * in_traj).sum(1) / in_traj.sum(1).clamp_min(1.0),
        }
        ones = torch.ones(b, dtype=torch.bool, device=dev)
        # Perception-only samples (signal counterfactuals) train the perception head alone.
        policy = ones if inputs.perception_only is None else ~inputs.perception_only
        mask = {"reasoning": has_text & policy,
                "trajectory_tokens": policy if trajectory_tokens else ~ones, "flow": policy}

        # Flow matching: the expert reads the backbone cache through </coc>, detached.
        ctx_end = p + n_reason + 1  # exclusive
        ctx_valid = valid & (torch.arange(valid.shape[1], device=dev)[None] < ctx_end[:, None])
        keys, values = [], []
        for layer in self.config.expert.layer_map:
            k, v = self.backbone.layer_kv(cache, layer)
            keys.append(k.detach())
            values.append(v.detach())
        start = self.action_start(ctx_valid.long().sum(1))
        actions = self.normalize_actions(inputs.controls.float())
        t = fm.sample_time(b, self.config.expert.time_beta_alpha,
                           self.config.expert.time_beta_beta, self.config.expert.time_shift,
                           generator, dev)
        noise = torch.randn(actions.shape, generator=generator).to(dev)
        per_sample["flow"] = fm.flow_matching_errors(
            lambda x, tt: self.expert(x, tt, keys, values, ctx_valid, start), actions, t, noise)

        zero = vision_tokens.sum() * 0.0  # keeps every head in the graph (DDP)
        if self.perception_head is not None and inputs.perception is not None:
            pred = self.perception_head(vision_tokens)
            per_sample["perception"] = perception_loss(pred, inputs.perception,
                                                       inputs.perception_mask,
                                                       perception_field_weights)
            mask["perception"] = inputs.perception_mask.any(1)
        else:
            per_sample["perception"] = zero.expand(b)
            mask["perception"] = ~ones
        if self.decision_head is not None and inputs.decision_ids is not None:
            dlogits = self.decision_head(hidden[:, p - 1]).float()
            n_lon = len(LONGITUDINAL_CLASSES)
            targets = inputs.decision_ids
            lon = F.cross_entropy(dlogits[:, :n_lon], targets[:, 0].clamp_min(0),
                                  reduction="none")
            lat = F.cross_entropy(dlogits[:, n_lon:], targets[:, 1].clamp_min(0),
                                  reduction="none")
            known = (targets >= 0).float()
            per_sample["decision"] = ((lon * known[:, 0] + lat * known[:, 1])
                                      / known.sum(1).clamp_min(1.0))
            mask["decision"] = (known.sum(1) > 0) & policy
        else:
            per_sample["decision"] = zero.expand(b)
            mask["decision"] = ~ones
        return Losses(per_sample, mask)


def draft_continuation(draft: Sequence[int], text: Sequence[int], ngram: int = 3
                       ) -> list[int]:
    """What ``draft`` says comes after ``text`` (prompt-lookup proposal), or ``[]``.

    Finds the longest tail of ``text`` (at most ``ngram`` tokens) in ``draft``, the
    occurrence nearest to where ``text`` ends, and returns the draft after it. Consecutive
    reasonings of a scene mostly repeat each other with a few words changed (a distance,
    a colour), so after a changed word the rest of the draft lines up again.
    """
    draft, text = list(draft), list(text)
    for g in range(min(ngram, len(text)), 0, -1):
        tail = text[-g:]
        hits = [p for p in range(len(draft) - g + 1) if draft[p: p + g] == tail]
        if hits:
            expected = len(text) - g
            p = min(hits, key=lambda h: (abs(h - expected), h))
            return draft[p + g:]
    return []


def clamp_controls(controls: torch.Tensor) -> torch.Tensor:
    """Clip ``(..., 2)`` controls to the AR1 release bounds."""
    bound = controls.new_tensor([MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M])
    return torch.maximum(torch.minimum(controls, bound), -bound)


def count_parameters(module: nn.Module) -> int:
    """Trainable + frozen parameters."""
    return sum(p.numel() for p in module.parameters())


