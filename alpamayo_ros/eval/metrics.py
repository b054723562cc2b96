"""Open-loop metrics of predicted plans and reasoning: small pure functions.

- Displacement: :func:`ade`, :func:`fde` (one plan) and :func:`min_ade` / :func:`min_fde`
  (best of K plans, AR1's minADE_K) against the true future, over the 64 waypoints
  (6.4 s) of the ego frame.
- Decisions: :func:`predicted_decisions` parses generated reasoning with
  :func:`alpamayo_ros.data.consistency.parse_reasoning`; an ambiguous channel, or a text
  that names no decision at all (unparseable), counts wrong. :class:`ConfusionTable`
  tallies truth x prediction over ``taxonomy.LONGITUDINAL_CLASSES`` /
  ``LATERAL_CLASSES`` plus an ``unparseable`` column. :func:`majority_class` is the
  majority-class baseline's prediction.
- Comfort: :func:`comfort_violations` checks a plan's unicycle controls against AR1's
  release comfort bounds (jerk, longitudinal jerk, lateral acceleration, longitudinal
  acceleration, yaw rate, yaw acceleration: :mod:`alpamayo_ros.safety.limits`) with the
  safety monitor's check functions (:mod:`alpamayo_ros.safety.checks`).
- :func:`mean_or_none` aggregates a column, ``None`` where nothing was measured.

Collisions are computed with :func:`alpamayo_ros.eval.scene.plan_collides`;
consistency with :func:`alpamayo_ros.data.consistency.consistency_score`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from alpamayo_ros.data.consistency import parse_reasoning
from alpamayo_ros.safety import checks
from alpamayo_ros.safety.limits import (
    AR1_MAX_JERK_MPS3,
    AR1_MAX_LATERAL_ACCEL_MPS2,
    AR1_MAX_LONGITUDINAL_ACCEL_MPS2,
    AR1_MAX_LONGITUDINAL_JERK_MPS3,
    AR1_MAX_YAW_ACCEL_RADPS2,
    AR1_MAX_YAW_RATE_RADPS,
    AR1_MIN_LONGITUDINAL_ACCEL_MPS2,
)
from alpamayo_ros.taxonomy import LATERAL_CLASSES, LONGITUDINAL_CLASSES
from alpamayo_ros.trajectory import Trajectory

UNPARSEABLE = "unparseable"  # the extra prediction column of a confusion table


# --------------------------------------------------------------------------- displacement
def _xy(plan: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(plan, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-1] < 2:
        raise ValueError(f"{name} must be (..., T, >=2), got shape {arr.shape}")
    return arr[..., :2]


def displacement_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Euclidean error per waypoint, ``(..., T)``, of plans ``(..., T, >=2)`` vs ``(T, >=2)``.

    Only x, y are compared (a heading column is ignored).
    """
    p, t = _xy(pred, "pred"), _xy(truth, "truth")
    if t.ndim != 2 or p.shape[-2:] != t.shape:
        raise ValueError(f"pred {p.shape[-2:]} and truth {t.shape} waypoints differ")
    return np.linalg.norm(p - t, axis=-1)


def ade(pred: np.ndarray, truth: np.ndarray) -> float:
    """Average displacement error (m) of one plan ``(T, >=2)``."""
    err = displacement_errors(pred, truth)
    if err.ndim != 1:
        raise ValueError(f"ade takes one plan (T, >=2), got shape {np.shape(pred)}")
    return float(err.mean())


def fde(pred: np.ndarray, truth: np.ndarray) -> float:
    """Final displacement error (m) of one plan: the error at the last waypoint (6.4 s)."""
    err = displacement_errors(pred, truth)
    if err.ndim != 1:
        raise ValueError(f"fde takes one plan (T, >=2), got shape {np.shape(pred)}")
    return float(err[-1])


def min_ade(preds: np.ndarray, truth: np.ndarray) -> float:
    """minADE_K (m): the smallest ADE over K plans ``(K, T, >=2)``."""
    err = displacement_errors(preds, truth)
    if err.ndim != 2 or err.shape[0] < 1:
        raise ValueError(f"min_ade takes plans (K>=1, T, >=2), got shape {np.shape(preds)}")
    return float(err.mean(axis=-1).min())


