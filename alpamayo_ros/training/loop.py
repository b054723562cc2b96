"""The training loop: pretrain (action injection), CoC SFT and GRPO, one stage at a time.

Read top to bottom, :func:`train` does:

1. start the processes (``torchrun``: one per GPU or CPU slot, gloo on CPU, NCCL on GPU;
   plain ``python``: one process) and open the train/val splits;
2. for each stage of the recipe (``pretrain``, ``sft``, ``rl``), :func:`run_stage`:
   build the policy (a checkpoint to resume, the stage's ``init`` weights, the previous
   stage's weights, or a fresh model whose BPE is trained on the train split's CoC and
   navigation texts and whose action normalisation is set from its future controls),
   AdamW with warmup + cosine/linear schedule, then per optimizer step: this process's
   micro-batches of the step's global batch (:class:`StepSampler`), the per-sample losses
   (``model.compute_losses``) divided by the *global* number of samples that have each
   target (all-reduced), backward, gradients summed across processes, clipping, step; log,
   val losses (model selection on val only; the test split is never read), checkpoint.
   The rl stage is selected on its own objective instead: the mean reward of one greedy
   rollout per val keyframe (:func:`rl_validation`), its starting weights included, an RL
   checkpoint only when it beats them by a margin (:func:`rl_checkpoint_verdict`);
3. PNG curves, and the export of the last stage's selected weights with a model card.

Determinism: every random draw comes from generators seeded by (seed, stage, step,
micro-batch), so a run resumed from a checkpoint reaches the same parameters as an
uninterrupted one, and N processes reach what one process reaches with the same global
batch and micro-batch size.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alpamayo_ros.model.modeling import LOSS_NAMES
from alpamayo_ros.perception import field_weight_vector, model_fields
from alpamayo_ros.training import checkpoint as ckpt
from alpamayo_ros.training import data as tdata
from alpamayo_ros.training.config import STAGES, StageConfig, TrainConfig
from alpamayo_ros.training.metrics import METRICS_FILE, MetricsLogger, plot_curves

KEEP_CHECKPOINTS = 3  # per stage; older step checkpoints are deleted


# --- processes -------------------------------------------------------------------------
@dataclass
class Distributed:
    """Where this process stands among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    comm_device: str = "cpu"  # where collectives run: "cuda" under NCCL (no CPU tensors)

    @property
    def main(self) -> bool:
        """The process that logs, saves and exports."""
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``tensor`` (``op``: sum, min, max) over the processes, in place."""
        if self.world == 1:
            return tensor
        reduce_op = {"sum": torch.distributed.ReduceOp.SUM,
                     "min": torch.distributed.ReduceOp.MIN,
                     "max": torch.distributed.ReduceOp.MAX}[op]
        if tensor.device.type != torch.device(self.comm_device).type:
            moved = tensor.to(self.comm_device)
            torch.distributed.all_reduce(moved, op=reduce_op)
            tensor.copy_(moved.to(tensor.device))
        else:
            torch.distributed.all_reduce(tensor, op=reduce_op)
        return tensor

    def barrier(self) -> None:
        """Wait for every process."""
        if self.world > 1:
            torch.distributed.barrier()


def setup_distributed(device: str) -> tuple[Distributed, torch.device]:
    """Join the ``torchrun`` process group when there is one; pick this process's device."""
    from alpamayo_ros.model.policy import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), resolve_device(device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(rank, world, local, "cuda" if dev.type == "cuda" else "cpu"), dev


def sync_gradients(params: list[torch.nn.Parameter], dist: Distributed,
                   average: bool = False) -> None:
    """Sum (or average) the gradients over the processes, in one flat all-reduce.

    A parameter with a gradient on any process gets one (zeros) on all, so every
    replica takes the same optimizer step.
    """
    if dist.world == 1:
        return
    has = torch.tensor([float(p.grad is not None) for p in params])
    dist.all_reduce(has)
    for p, h in zip(params, has.tolist()):
        if h and p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    if average:
        flat /= dist.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def params_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer (replicas agree when the digests do)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_replicas(digest: str, dist: Distributed) -> None:
    """Raise when the processes' parameters differ (digests from :func:`params_digest`)."""
    if dist.world == 1:
        return
    mine = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.float64)
    low, high = mine.clone(), mine.clone()
    dist.all_reduce(low, "min")
    dist.all_reduce(high, "max")
    if not torch.equal(low, high):
        raise RuntimeError(f"process {dist.rank}: model replicas differ across the "
                           f"{dist.world} processes (parameter digests disagree)")


