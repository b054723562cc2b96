"""Recovery starts: train episodes that begin off the expert's path and return to it.

An expert that always drives on the lane centre at the speed it chose never shows a
policy what to do anywhere else. In closed loop a small heading error then compounds
(on a straight road 0.05 m off the centre at 5 s, 19 m at 19 s: docs/RESULTS.md), and a
policy that was made to brake keeps braking, because its ego history says it was. This
is the covariate shift that ChauffeurNet (Bansal et al., 2018: perturbed ego histories
with the expert's return as the target) and DAgger (Ross et al., 2011: train on the
states the learner visits) address.

Here a train episode may start *disturbed*: the ego is put off its lane centre with a
heading error, and for a drift window it neither steers (its heading relative to the
road is held) nor, in some episodes, keeps its speed (an imposed deceleration). Then the
expert takes over and drives back. Samples start at the takeover
(:attr:`~alpamayo_ros.data.scenarios.Episode.first_sample_index`), so every sample's
future is the expert's own driving, the recovery included, while its ego history and
camera frames show the disturbed state. Val and test episodes are never disturbed
(:mod:`alpamayo_ros.data.episodes` draws disturbances for the train split only).

Some braked drifts go on to a standstill (``stop_share``): the ego brakes to a stop and
stands for ``stop_hold_s`` before the takeover, as after a fault the safety monitor
answered with a minimal-risk stop. The expert then drives off, or keeps waiting when the
scene says so (a red light, a stopped lead), so a history that says "stopped" is no
longer a reason to stay stopped on its own: the cameras have to decide (the soak's
"driving resumed" check, docs/RELIABILITY.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from alpamayo_ros.data.world import DT_S, EgoState

__all__ = ["Disturbance", "RecoveryConfig", "draw_disturbance"]

# Jerk of the imposed deceleration's onset, as the expert's own limit (expert.MAX_JERK_MPS3).
DRIFT_JERK_MPS3 = 10.0


@dataclass(frozen=True)
class RecoveryConfig:
    """How many train episodes start disturbed, and how far."""

    share: float = 0.0  # share of train episodes that start disturbed (0 = none)
    max_offset_m: float = 0.8  # initial offset from the lane centre, uniform in +-
    max_heading_rad: float = 0.06  # initial heading error to the road, uniform in +-
    drift_s: tuple[float, float] = (1.0, 2.5)  # drift window before the takeover, uniform
    brake_share: float = 0.5  # share of disturbed episodes with an imposed deceleration
    brake_mps2: tuple[float, float] = (1.0, 3.5)  # its magnitude, uniform
    max_drift_offset_m: float = 1.3  # the drift ends early this far off (inside the lane)
    stop_share: float = 0.0  # share of braked drifts that brake to a standstill (0 = none)
    stop_mps2: tuple[float, float] = (2.0, 4.0)  # their deceleration, uniform
    stop_hold_s: tuple[float, float] = (0.5, 2.5)  # standing time before the takeover

    def __post_init__(self) -> None:
        for name in ("share", "brake_share", "stop_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"recovery.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.max_offset_m < self.max_drift_offset_m <= 1.5:
            raise ValueError(
                "recovery: need 0 <= max_offset_m < max_drift_offset_m <= 1.5 (m, inside "
                f"the lane), got {self.max_offset_m} and {self.max_drift_offset_m}")
        if not 0.0 <= self.max_heading_rad <= 0.3:
            raise ValueError(f"recovery.max_heading_rad must be in [0, 0.3], got "
                             f"{self.max_heading_rad}")
        # uniform ranges [lo, hi]: (name, lowest lo, whether lo may equal it, highest hi)
        for name, low, low_allowed, high in (("drift_s", 0.0, False, 5.0),
                                             ("brake_mps2", 0.0, True, 7.0),
                                             ("stop_mps2", 0.0, False, 7.0),
                                             ("stop_hold_s", 0.0, True, 5.0)):
            lo, hi = (float(v) for v in getattr(self, name))
            object.__setattr__(self, name, (lo, hi))
            if not ((lo >= low if low_allowed else lo > low) and lo <= hi <= high):
                bound = f"{low:g} <= lo" if low_allowed else f"{low:g} < lo"
                raise ValueError(f"recovery.{name} must be [lo, hi] with {bound} <= hi <= "
                                 f"{high:g}, got {[lo, hi]}")

    @classmethod
    def from_dict(cls, data: dict | RecoveryConfig | None) -> RecoveryConfig:
        """From the spec's ``recovery:`` mapping; unknown keys raise ValueError naming them."""
        if data is None:
            return cls()
        if isinstance(data, RecoveryConfig):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"recovery must be a mapping, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recovery keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        d = asdict(self)
        for key in ("drift_s", "brake_mps2", "stop_mps2", "stop_hold_s"):
            d[key] = list(d[key])
        return d


