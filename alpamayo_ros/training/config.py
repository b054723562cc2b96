"""Training recipes: a YAML file -> a validated :class:`TrainConfig` dataclass tree.

A recipe names the model (a preset plus overrides), the data (a dataset root and its
split names, or the dataset spec to build it from), the seed and output directories, and
one :class:`StageConfig` per stage of Alpamayo-R1's recipe:

- ``pretrain``: action-modality injection (trajectory tokens, flow matching and the
  auxiliary perception/decision heads on every sample; reasoning weight 0);
- ``sft``: Chain-of-Causality supervised fine-tuning (reasoning + trajectory + aux),
  class-balanced sampling;
- ``rl``: GRPO post-training (:mod:`alpamayo_ros.training.grpo`), its settings under
  ``rl:`` (a ``grpo.RLConfig``).

Unknown keys are errors naming the key's path; every field is checked in
``__post_init__`` with a message naming it. ``load_config(path)`` reads a recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alpamayo_ros.model.modeling import LOSS_NAMES
from alpamayo_ros.perception import field_weight_vector

STAGES = ("pretrain", "sft", "rl")
SCHEDULES = ("cosine", "linear", "constant")
DATA_SOURCES = ("episodes", "synthetic")
PRECISIONS = ("fp32", "bf16", "auto")
EXPORT_SELECT = ("best", "last")


def _check_int(obj: Any, name: str, minimum: int) -> None:
    value = getattr(obj, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{type(obj).__name__}.{name} must be an int >= {minimum}, "
                         f"got {value!r}")


def _check_float(obj: Any, name: str, low: float, high: float = float("inf"),
                 low_open: bool = False) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{type(obj).__name__}.{name} must be a number, got {value!r}")
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}"
                                                        if high != float("inf") else "")
        raise ValueError(f"{type(obj).__name__}.{name} must be {bound}, got {value!r}")
    setattr(obj, name, float(value))


def _check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ValueError(f"{type(obj).__name__}.{name} must be one of {choices}, got {value!r}")


def _check_str(obj: Any, name: str) -> None:
    if not isinstance(getattr(obj, name), str):
        raise ValueError(f"{type(obj).__name__}.{name} must be a string, "
                         f"got {getattr(obj, name)!r}")


@dataclass
class ModelSection:
    """Which model to build: a preset of :mod:`alpamayo_ros.model.configuration` + overrides."""

    preset: str = "tiny"
    overrides: dict = field(default_factory=dict)  # PolicyConfig fields, nested dicts merged

    def __post_init__(self) -> None:
        from alpamayo_ros.model.configuration import PRESETS

        _check_choice(self, "preset", PRESETS)
        if not isinstance(self.overrides, dict):
            raise ValueError(f"ModelSection.overrides must be a mapping, got {self.overrides!r}")

    def policy_config(self) -> Any:
        """The :class:`PolicyConfig` this section describes (validated by the model code)."""
        from alpamayo_ros.model.configuration import preset

        return preset(self.preset, **self.overrides)


@dataclass
class DataSection:
    """Where the samples come from.

    ``source: episodes`` reads :class:`alpamayo_ros.data.episodes.EpisodeDataset` at
    ``root`` (built from the dataset spec file ``spec`` when ``root`` has no data yet).
    ``source: synthetic`` makes ``synthetic_samples`` random samples per split from
    :mod:`alpamayo_ros.model.synthetic` (tests of the trainer only: not driving data).
    """

    source: str = "episodes"
    root: str = ""
    spec: str = ""
    train_split: str = "train"
    val_split: str = "val"
    val_samples: int = 256  # val losses on at most this many (evenly spaced) samples
    workers: int = 0  # DataLoader worker processes (0: load in the training process)
    build_workers: int = 0  # processes building missing episodes of ``spec`` (0: one per CPU)
    synthetic_samples: int = 32
    max_truncated_share: float = 0.02  # refuse a token budget that cuts more CoC texts

    def __post_init__(self) -> None:
        _check_choice(self, "source", DATA_SOURCES)
        for name in ("root", "spec", "train_split", "val_split"):
            _check_str(self, name)
        if self.source == "episodes" and not self.root:
            raise ValueError("DataSection.root is required when DataSection.source is "
                             "'episodes'")
        _check_int(self, "val_samples", 0)
        _check_int(self, "workers", 0)
        _check_int(self, "build_workers", 0)
        _check_int(self, "synthetic_samples", 1)
        _check_float(self, "max_truncated_share", 0.0, 1.0)


@dataclass
class StageConfig:
    """Optimisation and sampling of one stage (``steps: 0`` skips the stage)."""

    steps: int = 0
    batch_size: int = 8  # global: all processes together
    micro_batch_size: int = 0  # samples per compute_losses call (0: batch_size / processes)
    lr: float = 3e-4
    min_lr: float = 3e-5  # end of the schedule
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.95)
    warmup_steps: int = 0
    schedule: str = "cosine"
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    loss_weights: dict = field(default_factory=dict)  # over LOSS_NAMES; missing names: 0
    # reasoning tokens inside a decision phrase count this many times in the reasoning
    # loss (AlpamayoModel.compute_losses; 1: every token alike)
    decision_token_weight: float = 1.0
    # perception field name -> its weight in the perception loss's per-sample mean (others
    # 1; alpamayo_ros.perception.PERCEPTION_FIELDS): a few pixels' object fields need more
    # than their 1/86 share (session 11, docs/RESULTS.md)
    perception_field_weights: dict = field(default_factory=dict)
    # Share of training samples (pretrain/sft) whose camera images are all black, targets
    # kept: with no scene to read, the best answer is the prior given the ego history and the
    # route, so a dead camera set makes the policy answer as the majority does instead of
    # reading noise (training.data.blank_images).
    blank_images_share: float = 0.0
    # Share of training samples (pretrain/sft) drawn from the signal counterfactuals
    # (EpisodeDataset(signal_counterfactuals=True): frames with every signal's red and green
    # exchanged, perception loss only). The ego's and the traffic's motion tell a signal's
    # colour in the expert's data (it brakes for red), so without them the perception head
    # never looked at the lamp (session 13, docs/RESULTS.md). Needs a dataset built with
    # DatasetSpec.signal_counterfactuals.
    signal_counterfactual_share: float = 0.0
    # Sampling (pretrain/sft; rl picks prompts by disagreement, grpo.DisagreementPool):
    balanced: bool = False  # class-balanced sampling over the (lon, lat) decision classes
    keyframe_share: float = 0.0  # expected share of CoC keyframes per batch (0: natural)
    text_only: bool = False  # only samples that carry a CoC text
    log_every: int = 10
    eval_every: int = 0  # val losses every N steps (0: only at the end)
    save_every: int = 0  # checkpoint every N steps (0: only at the end)
    init: str = ""  # weights dir to start from ("" = previous stage's weights, or fresh)
    rl: dict = field(default_factory=dict)  # grpo.RLConfig fields (stage "rl" only)

    def __post_init__(self) -> None:
        for name, low in (("steps", 0), ("batch_size", 1), ("micro_batch_size", 0),
                          ("warmup_steps", 0), ("log_every", 1), ("eval_every", 0),
                          ("save_every", 0)):
            _check_int(self, name, low)
        _check_float(self, "lr", 0.0, low_open=True)
        _check_float(self, "min_lr", 0.0)
        if self.min_lr > self.lr:
            raise ValueError(f"StageConfig.min_lr {self.min_lr} exceeds StageConfig.lr "
                             f"{self.lr}")
        _check_float(self, "weight_decay", 0.0)
        _check_float(self, "grad_clip", 0.0)
        _check_float(self, "keyframe_share", 0.0, 1.0)
        _check_float(self, "blank_images_share", 0.0, 1.0)
        # at most half: the counterfactuals train the perception head only
        _check_float(self, "signal_counterfactual_share", 0.0, 0.5)
        _check_float(self, "decision_token_weight", 1.0, 100.0)
        _check_choice(self, "schedule", SCHEDULES)
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1
                                      for b in betas):
            raise ValueError(f"StageConfig.betas must be two numbers in [0, 1), "
                             f"got {self.betas!r}")
        self.betas = tuple(float(b) for b in betas)
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ValueError(f"StageConfig.batch_size {self.batch_size} must be a multiple of "
                             f"StageConfig.micro_batch_size {self.micro_batch_size}")
        for name in ("balanced", "text_only"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"StageConfig.{name} must be true or false, "
                                 f"got {getattr(self, name)!r}")
        _check_str(self, "init")
        if not isinstance(self.loss_weights, dict):
            raise ValueError(f"StageConfig.loss_weights must be a mapping, "
                             f"got {self.loss_weights!r}")
        unknown = set(self.loss_weights) - set(LOSS_NAMES)
        if unknown:
            raise ValueError(f"StageConfig.loss_weights has unknown losses {sorted(unknown)}; "
                             f"choose from {LOSS_NAMES}")
        for name, w in self.loss_weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"StageConfig.loss_weights.{name} must be a number >= 0, "
                                 f"got {w!r}")
        self.loss_weights = {name: float(self.loss_weights.get(name, 0.0))
                             for name in LOSS_NAMES}
        if not isinstance(self.rl, dict):
            raise ValueError(f"StageConfig.rl must be a mapping, got {self.rl!r}")
        if not isinstance(self.perception_field_weights, dict):
            raise ValueError(f"StageConfig.perception_field_weights must be a mapping, "
                             f"got {self.perception_field_weights!r}")
        try:
            field_weight_vector(self.perception_field_weights)
        except ValueError as err:
            raise ValueError(f"StageConfig.perception_field_weights: {err}") from None

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based): warmup, then the schedule."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        span = max(self.steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        if self.schedule == "linear":
            frac = 1.0 - progress
        else:
            import math

            frac = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr + (self.lr - self.min_lr) * frac

    def rl_config(self) -> Any:
        """The stage's ``grpo.RLConfig`` (needs :mod:`alpamayo_ros.training.grpo`)."""
        from alpamayo_ros.training.grpo import RLConfig

        return RLConfig(**self.rl)