def broadcast_model(model: torch.nn.Module, dist: Distributed) -> None:
    """Copy the main process's parameters and buffers to every process."""
    if dist.world > 1:
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, 0)


# --- building blocks -------------------------------------------------------------------
def make_optimizer(model: torch.nn.Module, stage: StageConfig
                   ) -> tuple[torch.optim.AdamW, list[str], list[torch.nn.Parameter]]:
    """AdamW: weight decay on matrices, none on vectors (norms, biases); names in order."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append((name, p))
    groups = [{"params": [p for _, p in decay], "weight_decay": stage.weight_decay},
              {"params": [p for _, p in no_decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=stage.lr, betas=stage.betas, foreach=False)
    named = decay + no_decay
    return opt, [n for n, _ in named], [p for _, p in named]


def truncated_share(tokenizer: Any, texts: list[str], budget: int) -> float:
    """Share of the non-empty texts longer than ``budget`` tokens."""
    counts = Counter(t for t in texts if t)
    total = sum(counts.values())
    if not total:
        return 0.0
    cut = sum(n for t, n in counts.items() if len(tokenizer.encode(t)) > budget)
    return cut / total


@functools.cache
def native_bf16(dev: torch.device) -> bool:
    """Whether ``dev`` computes bf16 matrix products in hardware (asked once per device).

    A CUDA GPU that supports bf16, or a CPU with AVX512-BF16 or AMX-BF16 (elsewhere oneDNN
    emulates bf16 and it is slower than fp32).
    """
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    try:
        flags = torch._C._cpu._get_cpu_capability()  # the CPU flags torch itself detected
    except (AttributeError, RuntimeError):
        return False
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def resolve_precision(precision: str, dev: torch.device) -> str:
    """``TrainConfig.precision`` on ``dev``: ``auto`` is bf16 where it is native, else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16(dev) else "fp32"
    return precision


def _autocast(cfg: TrainConfig, dev: torch.device) -> Any:
    """bf16 autocast on ``dev`` when the recipe's precision resolves to bf16."""
    if resolve_precision(cfg.precision, dev) == "bf16" and dev.type in ("cuda", "cpu"):
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class LossSums:
    """Masked sums and counts of each loss over several batches (for means)."""

    def __init__(self) -> None:
        self.sums = torch.zeros(len(LOSS_NAMES), dtype=torch.float64)
        self.counts = torch.zeros(len(LOSS_NAMES), dtype=torch.float64)

    def add(self, losses: Any) -> None:
        """Add one batch's :class:`Losses` (detached)."""
        for i, name in enumerate(LOSS_NAMES):
            if name in losses.per_sample:
                m = losses.mask[name].detach().double().cpu()
                self.sums[i] += (losses.per_sample[name].detach().double().cpu() * m).sum()
                self.counts[i] += m.sum()

    def reduce(self, dist: Distributed) -> None:
        """Sum over the processes."""
        both = dist.all_reduce(torch.cat([self.sums, self.counts]))
        self.sums, self.counts = both[: len(LOSS_NAMES)], both[len(LOSS_NAMES):]

    def means(self, weights: dict[str, float] | None = None) -> dict[str, float]:
        """Mean of every loss seen; ``loss``: their weighted sum when ``weights`` given."""
        out = {name: float(self.sums[i] / self.counts[i])
               for i, name in enumerate(LOSS_NAMES) if self.counts[i] > 0}
        if weights and any(weights.values()):
            out["loss"] = sum(w * out.get(name, 0.0) for name, w in weights.items())
        return out

    def state(self) -> dict[str, list[float]]:
        """JSON form (checkpoints)."""
        return {"sums": self.sums.tolist(), "counts": self.counts.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, list[float]] | None) -> LossSums:
        """Inverse of :meth:`state`."""
        out = cls()
        if state:
            out.sums = torch.tensor(state["sums"], dtype=torch.float64)
            out.counts = torch.tensor(state["counts"], dtype=torch.float64)
        return out


