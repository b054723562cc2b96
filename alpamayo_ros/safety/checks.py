"""Pure safety checks on a core :class:`~alpamayo_ros.trajectory.Trajectory`.

Every ``check_*`` function returns ``(value, passed)``: the worst value over the plan in
the unit its limit names, and whether it is within the limit. A NaN value never passes
(comparisons are written as ``value <= limit``, which is False for NaN), so a corrupt
plan fails every check it touches instead of slipping through.

Conventions (the plan's controls are held over the step ending at each point, see
``alpamayo_ros.trajectory``):

- step durations come from ``time_s`` (the implicit origin at t = 0 precedes the first
  point), not from a fixed 0.1 s;
- speed-dependent quantities (lateral acceleration ``v^2 |kappa|``, yaw rate ``v
  |kappa|``) use the larger of the speeds at the two ends of each step, i.e. the worst
  case within the step;
- jerk is the change of a control between consecutive steps divided by the time between
  the points. The first step has no predecessor inside the plan: by default it is not
  differenced against anything. The plan starts at its camera stamp, in the past, and
  the vehicle's current acceleration belongs to a later time, so comparing them would
  reject ordinary replans (a 0.5 m/s^2 change between two plans is 5 m/s^3 over one
  step). Pass ``initial_accel_mps2`` (the acceleration at the plan's start) to include
  that junction too.
"""

from __future__ import annotations

import numpy as np

from alpamayo_ros.trajectory import Trajectory

S_TO_NS = 1_000_000_000
_FIELDS = ("time_s", "x_m", "y_m", "heading_rad", "velocity_mps", "acceleration_mps2",
           "curvature_per_m")


def _max_abs(values: np.ndarray) -> float:
    """Largest magnitude; 0 for an empty array; NaN if any value is NaN."""
    if values.size == 0:
        return 0.0
    return float(np.max(np.abs(values)))


def _step_durations(traj: Trajectory) -> np.ndarray:
    """Duration of each control step, shape ``(T,)``; the first starts at t = 0."""
    return np.diff(traj.time_s, prepend=0.0)


def _point_intervals(traj: Trajectory) -> np.ndarray:
    """Time between consecutive points, shape ``(T-1,)``."""
    return np.diff(traj.time_s)


def _step_speed_max(traj: Trajectory) -> np.ndarray:
    """Largest speed magnitude within each step, shape ``(T,)``."""
    start = np.concatenate([[traj.start_velocity_mps], traj.velocity_mps[:-1]])
    return np.maximum(np.abs(start), np.abs(traj.velocity_mps))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def check_finite(traj: Trajectory) -> tuple[float, bool]:
    """Number of NaN/inf values over all point fields; passes at 0."""
    count = sum(int(np.count_nonzero(~np.isfinite(getattr(traj, f)))) for f in _FIELDS)
    return float(count), count == 0


def check_time_axis(traj: Trajectory) -> tuple[float, bool]:
    """Shortest step (s) including the first from t = 0; passes when every step is > 0."""
    value = float(np.min(_step_durations(traj)))
    return value, value > 0.0


def plan_age_s(traj: Trajectory, now_ns: int) -> float:
    """Age of the plan's camera stamp at ``now_ns`` (s); negative for a future stamp."""
    return (int(now_ns) - traj.stamp_ns) / S_TO_NS


def check_plan_age(traj: Trajectory, now_ns: int, max_age_s: float) -> tuple[float, bool]:
    """Plan age (s); passes when it is at most ``max_age_s``."""
    age = plan_age_s(traj, now_ns)
    return age, age <= max_age_s


def check_future_stamp(traj: Trajectory, now_ns: int, max_future_s: float) -> tuple[float, bool]:
    """How far the stamp lies in the future (s, <= 0 for a past stamp); a clock fault."""
    ahead = -plan_age_s(traj, now_ns)
    return ahead, ahead <= max_future_s


def check_max_accel(traj: Trajectory, max_accel_mps2: float) -> tuple[float, bool]:
    """Largest longitudinal acceleration (m/s^2)."""
    value = float(np.max(traj.acceleration_mps2))
    return value, value <= max_accel_mps2


def check_min_accel(traj: Trajectory, min_accel_mps2: float) -> tuple[float, bool]:
    """Strongest deceleration (most negative acceleration, m/s^2); passes above the limit."""
    value = float(np.min(traj.acceleration_mps2))
    return value, value >= min_accel_mps2


