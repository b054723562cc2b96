"""Dataset specification: which episodes a training set holds and how they are stored.

A :class:`DatasetSpec` names the scenario families, the seed range of each split (train
``[0, N)``, val ``[8000, 8000+M)``, test ``[9000, 9000+K)``: seeds at or above
:data:`TEST_SEED_MIN` belong to the test split only, so a model is never trained or
tuned on a test scenario), the camera rig and the stored image size, the sample stride
and the number of history frames. It loads from YAML (``config/data/*.yaml``) and has a
content hash: :meth:`DatasetSpec.episode_hash` covers what changes an episode's stored
content (so the builder can skip episodes already built with the same settings even when
split sizes grow), :meth:`DatasetSpec.content_hash` the whole spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

DATASET_FORMAT_VERSION = 4  # 2: frames.npy starts at meta["first_frame"], labels.jsonl; 3: the
# perception vectors carry ego_heading_error (87 fields, session 17); 4: and the lane centre
# ahead, lane_center_y_* (90 fields, session 18)
# What the stored images look like (alpamayo_ros.data.render), part of the episode and
# content hashes so that `dataset build` rebuilds the episodes of an older renderer instead
# of skipping them; readers do not check it. 2: signal heads 2.5x (session 12); 3: signal heads
# 30 m past the stop line across the junction instead of 1 m (session 20).
RENDERER_VERSION = 3
TEST_SEED_MIN = 9000  # seeds >= this are test scenarios
SPLITS = ("train", "val", "test")


def _range(value, name: str) -> tuple[int, int]:
    try:
        start, stop = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be [start, stop) as two integers, got {value!r}") from exc
    if not 0 <= start <= stop:
        raise ValueError(f"{name} must satisfy 0 <= start <= stop, got [{start}, {stop})")
    return start, stop


@dataclass
class DatasetSpec:
    """What to build: families x seeds per split, rig, stored image size, sampling."""

    families: list[str] | str = "all"  # family names, or "all" (alpamayo_ros.data.scenarios)
    train_seeds: tuple[int, int] = (0, 16)  # [start, stop)
    val_seeds: tuple[int, int] = (8000, 8002)
    test_seeds: tuple[int, int] = (TEST_SEED_MIN, TEST_SEED_MIN + 4)
    rig: str = "train_small"  # alpamayo_ros.data.cameras.RIG_PRESETS
    cameras: list[str] | None = None  # subset of the rig's cameras (default: all)
    image_height_px: int = 96  # stored size (the default model preset's input)
    image_width_px: int = 160
    stride: int = 1  # steps between samples
    history_frames: int = 2  # camera frames per sample (the last ones, oldest first)
    duration_s: float | None = None  # clip length; None: the family's default
    # Disturbed starts of train episodes (alpamayo_ros.data.recovery.RecoveryConfig);
    # val and test episodes are never disturbed.
    recovery: dict = field(default_factory=dict)
    # Episodes with traffic signals also store their frames drawn with red and green
    # exchanged (``frames_signal_swap.npy``): perception-only training samples in which
    # the lamp, not the ego's or the traffic's motion, tells the colour
    # (StageConfig.signal_counterfactual_share; docs/RESULTS.md has the measurement).
    signal_counterfactuals: bool = False
    name: str = ""  # free text, not hashed
    extra: dict = field(default_factory=dict)  # free notes, not hashed

    def __post_init__(self) -> None:
        from alpamayo_ros.data.cameras import RIG_PRESETS, make_rig
        from alpamayo_ros.data.scenarios import FAMILIES

        if isinstance(self.families, str):
            if self.families != "all":
                raise ValueError(f"families must be a list of names or 'all', got "
                                 f"{self.families!r}")
        else:
            self.families = [str(f) for f in self.families]
            bad = [f for f in self.families if f not in FAMILIES]
            if bad or not self.families:
                raise ValueError(f"families: unknown {bad} or empty; choose from "
                                 f"{sorted(FAMILIES)}")
            if len(set(self.families)) != len(self.families):
                raise ValueError(f"families must be unique, got {self.families}")
        self.train_seeds = _range(self.train_seeds, "train_seeds")
        self.val_seeds = _range(self.val_seeds, "val_seeds")
        self.test_seeds = _range(self.test_seeds, "test_seeds")
        for split in ("train", "val"):
            start, stop = self.seeds(split)
            if stop > TEST_SEED_MIN:
                raise ValueError(
                    f"{split}_seeds [{start}, {stop}) overlaps the test seed range "
                    f"(seeds >= {TEST_SEED_MIN} are test scenarios only)")
        if self.test_seeds[0] < TEST_SEED_MIN and self.test_seeds[0] < self.test_seeds[1]:
            raise ValueError(f"test_seeds must start at >= {TEST_SEED_MIN}, got "
                             f"{list(self.test_seeds)}")
        (a0, a1), (b0, b1) = self.train_seeds, self.val_seeds
        if max(a0, b0) < min(a1, b1):
            raise ValueError(f"train_seeds {list(self.train_seeds)} and val_seeds "
                             f"{list(self.val_seeds)} overlap")
        if self.rig not in RIG_PRESETS:
            raise ValueError(f"rig must be one of {sorted(RIG_PRESETS)}, got {self.rig!r}")
        names = [c.name for c in make_rig(self.rig).cameras]
        if self.cameras is not None:
            self.cameras = [str(c) for c in self.cameras]
            bad = [c for c in self.cameras if c not in names]
            if bad or not self.cameras:
                raise ValueError(f"cameras: {bad or 'empty'} not in rig {self.rig!r} ({names})")
        if not (8 <= self.image_height_px <= 2048 and 8 <= self.image_width_px <= 2048):
            raise ValueError(f"image_height_px/image_width_px must be in [8, 2048], got "
                             f"{self.image_height_px}x{self.image_width_px}")
        if not isinstance(self.signal_counterfactuals, bool):
            raise ValueError(f"signal_counterfactuals must be true or false, got "
                             f"{self.signal_counterfactuals!r}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.history_frames < 1:
            raise ValueError(f"history_frames must be >= 1, got {self.history_frames}")
        from alpamayo_ros.data.recovery import RecoveryConfig

        self.recovery = RecoveryConfig.from_dict(self.recovery).to_dict()
        if self.duration_s is not None and not 8.5 <= float(self.duration_s) <= 600.0:
            raise ValueError(f"duration_s must be in [8.5, 600] (16 history + 64 future "
                             f"steps) or null, got {self.duration_s}")

    # ------------------------------------------------------------------ queries
    def family_names(self) -> list[str]:
        """The families, sorted ("all" resolved against the current scenario list)."""
        from alpamayo_ros.data.scenarios import FAMILIES

        return sorted(FAMILIES) if self.families == "all" else sorted(self.families)

    def seeds(self, split: str) -> tuple[int, int]:
        """``[start, stop)`` seed range of a split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return {"train": self.train_seeds, "val": self.val_seeds,
                "test": self.test_seeds}[split]

    def episodes(self, split: str, seeds: tuple[int, int] | None = None
                 ) -> list[tuple[str, int]]:
        """``(family, seed)`` of a split, optionally restricted to a seed range (shards)."""
        start, stop = self.seeds(split)
        if seeds is not None:
            lo, hi = _range(seeds, "seeds")
            start, stop = max(start, lo), min(stop, hi)
        return [(f, s) for f in self.family_names() for s in range(start, stop)]

    def camera_names(self) -> list[str]:
        """Stored cameras in order."""
        from alpamayo_ros.data.cameras import make_rig

        names = [c.name for c in make_rig(self.rig).cameras]
        return list(self.cameras) if self.cameras is not None else names

    # ------------------------------------------------------------------ hashing / io
    def to_dict(self) -> dict:
        """Plain JSON-able dict (the YAML/JSON form)."""
        d = asdict(self)
        d["train_seeds"], d["val_seeds"], d["test_seeds"] = (
            list(self.train_seeds), list(self.val_seeds), list(self.test_seeds))
        return d

    def episode_hash(self, split: str | None = None) -> str:
        """Hash of everything that changes one stored episode of ``split``.

        Not the split sizes. The recovery settings change train episodes only; ``None``
        is any other split.
        """
        keys = ("rig", "cameras", "image_height_px", "image_width_px", "stride",
                "history_frames", "duration_s")
        d = {k: self.to_dict()[k] for k in keys}
        d["cameras"] = self.camera_names()
        d["format"] = DATASET_FORMAT_VERSION
        d["renderer"] = RENDERER_VERSION
        if split == "train" and self.recovery_config().share > 0.0:
            d["recovery"] = self.recovery
        if self.signal_counterfactuals:
            d["signal_counterfactuals"] = True
        return _sha(d)

    def recovery_config(self):
        """The disturbed-start settings (alpamayo_ros.data.recovery.RecoveryConfig)."""
        from alpamayo_ros.data.recovery import RecoveryConfig

        return RecoveryConfig.from_dict(self.recovery)

    def content_hash(self) -> str:
        """Hash of the whole spec (families resolved), names and notes excluded."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("name", "extra")}
        if not self.signal_counterfactuals:  # the hashes of specs from before the option
            del d["signal_counterfactuals"]
        d["families"] = self.family_names()
        d["format"] = DATASET_FORMAT_VERSION
        d["renderer"] = RENDERER_VERSION
        return _sha(d)

    @classmethod
    def from_dict(cls, data: dict) -> DatasetSpec:
        """Build from a dict; unknown keys raise ValueError naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"a dataset spec must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown dataset spec keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetSpec:
        """Load a spec from a YAML file."""
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        return cls.from_dict(data)

    load = from_yaml  # alias: DatasetSpec.load(path)


def _sha(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