@dataclass
class TrainConfig:
    """A whole recipe: model, data, seed, outputs and the three stages."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=lambda: DataSection(source="synthetic"))
    pretrain: StageConfig = field(default_factory=StageConfig)
    sft: StageConfig = field(default_factory=StageConfig)
    rl: StageConfig = field(default_factory=StageConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:n] (under torchrun: the local GPU)
    # fp32 | bf16 (bf16 autocast on the device, weights and optimizer in fp32) | auto (bf16
    # where the device computes it natively: loop.resolve_precision)
    precision: str = "fp32"
    output_dir: str = "runs/train"
    export_dir: str = ""  # where the final weights + model card go ("" = no export)
    export_select: str = "best"  # best (val loss; rl: val reward, loop.rl_validation) | last

    def __post_init__(self) -> None:
        for name, cls in (("model", ModelSection), ("data", DataSection),
                          ("pretrain", StageConfig), ("sft", StageConfig),
                          ("rl", StageConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _build(cls, value, f"TrainConfig.{name}"))
            elif not isinstance(value, cls):
                raise ValueError(f"TrainConfig.{name} must be a mapping, got {value!r}")
        _check_int(self, "seed", 0)
        _check_str(self, "device")
        _check_choice(self, "precision", PRECISIONS)
        _check_str(self, "output_dir")
        _check_str(self, "export_dir")
        _check_choice(self, "export_select", EXPORT_SELECT)
        if not self.output_dir:
            raise ValueError("TrainConfig.output_dir must not be empty")
        for name in ("pretrain", "sft"):
            if self.stage(name).steps and not any(self.stage(name).loss_weights.values()):
                raise ValueError(f"TrainConfig.{name}.loss_weights: every weight is 0")
        if self.rl.balanced or self.rl.keyframe_share:
            raise ValueError("TrainConfig.rl.balanced/keyframe_share are not used: the rl stage "
                             "picks its prompts with grpo.DisagreementPool (rl.rl."
                             "disagreement_fraction); set them false/0")
        if self.rl.decision_token_weight != 1.0:
            raise ValueError("TrainConfig.rl.decision_token_weight is not used: the rl stage "
                             "has no teacher-forced reasoning loss; leave it at 1")
        if self.rl.blank_images_share:
            raise ValueError("TrainConfig.rl.blank_images_share is not used: the rl stage "
                             "scores rollouts of real scenes; leave it at 0")
        if self.rl.signal_counterfactual_share:
            raise ValueError("TrainConfig.rl.signal_counterfactual_share is not used: the rl "
                             "stage scores rollouts of real scenes; leave it at 0")
        if self.rl.steps:
            try:
                self.rl.rl_config()
            except ImportError:
                pass  # the RL step is not in this checkout: checked when the stage runs
            except TypeError as exc:
                raise ValueError(f"TrainConfig.rl.rl is not a valid RLConfig: {exc}") from exc

    def stage(self, name: str) -> StageConfig:
        """The :class:`StageConfig` of ``name`` (one of :data:`STAGES`)."""
        if name not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {name!r}")
        return getattr(self, name)

    def to_dict(self) -> dict:
        """JSON/YAML-ready dict (inverse: :func:`config_from_dict`)."""
        data = dataclasses.asdict(self)
        for name in STAGES:
            data[name]["betas"] = list(data[name]["betas"])
        return data


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown} (allowed: {sorted(names)})")
    return cls(**data)


def config_from_dict(data: dict) -> TrainConfig:
    """Build and validate a :class:`TrainConfig`; unknown keys are errors naming them."""
    return _build(TrainConfig, data, "TrainConfig")


def load_config(path: str | Path) -> TrainConfig:
    """Read a recipe YAML file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training config {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    try:
        return config_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