@dataclass(frozen=True)
class Disturbance:
    """One episode's disturbed start: applied by :func:`alpamayo_ros.data.scenarios.simulate`."""

    offset_m: float  # added to the ego's lateral position at t = 0 (left +)
    heading_rad: float  # heading relative to the road at t = 0 (left +)
    drift_steps: int  # steps without steering (and with the imposed deceleration)
    decel_mps2: float  # imposed deceleration during the drift; 0 = the expert's speed
    max_offset_m: float  # the drift ends early once this far from the start lane's centre
    # Steps to stand still before the takeover; -1: not a standstill drift (its length is
    # drift_steps). A standstill drift brakes at decel_mps2 for as long as it takes.
    hold_steps: int = -1

    def continues(self, steps_done: int, standstill_steps: int) -> bool:
        """Whether the drift goes on after ``steps_done`` steps (``standstill_steps`` at 0 m/s)."""
        if self.hold_steps >= 0:
            return standstill_steps < self.hold_steps
        return steps_done < self.drift_steps

    def start(self, ego: EgoState) -> float:
        """Put the ego off its path; returns the lane centre it started on."""
        centre = ego.d
        ego.d += self.offset_m
        ego.heading_offset_rad = self.heading_rad
        ego.vd_mps = ego.v_mps * math.tan(self.heading_rad)
        return centre

    def drift(self, ego: EgoState, before: EgoState, centre_d: float) -> bool:
        """Replace the expert's last step by a drift from ``before``; False ends the drift.

        The heading relative to the road is held (nobody steers); the speed is the
        expert's, or the imposed deceleration reached at :data:`DRIFT_JERK_MPS3`.
        """
        if self.decel_mps2 > 0.0:
            step = DRIFT_JERK_MPS3 * DT_S
            acc = float(np.clip(-self.decel_mps2, before.accel_mps2 - step,
                                before.accel_mps2 + step))
            v_next = max(0.0, before.v_mps + acc * DT_S)
            if before.v_mps <= 0.0:
                acc = 0.0
            ego.s = before.s + 0.5 * (before.v_mps + v_next) * DT_S
            ego.v_mps, ego.accel_mps2 = v_next, acc
        ego.heading_offset_rad = before.heading_offset_rad
        ego.vd_mps = ego.v_mps * math.tan(before.heading_offset_rad)
        ego.d = before.d + ego.vd_mps * DT_S
        return abs(ego.d - centre_d) < self.max_offset_m


def draw_disturbance(config: RecoveryConfig, family: str, seed: int) -> Disturbance | None:
    """The disturbance of train episode ``(family, seed)``, or None (reproducible).

    Drawn from a stream of its own, so the scenario's layout and command do not change.
    """
    from alpamayo_ros.data.scenarios import FAMILIES

    if config.share <= 0.0:
        return None
    rng = np.random.default_rng([seed, sorted(FAMILIES).index(family), 2])
    if rng.random() >= config.share:
        return None
    offset = float(rng.uniform(-config.max_offset_m, config.max_offset_m))
    heading = float(rng.uniform(-config.max_heading_rad, config.max_heading_rad))
    drift_steps = int(round(float(rng.uniform(*config.drift_s)) / DT_S))
    decel = (float(rng.uniform(*config.brake_mps2)) if rng.random() < config.brake_share
             else 0.0)
    hold_steps = -1
    if decel > 0.0 and config.stop_share > 0.0:
        # its own stream: the draws above stay those of a spec without stop_share
        stop_rng = np.random.default_rng([seed, sorted(FAMILIES).index(family), 3])
        if stop_rng.random() < config.stop_share:
            decel = float(stop_rng.uniform(*config.stop_mps2))
            hold_steps = int(round(float(stop_rng.uniform(*config.stop_hold_s)) / DT_S))
            heading = 0.0  # a long straight stop: a heading error would end it at the bound
    return Disturbance(offset, heading, max(1, drift_steps), decel, config.max_drift_offset_m,
                       hold_steps)
