"""Safety monitor: runs every check on a plan and returns a report.

A :class:`SafetyReport` maps 1:1 to the messages: each :class:`CheckResult` is one
``SafetyCheck`` (name = the limit's field name in :class:`SafetyLimits`, value, limit,
passed) and :attr:`SafetyReport.failed_checks` fills ``SafetyStatus.failed_checks``.
Advisory (``comfort_*``) checks appear with their verdict but never reject the plan and
are not listed in ``failed_checks``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alpamayo_ros.safety import checks
from alpamayo_ros.safety.collision import EgoBox, Obstacle, check_collision
from alpamayo_ros.safety.limits import SafetyLimits
from alpamayo_ros.trajectory import Trajectory

NONFINITE_VALUES = "nonfinite_values"  # count of NaN/inf values, limit 0
MIN_TIME_STEP_S = "min_time_step_s"  # shortest step, must be > 0


@dataclass(frozen=True)
class CheckResult:
    """One check on one plan (``msg/SafetyCheck.msg``)."""

    name: str
    value: float
    limit: float
    passed: bool
    advisory: bool = False


@dataclass(frozen=True)
class SafetyReport:
    """Every check run on one plan."""

    plan_stamp_ns: int
    checked_at_ns: int
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """True when no rejecting check failed: the plan may be executed."""
        return not self.failed_checks

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Names of the rejecting checks that failed."""
        return tuple(c.name for c in self.checks if not c.passed and not c.advisory)

    @property
    def failed_advisories(self) -> tuple[str, ...]:
        """Names of the advisory (comfort) checks that failed."""
        return tuple(c.name for c in self.checks if not c.passed and c.advisory)

    def __getitem__(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def summary(self) -> str:
        """One line naming each failed check with its value and limit."""
        failed = [c for c in self.checks if not c.passed and not c.advisory]
        if not failed:
            return "all checks passed"
        return "; ".join(f"{c.name} failed" if math.isnan(c.limit)  # a check with no figure
                         else f"{c.name}={c.value:.3g} (limit {c.limit:.3g})" for c in failed)


class SafetyMonitor:
    """Checks plans against :class:`SafetyLimits`; stateless apart from the limits."""

    def __init__(self, limits: SafetyLimits | None = None) -> None:
        self.limits = limits if limits is not None else SafetyLimits()
        lim = self.limits
        self.ego = EgoBox(lim.ego_length_m, lim.ego_width_m, lim.ego_center_offset_m,
                          lim.collision_margin_m)

    def check(
        self,
        traj: Trajectory,
        now_ns: int,
        obstacles: Sequence[Obstacle] = (),
        obstacles_stamp_ns: int | None = None,
    ) -> SafetyReport:
        """Run every check on ``traj`` at ``now_ns``; obstacles in the plan's frame."""
        with np.errstate(all="ignore"):  # NaN/inf plans: values become NaN and fail
            return self._check(traj, now_ns, obstacles, obstacles_stamp_ns)

    def _check(
        self,
        traj: Trajectory,
        now_ns: int,
        obstacles: Sequence[Obstacle],
        obstacles_stamp_ns: int | None,
    ) -> SafetyReport:
        lim = self.limits
        results: list[CheckResult] = []

        def add(name: str, outcome: tuple[float, bool], limit: float,
                advisory: bool = False) -> None:
            value, passed = outcome
            results.append(CheckResult(name, float(value), float(limit), bool(passed), advisory))

        add(NONFINITE_VALUES, checks.check_finite(traj), 0.0)
        add(MIN_TIME_STEP_S, checks.check_time_axis(traj), 0.0)
        add("max_plan_age_s", checks.check_plan_age(traj, now_ns, lim.max_plan_age_s),
            lim.max_plan_age_s)
        add("max_future_stamp_s",
            checks.check_future_stamp(traj, now_ns, lim.max_future_stamp_s),
            lim.max_future_stamp_s)
        add("max_accel_mps2", checks.check_max_accel(traj, lim.max_accel_mps2),
            lim.max_accel_mps2)
        add("min_accel_mps2", checks.check_min_accel(traj, lim.min_accel_mps2),
            lim.min_accel_mps2)
        add("max_jerk_mps3", checks.check_jerk(traj, lim.max_jerk_mps3), lim.max_jerk_mps3)
        add("max_longitudinal_jerk_mps3",
            checks.check_longitudinal_jerk(traj, lim.max_longitudinal_jerk_mps3),
            lim.max_longitudinal_jerk_mps3)
        add("max_lateral_jerk_mps3",
            checks.check_lateral_jerk(traj, lim.max_lateral_jerk_mps3),
            lim.max_lateral_jerk_mps3)
        add("max_lateral_accel_mps2",
            checks.check_lateral_accel(traj, lim.max_lateral_accel_mps2),
            lim.max_lateral_accel_mps2)
        add("max_curvature_per_m", checks.check_curvature(traj, lim.max_curvature_per_m),
            lim.max_curvature_per_m)
        add("max_yaw_rate_radps", checks.check_yaw_rate(traj, lim.max_yaw_rate_radps),
            lim.max_yaw_rate_radps)
        add("min_time_to_collision_s",
            check_collision(traj, obstacles, now_ns, self.ego, lim.min_time_to_collision_s,
                            obstacles_stamp_ns, lim.collision_time_step_s),
            lim.min_time_to_collision_s)
        add("comfort_max_accel_mps2",
            checks.check_max_accel(traj, lim.comfort_max_accel_mps2),
            lim.comfort_max_accel_mps2, advisory=True)
        add("comfort_min_accel_mps2",
            checks.check_min_accel(traj, lim.comfort_min_accel_mps2),
            lim.comfort_min_accel_mps2, advisory=True)
        add("comfort_max_yaw_accel_radps2",
            checks.check_yaw_accel(traj, lim.comfort_max_yaw_accel_radps2),
            lim.comfort_max_yaw_accel_radps2, advisory=True)
        return SafetyReport(traj.stamp_ns, int(now_ns), tuple(results))


def empty_report(now_ns: int) -> SafetyReport:
    """Report with no checks (no plan received yet)."""
    return SafetyReport(0, int(now_ns), ())


__all__ = ["CheckResult", "SafetyMonitor", "SafetyReport", "empty_report"]
