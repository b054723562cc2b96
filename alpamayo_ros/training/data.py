"""Training data: opening the splits, dataset statistics, deterministic sampling, loaders.

- :func:`ensure_dataset` builds the recipe's dataset spec with the data pipeline
  (:func:`alpamayo_ros.data.episodes.build_dataset`; built episodes are skipped) and
  :func:`open_split` returns a ``Sequence[DrivingSample]``: ``EpisodeDataset(root,
  split)``, or for the trainer's own tests a small synthetic set
  (:func:`synthetic_dataset`).
- Per-sample facts (decision class ids, keyframe flags, whether a CoC text exists, the
  future controls, the texts for the tokenizer) come from the dataset's cheap accessors
  when it has them (``decision_ids()``, ``keyframe_mask()``, ``has_text()``, ``texts()``,
  ``controls()``, ``navigation_texts()``) and otherwise from iterating the samples.
- :class:`StepSampler` decides which samples every optimizer step sees: one stream of
  indices per (seed, stage), drawn epoch by epoch from a ``torch.Generator`` seeded by
  (seed, stage, epoch) (a permutation, or weighted draws with replacement for class
  balance / keyframe share). Step ``s`` takes the global batch at stream position
  ``s * batch_size``, so resuming at step ``s`` needs nothing but ``s``; each process takes
  its contiguous slice of every global batch, split into micro-batches.
- :func:`make_loader` collates micro-batches with the model's Processor inside DataLoader
  workers; :func:`blank_images` blacks out a stage's ``blank_images_share`` of them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from alpamayo_ros.sample import DrivingSample
from alpamayo_ros.training.config import STAGES, DataSection, StageConfig


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts (same on every machine and Python run)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(*parts: Any, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`stable_seed` of ``parts``."""
    g = torch.Generator(device=device)
    g.manual_seed(stable_seed(*parts))
    return g


# --- opening the data ------------------------------------------------------------------
def open_split(data: DataSection, split: str, policy_config: Any = None, seed: int = 0,
               signal_counterfactuals: bool = False) -> Sequence[DrivingSample]:
    """The samples of ``split`` (a split name of the dataset, e.g. ``train``).

    ``signal_counterfactuals``: append the split's perception-only signal counterfactuals
    (:class:`alpamayo_ros.data.episodes.EpisodeDataset`; synthetic data has none).
    """
    if data.source == "synthetic":
        offset = {data.train_split: 0, data.val_split: 1}.get(split, 2)
        return synthetic_dataset(data.synthetic_samples, stable_seed(seed, "synthetic", offset),
                                 policy_config)
    from alpamayo_ros.data.episodes import EpisodeDataset

    return EpisodeDataset(data.root, split, signal_counterfactuals=signal_counterfactuals)


def ensure_dataset(data: DataSection, progress: bool = True) -> dict | None:
    """Build (or complete) the train and val splits of ``data.spec`` under ``data.root``.

    Episodes already built with the same spec are skipped, so this is cheap when the data
    is there. ``data.build_workers`` processes (0: one per CPU; the episodes do not depend
    on it). Returns the builder's summary, None when the recipe names no spec.
    """
    if data.source != "episodes" or not data.spec:
        return None
    from alpamayo_ros.data.episodes import build_dataset
    from alpamayo_ros.data.spec import DatasetSpec

    spec = DatasetSpec.from_yaml(data.spec)
    return build_dataset(spec, data.root, splits=(data.train_split, data.val_split),
                         workers=data.build_workers or max(1, os.cpu_count() or 1),
                         progress=progress)


_SYNTHETIC_DECISIONS = (
    ("set_speed_tracking", "lane_keeping", "the road ahead is clear so keep the set speed"),
    ("lead_obstacle_following", "lane_keeping", "follow the lead car at a safe gap"),
    ("yield", "lane_keeping", "yield to the pedestrian crossing ahead"),
    ("stop_for_static_constraint", "lane_keeping", "stop at the red light"),
    ("set_speed_tracking", "lane_change", "change lanes to the left to pass"),
    ("speed_adaptation", "turn", "slow down and turn right at the intersection"),
)


def synthetic_dataset(count: int, seed: int, policy_config: Any = None) -> list[DrivingSample]:
    """``count`` random samples with decisions, CoC texts and perception targets.

    For the trainer's tests only (random images; texts picked from a few fixed
    sentences, one per decision pair): it exercises every loss, not driving.
    """
    from alpamayo_ros.model.synthetic import synthetic_sample
    from alpamayo_ros.perception import PERCEPTION_DIM

    height, width, frames = 32, 48, 2
    if policy_config is not None:
        v = policy_config.vision
        height, width, frames = v.image_height_px, v.image_width_px, v.num_frames
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        lon, lat, text = _SYNTHETIC_DECISIONS[i % len(_SYNTHETIC_DECISIONS)]
        with_text = i % 4 != 3  # some samples without CoC text, like non-keyframe steps
        s = synthetic_sample(rng, num_cameras=2, num_frames=frames, height_px=height,
                             width_px=width, text=text if with_text else "",
                             navigation="turn right ahead" if lat == "turn" else "")
        s.decisions = (lon, lat)
        s.keyframe = with_text and i % 2 == 0
        s.perception = rng.uniform(0.0, 1.0, PERCEPTION_DIM).astype(np.float32)
        s.perception_mask = rng.uniform(size=PERCEPTION_DIM) < 0.8
        s.meta = {"family": "synthetic", "seed": seed, "index": i}
        out.append(s)
    return out