def perception_weights(stage: StageConfig, perception_dim: int, device: torch.device
                       ) -> torch.Tensor | None:
    """The stage's perception field weights, one per head entry (None: it weighs none).

    A head of ``perception_dim`` entries predicts the first fields (weights trained before
    a field was appended), so a weight for a field beyond them is a ``ValueError``.
    """
    if not stage.perception_field_weights:
        return None
    known = {f.name for f in model_fields(perception_dim)}
    beyond = sorted(set(stage.perception_field_weights) - known)
    if beyond:
        raise ValueError(f"perception_field_weights: {beyond} are not among the model's "
                         f"{perception_dim} perception fields (weights older than them)")
    vector = field_weight_vector(stage.perception_field_weights)[:perception_dim]
    return torch.tensor(vector, device=device)


def evaluate(model: Any, dataset: Any, processor: Any, cfg: TrainConfig, stage: StageConfig,
             micro: int, dist: Distributed, dev: torch.device) -> dict[str, float]:
    """Val losses (masked means over the val samples, fixed noise) and their weighted sum."""
    indices = tdata.eval_indices(len(dataset), cfg.data.val_samples)
    if not indices:
        return {}
    chunks = [indices[i: i + micro] for i in range(0, len(indices), micro)]
    mine = list(range(dist.rank, len(chunks), dist.world))
    loader = tdata.make_loader(dataset, [chunks[j] for j in mine], processor, cfg.data.workers)
    sums = LossSums()
    was_training = model.training
    field_weights = perception_weights(stage, model.config.perception_dim, dev)
    model.eval()
    with torch.no_grad():
        for j, inputs in zip(mine, loader):
            gen = tdata.generator(cfg.seed, "val", j)
            with _autocast(cfg, dev):
                sums.add(model.compute_losses(
                    inputs.to(dev), generator=gen,
                    trajectory_tokens=stage.loss_weights["trajectory_tokens"] > 0,
                    decision_token_weight=stage.decision_token_weight,
                    perception_field_weights=field_weights))
    model.train(was_training)
    sums.reduce(dist)
    return sums.means(stage.loss_weights)


def rl_validation_indices(dataset: Any, limit: int) -> list[int]:
    """The val samples the rl stage is selected on: the labelled keyframes.

    Evenly spaced, at most ``limit``: where ``alpamayo eval`` scores decisions.
    """
    chosen = np.flatnonzero(tdata.keyframe_mask(dataset) & tdata.has_text(dataset))
    if limit and len(chosen) > limit:
        chosen = chosen[np.linspace(0, len(chosen) - 1, limit).round().astype(int)]
    return [int(i) for i in chosen]


def _memo_boxes(boxes_fn: Any) -> Any:
    """``boxes_fn`` remembered per (family, seed, frame, steps): val samples recur."""
    memo: dict[tuple, Any] = {}

    def boxes(sample: Any, steps: int) -> Any:
        meta = sample.meta or {}
        key = (meta.get("family"), meta.get("seed"), meta.get("index"), steps)
        if None in key:
            return boxes_fn(sample, steps)
        if key not in memo:
            memo[key] = boxes_fn(sample, steps)
        return memo[key]
    return boxes


def rl_validation(model: Any, processor: Any, dataset: Any, indices: list[int], rl_cfg: Any,
                  reward_fn: Any, generator: torch.Generator, dist: Distributed
                  ) -> tuple[dict[str, float], list[float]]:
    """Mean reward (and its parts) of one greedy rollout per val keyframe, and each reward.

    :func:`grpo.validation_rewards` on this process's share of ``indices``, all-reduced,
    with the share of decisions the generated text gets right. The second value is the
    total reward of every keyframe in the order of ``indices`` (on every process), for
    :func:`rl_checkpoint_verdict`.
    """
    from alpamayo_ros.eval.evaluate import truth_decisions
    from alpamayo_ros.eval.metrics import predicted_decisions
    from alpamayo_ros.training import grpo

    mine = indices[dist.rank::dist.world]
    samples = [dataset[i] for i in mine]
    names = [n for n, w in rl_cfg.reward_weights.items() if w]
    keys = ["reward", *(f"reward_{n}" for n in names), "decision_lon", "decision_lat"]
    sums = torch.zeros(len(keys) + 1, dtype=torch.float64)
    each = torch.zeros(len(indices), dtype=torch.float64)  # this process fills its share
    if samples:
        rewards, texts = grpo.validation_rewards(model, processor, samples, rl_cfg, generator,
                                                 reward_fn)
        each[dist.rank::dist.world] = torch.tensor([r.total for r in rewards],
                                                   dtype=torch.float64)
        for sample, r, text in zip(samples, rewards, texts):
            truth = truth_decisions(sample) or (None, None)
            lon, lat = predicted_decisions(text)
            sums += torch.tensor([r.total, *(r.components[n] for n in names),
                                  float(lon == truth[0]), float(lat == truth[1]), 1.0],
                                 dtype=torch.float64)
    sums = dist.all_reduce(sums)
    each = dist.all_reduce(each)
    count = float(sums[-1])
    if count == 0:
        return {}, []
    out = {k: float(sums[i]) / count for i, k in enumerate(keys)}
    out["reward_samples"] = count
    return out, each.tolist()