def min_fde(preds: np.ndarray, truth: np.ndarray) -> float:
    """minFDE_K (m): the smallest final displacement over K plans ``(K, T, >=2)``."""
    err = displacement_errors(preds, truth)
    if err.ndim != 2 or err.shape[0] < 1:
        raise ValueError(f"min_fde takes plans (K>=1, T, >=2), got shape {np.shape(preds)}")
    return float(err[:, -1].min())


# --------------------------------------------------------------------------- decisions
def predicted_decisions(text: str) -> tuple[str | None, str | None]:
    """``(lon, lat)`` decisions named by reasoning text; ``None`` marks a wrong channel.

    A channel is ``None`` when the text names several decisions on it (ambiguous) or
    when the text names no decision on either channel (unparseable: the model did not
    explain itself). Otherwise a channel is a decision value or ``""`` (no decision).
    """
    parsed = parse_reasoning(text)
    if not parsed.parseable:
        return None, None
    return parsed.longitudinal, parsed.lateral


def decision_correct(predicted: str | None, truth: str) -> bool:
    """Whether a predicted channel equals the truth (``None``, unparseable, is wrong)."""
    return predicted is not None and predicted == truth


class ConfusionTable:
    """Counts of (true class, predicted class) for one decision channel.

    Rows are ``classes``; columns are ``classes`` plus :data:`UNPARSEABLE` (a ``None``
    prediction). A truth or prediction outside ``classes`` raises ValueError.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"classes must be distinct and non-empty, got {classes!r}")
        self.classes = tuple(classes)
        self.counts = np.zeros((len(classes), len(classes) + 1), dtype=np.int64)

    @classmethod
    def longitudinal(cls) -> ConfusionTable:
        """A table over :data:`~alpamayo_ros.taxonomy.LONGITUDINAL_CLASSES`."""
        return cls(LONGITUDINAL_CLASSES)

    @classmethod
    def lateral(cls) -> ConfusionTable:
        """A table over :data:`~alpamayo_ros.taxonomy.LATERAL_CLASSES`."""
        return cls(LATERAL_CLASSES)

    def _index(self, name: str, what: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError as exc:
            raise ValueError(f"{what} {name!r} is not one of {self.classes}") from exc

    def add(self, truth: str, predicted: str | None) -> None:
        """Count one sample."""
        row = self._index(truth, "truth")
        col = len(self.classes) if predicted is None else self._index(predicted, "predicted")
        self.counts[row, col] += 1

    @property
    def total(self) -> int:
        """Samples counted."""
        return int(self.counts.sum())

    def accuracy(self) -> float | None:
        """Share of samples on the diagonal; None when empty."""
        if self.total == 0:
            return None
        return float(np.trace(self.counts[:, : len(self.classes)]) / self.total)

    def to_dict(self) -> dict:
        """JSON-ready: row and column names (``""`` shown as ``"none"``) and counts."""
        names = [c or "none" for c in self.classes]
        return {"rows": names, "columns": names + [UNPARSEABLE],
                "counts": self.counts.tolist(), "accuracy": self.accuracy()}


def majority_class(class_ids: Iterable[int] | np.ndarray, num_classes: int) -> int:
    """Most frequent class id (ids < 0 = unknown are ignored; ties go to the lower id).

    Raises ValueError when no id is known or one is ``>= num_classes``.
    """
    ids = np.asarray(list(class_ids) if not isinstance(class_ids, np.ndarray) else class_ids,
                     dtype=np.int64).ravel()
    ids = ids[ids >= 0]
    if ids.size == 0:
        raise ValueError("majority_class needs at least one known class id")
    if ids.max() >= num_classes:
        raise ValueError(f"class id {int(ids.max())} >= num_classes {num_classes}")
    return int(np.argmax(np.bincount(ids, minlength=num_classes)))


def majority_decisions(decision_ids: np.ndarray) -> tuple[str, str]:
    """The majority-class baseline: most frequent ``(lon, lat)`` names per channel.

    ``decision_ids`` ``(N, 2)``: class ids into ``LONGITUDINAL_CLASSES`` /
    ``LATERAL_CLASSES`` (``taxonomy.decision_class_ids``), -1 = unknown.
    """
    ids = np.asarray(decision_ids, dtype=np.int64)
    if ids.ndim != 2 or ids.shape[1] != 2:
        raise ValueError(f"decision_ids must be (N, 2), got shape {ids.shape}")
    lon = majority_class(ids[:, 0], len(LONGITUDINAL_CLASSES))
    lat = majority_class(ids[:, 1], len(LATERAL_CLASSES))
    return LONGITUDINAL_CLASSES[lon], LATERAL_CLASSES[lat]


# --------------------------------------------------------------------------- comfort
# AR1 release comfort bounds (= NAVSIM's / nuPlan's ego-comfort thresholds).
COMFORT_BOUNDS: dict[str, float] = {
    "jerk_mps3": AR1_MAX_JERK_MPS3,
    "longitudinal_jerk_mps3": AR1_MAX_LONGITUDINAL_JERK_MPS3,
    "lateral_accel_mps2": AR1_MAX_LATERAL_ACCEL_MPS2,
    "max_longitudinal_accel_mps2": AR1_MAX_LONGITUDINAL_ACCEL_MPS2,
    "min_longitudinal_accel_mps2": AR1_MIN_LONGITUDINAL_ACCEL_MPS2,
    "yaw_rate_radps": AR1_MAX_YAW_RATE_RADPS,
    "yaw_accel_radps2": AR1_MAX_YAW_ACCEL_RADPS2,
}


def comfort_violations(acceleration_mps2: np.ndarray, curvature_per_m: np.ndarray,
                       v0_mps: float) -> dict[str, float]:
    """The AR1 comfort bounds a plan's controls ``(T,)`` break: ``{name: worst value}``.

    The plan is the unicycle integration of the controls from ``v0_mps``
    (:meth:`Trajectory.from_controls`); the checks are the safety monitor's (the first
    step is not differenced against the current acceleration). Empty = comfortable. A
    non-finite control breaks every bound it touches (NaN never passes).
    """
    traj = Trajectory.from_controls(acceleration_mps2, curvature_per_m, float(v0_mps))
    results = {
        "jerk_mps3": checks.check_jerk(traj, AR1_MAX_JERK_MPS3),
        "longitudinal_jerk_mps3": checks.check_longitudinal_jerk(
            traj, AR1_MAX_LONGITUDINAL_JERK_MPS3),
        "lateral_accel_mps2": checks.check_lateral_accel(traj, AR1_MAX_LATERAL_ACCEL_MPS2),
        "max_longitudinal_accel_mps2": checks.check_max_accel(
            traj, AR1_MAX_LONGITUDINAL_ACCEL_MPS2),
        "min_longitudinal_accel_mps2": checks.check_min_accel(
            traj, AR1_MIN_LONGITUDINAL_ACCEL_MPS2),
        "yaw_rate_radps": checks.check_yaw_rate(traj, AR1_MAX_YAW_RATE_RADPS),
        "yaw_accel_radps2": checks.check_yaw_accel(traj, AR1_MAX_YAW_ACCEL_RADPS2),
    }
    return {name: value for name, (value, passed) in results.items() if not passed}


def is_comfortable(acceleration_mps2: np.ndarray, curvature_per_m: np.ndarray,
                   v0_mps: float) -> bool:
    """Whether the plan stays within every AR1 comfort bound."""
    return not comfort_violations(acceleration_mps2, curvature_per_m, v0_mps)


# --------------------------------------------------------------------------- aggregation
def mean_or_none(values: Iterable[float | bool | None]) -> float | None:
    """Mean of the values that are not None; None when there are none.

    NaN propagates (a non-finite plan's error must show, not vanish from the mean).
    """
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