# --- per-sample facts ------------------------------------------------------------------
def _accessor(dataset: Any, name: str) -> Any:
    fn = getattr(dataset, name, None)
    return fn() if callable(fn) else None


def decision_ids(dataset: Sequence[DrivingSample]) -> np.ndarray:
    """Long ``(N, 2)`` (lon, lat) class ids, -1 where a sample has no decision label."""
    from alpamayo_ros.taxonomy import decision_class_ids

    ids = _accessor(dataset, "decision_ids")
    if ids is not None:
        return np.asarray(ids, dtype=np.int64).reshape(len(dataset), 2)
    return np.array([decision_class_ids(*s.decisions) if s.decisions is not None else (-1, -1)
                     for s in dataset], dtype=np.int64).reshape(-1, 2)


def keyframe_mask(dataset: Sequence[DrivingSample]) -> np.ndarray:
    """Bool ``(N,)``: CoC keyframes."""
    mask = _accessor(dataset, "keyframe_mask")
    if mask is not None:
        return np.asarray(mask, dtype=bool).reshape(len(dataset))
    return np.array([bool(s.keyframe) for s in dataset], dtype=bool)


def has_text(dataset: Sequence[DrivingSample]) -> np.ndarray:
    """Bool ``(N,)``: samples with a CoC text."""
    mask = _accessor(dataset, "has_text")
    if mask is not None:
        return np.asarray(mask, dtype=bool).reshape(len(dataset))
    return np.array([s.coc is not None and bool(s.coc.text) for s in dataset], dtype=bool)


def texts(dataset: Sequence[DrivingSample]) -> list[str]:
    """The CoC texts of the samples that have one (one entry per such sample)."""
    out = _accessor(dataset, "texts")
    if out is not None:
        return [str(t) for t in out if t]
    return [s.coc.text for s in dataset if s.coc is not None and s.coc.text]


def navigation_texts(dataset: Sequence[DrivingSample]) -> list[str]:
    """Non-empty navigation commands (from the dataset's accessor, or every sample's)."""
    out = _accessor(dataset, "navigation_texts")
    if out is not None:
        return [str(t) for t in out if t]
    return [s.navigation for s in dataset if s.navigation]


def perception_only_mask(dataset: Sequence[DrivingSample]) -> np.ndarray:
    """Bool ``(N,)``: samples that train the perception head only (signal counterfactuals)."""
    mask = _accessor(dataset, "perception_only_mask")
    if mask is not None:
        return np.asarray(mask, dtype=bool).reshape(len(dataset))
    return np.array([bool(s.perception_only) for s in dataset], dtype=bool)


def future_controls(dataset: Sequence[DrivingSample]) -> np.ndarray:
    """Float ``(N, 64, 2)`` future controls (acceleration m/s^2, curvature 1/m)."""
    out = _accessor(dataset, "controls")
    if out is not None:
        return np.asarray(out, dtype=np.float32)
    return np.stack([np.asarray(s.future_controls, dtype=np.float32) for s in dataset])


def tokenizer_corpus(dataset: Sequence[DrivingSample]) -> list[str]:
    """Distinct CoC and navigation texts of a split (what the BPE is trained on)."""
    return sorted({t for t in texts(dataset) + navigation_texts(dataset) if t})