def rl_checkpoint_verdict(candidate: list[float], start: list[float], min_gain_se: float
                          ) -> tuple[float, float, bool]:
    """Whether an RL checkpoint's val rewards beat the starting weights' by enough.

    ``candidate`` and ``start``: the total reward of each val keyframe (the same keyframes,
    in the same order: greedy rollouts, so each pair differs only by the weights). Returns
    ``(gain, standard_error, verdict)``: the mean per-keyframe difference, its standard
    error (sample standard deviation / sqrt(n)), and whether the gain is positive and at
    least ``min_gain_se`` standard errors (a one-sided paired test; 2 is about 98 %
    confidence). The max over a stage's evaluations of a noisy mean is biased upwards, so
    without this margin RL steps no better than the start get picked.
    """
    if len(candidate) != len(start) or not start:
        raise ValueError(f"rl_checkpoint_verdict needs two equal, non-empty lists of "
                         f"rewards, got {len(candidate)} and {len(start)}")
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(start, dtype=np.float64)
    gain = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return gain, se, gain > 0.0 and gain >= min_gain_se * se


# --- one stage -------------------------------------------------------------------------
def _stage_output(run_dir: Path, name: str, select: str) -> Path | None:
    """The weights a finished stage hands on: its best (by val) or its last."""
    best, last = run_dir / name / "best", run_dir / name / "last"
    if select == "best" and (best / "config.json").is_file():
        return best
    return last if (last / "config.json").is_file() else None


def _initial_policy(cfg: TrainConfig, name: str, run_dir: Path, train_set: Any,
                    dev: torch.device, say: Any) -> tuple[Any, str]:
    """The policy a stage starts from and where it came from (``""``: fresh)."""
    from alpamayo_ros.model.policy import Policy

    stage = cfg.stage(name)
    if stage.init:
        say(f"[{name}] starting from {stage.init}")
        return Policy.from_pretrained(stage.init, dev), stage.init
    for prev in reversed(STAGES[: STAGES.index(name)]):
        out = _stage_output(run_dir, prev, cfg.export_select)
        if out is not None:
            say(f"[{name}] starting from the {prev} stage's weights {out}")
            return Policy.from_pretrained(out, dev), str(out)
    if name == "rl":
        raise ValueError("the rl stage needs a trained policy: run sft first (same output "
                         "directory) or set rl.init to a weights directory")
    corpus = tdata.tokenizer_corpus(train_set)
    say(f"[{name}] fresh {cfg.model.preset} model; BPE on {len(corpus)} distinct texts")
    policy = Policy.from_config(cfg.model.policy_config(), corpus=corpus, seed=cfg.seed,
                                device=dev)
    mean, std = tdata.action_stats(train_set)
    policy.model.set_action_stats(mean.to(dev), std.to(dev))
    say(f"[{name}] action stats mean {mean.tolist()} std {std.tolist()}")
    return policy, ""