def longitudinal_jerk_mps3(
    traj: Trajectory, initial_accel_mps2: float | None = None
) -> np.ndarray:
    """Longitudinal jerk between consecutive steps (m/s^3), ``(T-1,)`` or ``(T,)``."""
    jerk = _ratio(np.diff(traj.acceleration_mps2), _point_intervals(traj))
    if initial_accel_mps2 is not None:
        first = (traj.acceleration_mps2[0] - initial_accel_mps2) / traj.time_s[0]
        jerk = np.concatenate([[first], jerk])
    return jerk


def check_longitudinal_jerk(
    traj: Trajectory, max_jerk_mps3: float, initial_accel_mps2: float | None = None
) -> tuple[float, bool]:
    """Largest |longitudinal jerk| (m/s^3); first step: see the module docstring."""
    value = _max_abs(longitudinal_jerk_mps3(traj, initial_accel_mps2))
    return value, value <= max_jerk_mps3


def lateral_accel_mps2(traj: Trajectory) -> np.ndarray:
    """Signed lateral acceleration ``v^2 kappa`` at each point (m/s^2), ``(T,)``."""
    return traj.velocity_mps**2 * traj.curvature_per_m


def acceleration_vectors(traj: Trajectory) -> np.ndarray:
    """Acceleration vector (tangential a, normal v^2 kappa) in the plan frame, ``(T, 2)``."""
    h = traj.heading_rad
    a, an = traj.acceleration_mps2, lateral_accel_mps2(traj)
    return np.stack([a * np.cos(h) - an * np.sin(h), a * np.sin(h) + an * np.cos(h)], axis=-1)


def check_jerk(
    traj: Trajectory, max_jerk_mps3: float, initial_accel_mps2: float | None = None
) -> tuple[float, bool]:
    """Largest magnitude of the jerk vector (m/s^3): change of the acceleration vector.

    With ``initial_accel_mps2`` the junction at t = 0 is included; the lateral part of
    the initial acceleration is taken equal to the first step's (only the longitudinal
    change counts there).
    """
    vec = acceleration_vectors(traj)
    jerk = _ratio(np.linalg.norm(np.diff(vec, axis=0), axis=-1), _point_intervals(traj))
    if initial_accel_mps2 is not None:
        jerk = np.concatenate(
            [[abs(traj.acceleration_mps2[0] - initial_accel_mps2) / traj.time_s[0]], jerk])
    value = _max_abs(jerk)
    return value, value <= max_jerk_mps3


def check_lateral_jerk(traj: Trajectory, max_lateral_jerk_mps3: float) -> tuple[float, bool]:
    """Largest |d(v^2 kappa)/dt| between consecutive points (m/s^3), Autoware's definition."""
    value = _max_abs(_ratio(np.diff(lateral_accel_mps2(traj)), _point_intervals(traj)))
    return value, value <= max_lateral_jerk_mps3


def check_lateral_accel(traj: Trajectory, max_lateral_accel_mps2: float) -> tuple[float, bool]:
    """Largest ``v^2 |kappa|`` (m/s^2), worst speed within each step."""
    value = _max_abs(_step_speed_max(traj) ** 2 * traj.curvature_per_m)
    return value, value <= max_lateral_accel_mps2


def check_curvature(traj: Trajectory, max_curvature_per_m: float) -> tuple[float, bool]:
    """Largest |kappa| (1/m)."""
    value = _max_abs(traj.curvature_per_m)
    return value, value <= max_curvature_per_m


def yaw_rate_radps(traj: Trajectory) -> np.ndarray:
    """Signed yaw rate ``v kappa`` per step at the step's worst speed (rad/s), ``(T,)``."""
    return _step_speed_max(traj) * traj.curvature_per_m


def check_yaw_rate(traj: Trajectory, max_yaw_rate_radps: float) -> tuple[float, bool]:
    """Largest |yaw rate| (rad/s)."""
    value = _max_abs(yaw_rate_radps(traj))
    return value, value <= max_yaw_rate_radps


def check_yaw_accel(traj: Trajectory, max_yaw_accel_radps2: float) -> tuple[float, bool]:
    """Largest |d(v kappa)/dt| between consecutive points (rad/s^2)."""
    rate = traj.velocity_mps * traj.curvature_per_m
    value = _max_abs(_ratio(np.diff(rate), _point_intervals(traj)))
    return value, value <= max_yaw_accel_radps2