def action_stats(dataset: Sequence[DrivingSample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``(2,)`` of the future controls over all steps and samples.

    Perception-only samples, copies of others' controls, are left out.
    """
    ctrl = future_controls(dataset)[~perception_only_mask(dataset)]
    ctrl = ctrl.reshape(-1, 2).astype(np.float64)
    if not len(ctrl):
        raise ValueError("action statistics need at least one sample")
    mean, std = ctrl.mean(0), ctrl.std(0)
    std = np.where(std > 1e-6, std, 1.0)  # a constant channel keeps unit scale
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def stage_pool(dataset: Sequence[DrivingSample], stage: StageConfig
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices a stage may draw from and their sampling weights (None: uniform).

    The perception-only samples (signal counterfactuals) are drawn only by a stage with a
    ``signal_counterfactual_share``, which they get in all (uniformly among them, whatever
    ``text_only``); the rest of the weight follows ``balanced`` and ``keyframe_share``.
    """
    everything = np.arange(len(dataset))
    perception_only = perception_only_mask(dataset)
    pool = everything[~perception_only]
    if stage.text_only:
        pool = pool[has_text(dataset)[pool]]
    if not len(pool):
        raise ValueError("no training sample fits the stage (text_only and no CoC text?)")
    extra = everything[perception_only] if stage.signal_counterfactual_share else pool[:0]
    if stage.signal_counterfactual_share and not len(extra):
        raise ValueError("StageConfig.signal_counterfactual_share needs signal "
                         "counterfactuals: build the dataset with signal_counterfactuals: "
                         "true (DatasetSpec) from scenarios with traffic signals")
    if not stage.balanced and not stage.keyframe_share and not len(extra):
        return pool, None
    from alpamayo_ros.data.episodes import class_balanced_weights

    weights = (class_balanced_weights(decision_ids(dataset)[pool]) if stage.balanced
               else np.ones(len(pool)))
    if stage.keyframe_share:
        key = keyframe_mask(dataset)[pool]
        if key.any() and (~key).any():
            share = stage.keyframe_share
            weights = np.where(key, share * weights / weights[key].sum(),
                               (1.0 - share) * weights / weights[~key].sum())
    weights = weights / weights.sum()
    if len(extra):
        share = stage.signal_counterfactual_share
        pool = np.concatenate([pool, extra])
        weights = np.concatenate([(1.0 - share) * weights, np.full(len(extra),
                                                                   share / len(extra))])
    return pool, weights / weights.sum()


def blank_images(inputs: Any, share: float, gen: torch.Generator) -> torch.Tensor:
    """Black out every image of a random ``share`` of the batch's samples, in place.

    Returns the bool ``(B,)`` mask of the blanked samples. The draws come from ``gen``
    (seeded per step and micro-batch), so a resumed run blanks the same samples.
    """
    mask = torch.rand(inputs.images.shape[0], generator=gen) < share
    if mask.any():
        inputs.images[mask.to(inputs.images.device)] = 0
    return mask


# --- sampling --------------------------------------------------------------------------
class StepSampler:
    """Micro-batches of sample indices, for one process, for steps ``start`` .. ``steps-1``.

    Iterating yields ``micro_per_rank`` lists per step (this process's slice of the step's
    global batch, in order). The result does not depend on the number of processes:
    micro-batch ``k`` of a step is the same samples whichever process takes it.
    """

    def __init__(self, pool: np.ndarray, weights: np.ndarray | None, batch_size: int,
                 micro_batch_size: int, seed: int, stage: str, start: int, steps: int,
                 rank: int = 0, world: int = 1) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if batch_size % (micro_batch_size * world):
            raise ValueError(f"batch_size {batch_size} must be a multiple of micro_batch_size "
                             f"{micro_batch_size} x {world} processes")
        self.pool, self.weights = np.asarray(pool), weights
        self.batch_size, self.micro = batch_size, micro_batch_size
        self.seed, self.stage, self.start, self.steps = seed, stage, start, steps
        self.rank, self.world = rank, world
        self.micro_per_rank = batch_size // (micro_batch_size * world)
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Pool positions of one epoch (len(pool) draws) of this stage's stream."""
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        g = generator(self.seed, self.stage, "epoch", epoch)
        n = len(self.pool)
        if self.weights is None:
            order = torch.randperm(n, generator=g).numpy()
        else:
            w = torch.as_tensor(self.weights, dtype=torch.float64)
            order = torch.multinomial(w, n, replacement=True, generator=g).numpy()
        self._epoch_cache = (epoch, order)
        return order

    def global_batch(self, step: int) -> list[int]:
        """Dataset indices of the global batch of ``step``."""
        n, out = len(self.pool), []
        position = step * self.batch_size
        while len(out) < self.batch_size:
            epoch, offset = divmod(position, n)
            take = min(self.batch_size - len(out), n - offset)
            out.extend(self.pool[self.epoch_order(epoch)[offset: offset + take]].tolist())
            position += take
        return out

    def micro_batches(self, step: int) -> list[list[int]]:
        """The micro-batches of ``step`` that this process computes."""
        batch = self.global_batch(step)
        first = self.rank * self.micro_per_rank
        return [batch[(first + k) * self.micro: (first + k + 1) * self.micro]
                for k in range(self.micro_per_rank)]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            yield from self.micro_batches(step)

    def __len__(self) -> int:
        return max(self.steps - self.start, 0) * self.micro_per_rank


class _Batches(torch.utils.data.Dataset):
    """``dataset[list of indices]`` -> collated ModelInputs (or the samples themselves)."""

    def __init__(self, dataset: Sequence[DrivingSample], processor: Any) -> None:
        self.dataset, self.processor = dataset, processor

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> Any:
        samples = [self.dataset[i] for i in indices]
        return samples if self.processor is None else self.processor(samples)


def _identity(item: Any) -> Any:
    return item


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(dataset: Sequence[DrivingSample], sampler: Any, processor: Any,
                workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader yielding one collated micro-batch per item of ``sampler``.

    ``processor`` None yields lists of samples (the RL step collates itself).
    """
    return torch.utils.data.DataLoader(
        _Batches(dataset, processor), sampler=sampler, batch_size=None, collate_fn=_identity,
        num_workers=workers, worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None, persistent_workers=False)


def eval_indices(size: int, limit: int) -> list[int]:
    """At most ``limit`` evenly spaced indices of ``range(size)`` (all when it fits)."""
    if limit <= 0 or size <= 0:
        return []
    if size <= limit:
        return list(range(size))
    return np.linspace(0, size - 1, limit).round().astype(int).tolist()