def _prune(directory: Path, keep: int) -> None:
    steps = sorted(p for p in directory.glob("step_*") if p.is_dir() and
                   not p.name.endswith(".tmp"))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def run_stage(cfg: TrainConfig, name: str, run_dir: Path, train_set: Any, val_set: Any,
              dist: Distributed, dev: torch.device, logger: MetricsLogger,
              resume_dir: Path | None = None, progress: bool = True,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train one stage; returns its summary (steps, samples, val losses, where it saved).

    ``stop_after``: leave after that many steps of the stage with a checkpoint (a time
    slice of a longer run; ``--resume`` continues it exactly).
    """
    from alpamayo_ros.model.policy import Policy

    stage = cfg.stage(name)
    stage_dir = run_dir / name
    say = print if dist.main else (lambda *a, **k: None)

    # 1. The policy: resume, init weights, previous stage, or fresh.
    state: dict[str, Any] = {}
    if resume_dir is not None:
        state = ckpt.read_state(resume_dir)
        say(f"[{name}] resuming from {resume_dir} at step {state['step']}")
        policy = Policy.from_pretrained(resume_dir, dev)
        if dist.main and (resume_dir / "best").is_dir():  # best weights as of the checkpoint
            shutil.rmtree(stage_dir / "best", ignore_errors=True)
            shutil.copytree(resume_dir / "best", stage_dir / "best")
    else:
        policy, init_from = _initial_policy(cfg, name, run_dir, train_set, dev, say)
        state["init_from"] = init_from
    model, processor = policy.model, policy.processor
    model.train()
    broadcast_model(model, dist)
    for what, texts, field_name in (
            ("CoC", tdata.texts(train_set), "max_reasoning_tokens"),
            ("navigation", tdata.navigation_texts(train_set), "max_navigation_tokens")):
        budget = getattr(model.config.tokenizer, field_name)
        share = truncated_share(policy.tokenizer, texts, budget)
        if share > cfg.data.max_truncated_share:
            raise ValueError(f"{share:.1%} of the training {what} texts exceed the model's "
                             f"{budget}-token budget (DataSection.max_truncated_share "
                             f"{cfg.data.max_truncated_share:.1%}): raise "
                             f"tokenizer.{field_name} in model.overrides")

    # 2. Optimizer (and its state when resuming), schedule, sampling.
    opt, names, params = make_optimizer(model, stage)
    start = int(state.get("step", 0))
    if resume_dir is not None:
        opt.load_state_dict(ckpt.load_optimizer_state(resume_dir, names))
        ckpt.restore_rng(resume_dir)
    micro = stage.micro_batch_size or stage.batch_size // dist.world
    if stage.batch_size % (micro * dist.world):
        raise ValueError(f"{name}.batch_size {stage.batch_size} is not a multiple of "
                         f"micro_batch_size {micro} x {dist.world} processes")
    pool, weights = tdata.stage_pool(train_set, stage)
    sampler = tdata.StepSampler(pool, weights, stage.batch_size, micro, cfg.seed, name, start,
                                stage.steps, dist.rank, dist.world)
    rl = name == "rl"
    with_tokens = stage.loss_weights["trajectory_tokens"] > 0  # else skip the 128 tokens
    field_weights = perception_weights(stage, model.config.perception_dim, dev)
    if rl:
        # GRPO prompts: AR1's selection, the prompts whose last rollouts disagreed most
        # with the reward mixed with uniform draws (grpo.DisagreementPool), step by step.
        from alpamayo_ros.training import grpo

        rl_cfg = stage.rl_config()
        if stage.batch_size > len(pool):
            raise ValueError(f"rl.batch_size {stage.batch_size} exceeds the {len(pool)} "
                             f"prompts of the pool")
        prompts = grpo.DisagreementPool(len(pool), rl_cfg.disagreement_fraction)
        if state.get("disagreement"):
            prompts.load_state_dict(state["disagreement"])
        ref_model = None  # the frozen starting (SFT) policy, for the KL term only
        if rl_cfg.kl_beta > 0:
            ref_model = Policy.from_pretrained(state["init_from"], dev).model
            ref_model.eval().requires_grad_(False)
        # Selection: the RL objective on the val keyframes at the node's setting
        # (rl_validation); the agents' true futures are simulated once per sample.
        rl_val = rl_validation_indices(val_set, cfg.data.val_samples)
        val_rewards = grpo.RLRewards(rl_cfg, boxes_fn=_memo_boxes(grpo.scene_boxes))
    else:
        batches = iter(tdata.make_loader(train_set, sampler, processor, cfg.data.workers))
    best_val = state.get("best_val")
    best_step = state.get("best_step")
    acc = LossSums.from_state(state.get("log_acc"))
    rl_acc: dict[str, float] = dict(state.get("rl_acc", {}))
    acc_steps = int(state.get("acc_steps", 0))
    val: dict[str, float] = dict(state.get("val", {}))
    start_rewards: list[float] = list(state.get("start_rewards") or [])  # rl: its step 0
    earlier_s = float(state.get("stage_s", 0.0))  # wall time of earlier sessions (resume)
    t0 = time.monotonic()
    how = ("prompts by disagreement + uniform" if rl else
           "weighted sampling" if weights is not None else "uniform sampling")
    say(f"[{name}] steps {start}..{stage.steps}, global batch {stage.batch_size} "
        f"({dist.world} x {sampler.micro_per_rank} x {micro}), pool {len(pool)} samples, "
        f"{how}")

    def save(step: int) -> None:
        if dist.main:
            record = {"stage": name, "step": step, "best_val": best_val, "best_step": best_step,
                      # the sampler's stream position (a function of the step: resuming at
                      # step s draws from position s * batch_size of the same stream)
                      "sampler_position": step * stage.batch_size,
                      "init_from": state.get("init_from", ""),
                      "disagreement": prompts.state_dict() if rl else None,
                      "log_acc": acc.state(), "rl_acc": rl_acc, "acc_steps": acc_steps,
                      "val": val, "start_rewards": start_rewards if rl else None,
                      "seed": cfg.seed, "world_size": dist.world,
                      "stage_s": earlier_s + time.monotonic() - t0,
                      "config": cfg.to_dict()}
            out = ckpt.save_checkpoint(stage_dir / "checkpoints" / f"step_{step:07d}", policy,
                                       opt, names, record)
            if (stage_dir / "best").is_dir():
                shutil.copytree(stage_dir / "best", out / "best")
            _prune(stage_dir / "checkpoints", KEEP_CHECKPOINTS)
        dist.barrier()

    def run_eval(step: int) -> None:
        nonlocal best_val, best_step, val
        if not len(val_set):
            return
        val = evaluate(model, val_set, processor, cfg, stage, micro, dist, dev)
        # Selection score, lower is better: the val loss, or for rl minus the val reward
        # (the stage's objective; its losses are not what it optimises).
        score = val.get("loss")
        if rl:
            means, rewards = rl_validation(model, processor, val_set, rl_val, rl_cfg,
                                           val_rewards,
                                           tdata.generator(cfg.seed, name, "val", device=dev),
                                           dist)
            val.update(means)
            score = -val["reward"] if "reward" in val else None
            if step == 0 and rewards:
                start_rewards[:] = rewards  # the weights the stage started from
            elif start_rewards and rewards:
                # A checkpoint competes only when it beats the start by the margin.
                gain, se, ok = rl_checkpoint_verdict(rewards, start_rewards,
                                                     rl_cfg.select_min_gain_se)
                val.update(reward_gain=gain, reward_gain_se=se)
                if not ok:
                    score = None
        logger.log(name, step, "val", val)
        if score is not None and (best_val is None or score < best_val):
            best_val, best_step = score, step
            if dist.main:
                shutil.rmtree(stage_dir / "best", ignore_errors=True)
                policy.save_pretrained(stage_dir / "best")
                (stage_dir / "best" / "selection.json").write_text(json.dumps(
                    {"stage": name, "step": step, "val": val}, indent=1) + "\n")
        dist.barrier()

    # 3. The steps.
    from tqdm import tqdm

    rolled: dict[str, Any] = {}  # the step's RolloutBatch (its disagreement scores)

    def keep_rollouts(batch: Any) -> None:
        rolled["batch"] = batch

    bar = tqdm(total=stage.steps, initial=start, desc=name, disable=not (dist.main and progress),
               dynamic_ncols=True)
    if rl and start == 0 and stage.eval_every:
        run_eval(0)  # the starting (SFT) weights are a candidate: RL must beat them on val
    for step in range(start, stage.steps):
        lr = stage.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        if rl:
            rng = np.random.default_rng(tdata.stable_seed(cfg.seed, name, "prompts", step))
            picks = prompts.pick(stage.batch_size, rng)  # the same on every process
            per = stage.batch_size // dist.world
            mine = picks[dist.rank * per: (dist.rank + 1) * per]
            samples = [train_set[int(pool[i])] for i in mine]
            # Sampling happens where the model is: the generator must live there too.
            gen = tdata.generator(cfg.seed, name, "rollouts", step, dist.rank, device=dev)
            rolled.clear()
            with _autocast(cfg, dev):
                loss, metrics = grpo.rl_step(model, ref_model, processor, samples, rl_cfg, gen,
                                             on_batch=keep_rollouts)
            loss.backward()
            sync_gradients(params, dist, average=True)
            scores = torch.zeros(2, stage.batch_size, dtype=torch.float64)
            d = getattr(rolled.get("batch"), "disagreement", None)
            if d is not None:
                scores[0, dist.rank * per: (dist.rank + 1) * per] = torch.as_tensor(d)
                scores[1, dist.rank * per: (dist.rank + 1) * per] = 1.0
            dist.all_reduce(scores)
            if bool((scores[1] > 0).all()):
                prompts.update(picks, scores[0].tolist())
            keys = sorted(metrics)
            values = dist.all_reduce(torch.tensor([float(metrics[k]) for k in keys],
                                                  dtype=torch.float64)) / dist.world
            for k, v in zip(keys, values.tolist()):
                rl_acc[k] = rl_acc.get(k, 0.0) + v
        else:
            losses = []
            micro_batches = [next(batches) for _ in range(sampler.micro_per_rank)]
            for k, inputs in enumerate(micro_batches):
                micro_index = dist.rank * sampler.micro_per_rank + k
                if stage.blank_images_share:
                    tdata.blank_images(inputs, stage.blank_images_share, tdata.generator(
                        cfg.seed, name, "blank", step, micro_index))
                gen = tdata.generator(cfg.seed, name, "noise", step, micro_index)
                with _autocast(cfg, dev):
                    losses.append(model.compute_losses(
                        inputs.to(dev), generator=gen, trajectory_tokens=with_tokens,
                        decision_token_weight=stage.decision_token_weight,
                        perception_field_weights=field_weights))
            step_sums = LossSums()
            for item in losses:
                step_sums.add(item)
            step_sums.reduce(dist)
            counts = {n: step_sums.counts[i].float().to(dev) for i, n in enumerate(LOSS_NAMES)}
            for item in losses:  # one backward per micro-batch: grads add up as across ranks
                item.total(stage.loss_weights, counts).backward()
            sync_gradients(params, dist)
            acc.sums += step_sums.sums
            acc.counts += step_sums.counts
        if stage.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, stage.grad_clip))
        else:
            grad_norm = float(torch.nn.utils.get_total_norm(
                [p.grad for p in params if p.grad is not None]))
        opt.step()
        acc_steps += 1
        done = step + 1
        bar.update(1)

        if done % stage.log_every == 0 or done == stage.steps:
            record = acc.means(stage.loss_weights) if not rl else {
                k: v / acc_steps for k, v in rl_acc.items()}
            elapsed = time.monotonic() - t0
            record.update(lr=lr, grad_norm=grad_norm,
                          samples_per_s=(done - start) * stage.batch_size / max(elapsed, 1e-9))
            logger.log(name, done, "train", record)
            if "loss" in record:
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            acc, rl_acc, acc_steps = LossSums(), {}, 0
        if (stage.eval_every and done % stage.eval_every == 0) or done == stage.steps:
            run_eval(done)
        if (stage.save_every and done % stage.save_every == 0) or done == stage.steps:
            save(done)
        elif stop_after is not None and done >= stop_after:
            save(done)
        if stop_after is not None and done >= stop_after and done < stage.steps:
            bar.close()
            return {"stage": name, "stopped_at": done, "steps": stage.steps,
                    "stage_s": round(earlier_s + time.monotonic() - t0, 1),
                    "params_sha256": params_digest(model)}
    bar.close()

    # 4. What the stage hands on.
    if dist.main:
        shutil.rmtree(stage_dir / "last", ignore_errors=True)
        policy.save_pretrained(stage_dir / "last")
    dist.barrier()
    digest = params_digest(model)
    check_replicas(digest, dist)
    output = _stage_output(run_dir, name, cfg.export_select)
    return {"stage": name, "steps": stage.steps, "samples": stage.steps * stage.batch_size,
            "val": val, "best_val": best_val, "best_step": best_step,
            "output": str(output), "pool": len(pool), "params_sha256": digest,
            "stage_s": round(earlier_s + time.monotonic() - t0, 1)}


# --- the whole run ---------------------------------------------------------------------
def train(cfg: TrainConfig, stage: str = "all", resume: str | Path | None = None,
          out: str | Path | None = None, progress: bool = True,
          command: str = "", stop_after: int | None = None) -> dict[str, Any]:
    """Run the recipe's stages (``stage``: one of :data:`STAGES` or ``all``); returns a summary.

    ``resume``: a checkpoint directory (or a run directory: its newest checkpoint); the
    run continues from there, then runs the remaining stages. ``out`` replaces the
    recipe's ``output_dir``. ``stop_after``: leave after that many steps of the first stage
    run, with a checkpoint (see :func:`run_stage`); no later stage, no export.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if stage != "all" and stage not in STAGES:
        raise ValueError(f"stage must be 'all' or one of {STAGES}, got {stage!r}")
    dist, dev = setup_distributed(cfg.device)
    run_dir = Path(out or cfg.output_dir)
    stages = [s for s in (STAGES if stage == "all" else (stage,)) if cfg.stage(s).steps > 0]
    if not stages:
        raise ValueError(f"no stage to run: {stage!r} has steps 0 in the recipe")
    if "rl" in stages:
        cfg.rl.rl_config()  # fail now, not after hours of the earlier stages
    resume_dir = None
    if resume:
        resume_dir = ckpt.latest_checkpoint(resume)
        resumed = ckpt.read_state(resume_dir)
        if resumed["stage"] not in stages:
            raise ValueError(f"checkpoint {resume_dir} is of stage {resumed['stage']!r}, "
                             f"not one this run trains ({stages})")
        stages = stages[stages.index(resumed["stage"]):]
        if resumed.get("world_size", 1) != dist.world:
            print(f"note: the checkpoint was written by {resumed.get('world_size')} "
                  f"processes, resuming with {dist.world}")
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    logger = MetricsLogger(run_dir, enabled=dist.main,
                           resume_at=(resumed["stage"], int(resumed["step"]))
                           if resume_dir is not None else None, first_stage=stages[0])
    torch.manual_seed(cfg.seed)
    t_start = time.monotonic()
    model_cfg = cfg.model.policy_config()
    precision = resolve_precision(cfg.precision, dev)
    if dist.main:
        built = tdata.ensure_dataset(cfg.data, progress=progress)
        if built is not None:
            print(f"dataset {cfg.data.root}: {json.dumps(built)}")
    dist.barrier()
    counterfactuals = any(cfg.stage(n).signal_counterfactual_share for n in stages)
    train_set = tdata.open_split(cfg.data, cfg.data.train_split, model_cfg, cfg.seed,
                                 signal_counterfactuals=counterfactuals)
    val_set = tdata.open_split(cfg.data, cfg.data.val_split, model_cfg, cfg.seed)
    extra = int(tdata.perception_only_mask(train_set).sum()) if counterfactuals else 0
    if dist.main:
        print(f"data: {len(train_set) - extra} train (+ {extra} signal counterfactuals) / "
              f"{len(val_set)} val samples")
        print(f"precision: {precision} (recipe: {cfg.precision}, device {dev})")
    from alpamayo_ros.training.export import git_commit

    summary: dict[str, Any] = {"stages": {}, "train_samples": len(train_set) - extra,
                               "signal_counterfactuals": extra,
                               "val_samples": len(val_set), "world_size": dist.world,
                               "git_commit_at_start": git_commit()}
    previous = run_dir / "summary.json"
    if previous.is_file():  # earlier stages of this run directory keep their records
        summary["stages"] = {k: v for k, v in json.loads(previous.read_text())
                             .get("stages", {}).items() if k not in stages}
    try:
        for i, name in enumerate(stages):
            summary["stages"][name] = run_stage(
                cfg, name, run_dir, train_set, val_set, dist, dev, logger,
                resume_dir if i == 0 else None, progress, stop_after if i == 0 else None)
            if "stopped_at" in summary["stages"][name]:
                summary["stopped"] = True
                break
    finally:
        logger.close()
    summary["wall_s"] = round(time.monotonic() - t_start, 1)
    summary["device"] = str(dev)
    summary["precision"] = precision
    if dist.main and not summary.get("stopped"):
        summary["curves"] = [str(p) for p in plot_curves(run_dir / METRICS_FILE, run_dir)]
        final = summary["stages"][stages[-1]]["output"]
        if cfg.export_dir:
            from alpamayo_ros.training.export import export_weights

            summary["export"] = str(export_weights(final, cfg.export_dir, cfg, summary,
                                                   command=command))
    if dist.main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    dist.barrier()
    return summary
