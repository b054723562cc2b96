"""Safety limits of the trajectory monitor, with their sources.

Two tiers. *Rejecting* limits: a plan that exceeds one is never executed. *Comfort*
limits (advisory): exceeding one is reported (``SafetyCheck.passed = False`` on a check
whose name starts with ``comfort_``) but does not reject the plan.

Why acceleration has both tiers: the AR1 comfort bounds (-4.05 ... +2.40 m/s^2) are
too tight to reject on, since a plan braking at -6 m/s^2 for a pedestrian is the plan
we want executed; rejecting it would hand control to a -1 m/s^2 soft stop. So the
rejecting bound is the Autoware validator's |a| <= 9.8 m/s^2 (also the AR1 action
bound), and the comfort bounds are advisory.

Jerk, lateral acceleration and yaw rate reject at the AR1 release's comfort bounds: the
policy is RL-trained to respect them (the flow decoder meets them on 97.4% of plans), so
a violation marks an out-of-distribution plan, and a rejected plan only costs a soft
stop on the last valid one. Known cost: an emergency-braking plan whose brake build-up
exceeds 4.13 m/s^3 (and 8.37 m/s^3 in total) is rejected too, and the controller then
soft-stops on the last valid plan instead; raise ``max_longitudinal_jerk_mps3`` /
``max_jerk_mps3`` where that matters more than catching jerk spikes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# AR1 release comfort bounds (ar1-facts.md, "RL post-training"; they are nuPlan's
# ego-comfort thresholds).
AR1_MAX_JERK_MPS3 = 8.37
AR1_MAX_LONGITUDINAL_JERK_MPS3 = 4.13
AR1_MAX_LATERAL_ACCEL_MPS2 = 4.89
AR1_MIN_LONGITUDINAL_ACCEL_MPS2 = -4.05
AR1_MAX_LONGITUDINAL_ACCEL_MPS2 = 2.40
AR1_MAX_YAW_RATE_RADPS = 0.95
AR1_MAX_YAW_ACCEL_RADPS2 = 1.93
# AR1 release action bound |kappa| <= 0.2 1/m (alpamayo_ros.unicycle): a turning radius
# of 5 m, about a passenger car's minimum; a larger curvature is not a model output.
AR1_MAX_CURVATURE_PER_M = 0.2
# Autoware planning validator (ar1-facts.md): latency 1.0 s, lateral jerk 7.0 m/s^3,
# |accel| 9.8 m/s^2 (curvature 1.0 1/m is looser than the AR1 bound above).
AUTOWARE_MAX_LATENCY_S = 1.0
AUTOWARE_MAX_LATERAL_JERK_MPS3 = 7.0
AUTOWARE_MAX_ABS_ACCEL_MPS2 = 9.8


@dataclass(frozen=True)
class SafetyLimits:
    """Limits of :class:`alpamayo_ros.safety.SafetyMonitor` (ROS parameter names = fields).

    Ego box: ``ego_length_m`` x ``ego_width_m``, its centre ``ego_center_offset_m``
    ahead of the trajectory's reference point (rear axle), inflated by
    ``collision_margin_m`` on every side. Defaults (design choice): a mid-size robotaxi
    of 4.9 x 1.9 m with a 1.05 m rear overhang, so the box centre is 1.4 m ahead of the
    rear axle. The collision check samples the plan every ``collision_time_step_s``.
    """

    # rejecting
    max_accel_mps2: float = AUTOWARE_MAX_ABS_ACCEL_MPS2
    min_accel_mps2: float = -AUTOWARE_MAX_ABS_ACCEL_MPS2
    max_jerk_mps3: float = AR1_MAX_JERK_MPS3
    max_longitudinal_jerk_mps3: float = AR1_MAX_LONGITUDINAL_JERK_MPS3
    max_lateral_jerk_mps3: float = AUTOWARE_MAX_LATERAL_JERK_MPS3
    max_lateral_accel_mps2: float = AR1_MAX_LATERAL_ACCEL_MPS2
    max_curvature_per_m: float = AR1_MAX_CURVATURE_PER_M
    max_yaw_rate_radps: float = AR1_MAX_YAW_RATE_RADPS
    max_plan_age_s: float = AUTOWARE_MAX_LATENCY_S
    # a plan stamped in the future beyond this is a clock fault (design choice: 0.1 s)
    max_future_stamp_s: float = 0.1
    # design choice: 3 s, above the ~2.5 s of forward-collision warnings, so that a plan
    # is rejected while a soft stop can still help; CV obstacle predictions make later
    # collisions too uncertain to reject on
    min_time_to_collision_s: float = 3.0
    # advisory (comfort)
    comfort_max_accel_mps2: float = AR1_MAX_LONGITUDINAL_ACCEL_MPS2
    comfort_min_accel_mps2: float = AR1_MIN_LONGITUDINAL_ACCEL_MPS2
    comfort_max_yaw_accel_radps2: float = AR1_MAX_YAW_ACCEL_RADPS2
    # ego geometry and collision sampling
    ego_length_m: float = 4.9
    ego_width_m: float = 1.9
    ego_center_offset_m: float = 1.4
    collision_margin_m: float = 0.2
    collision_time_step_s: float = 0.05

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if math.isnan(value):
                raise ValueError(f"{name} must not be NaN")
        positive = (
            "max_accel_mps2", "max_jerk_mps3", "max_longitudinal_jerk_mps3",
            "max_lateral_jerk_mps3", "max_lateral_accel_mps2", "max_curvature_per_m",
            "max_yaw_rate_radps", "max_plan_age_s", "comfort_max_accel_mps2",
            "comfort_max_yaw_accel_radps2", "ego_length_m", "ego_width_m",
            "collision_time_step_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("min_accel_mps2", "comfort_min_accel_mps2"):
            value = getattr(self, name)
            if not value < 0:
                raise ValueError(f"{name} must be < 0 (a deceleration), got {value!r}")
        for name in ("max_future_stamp_s", "min_time_to_collision_s", "collision_margin_m"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not math.isfinite(self.collision_time_step_s):
            raise ValueError("collision_time_step_s must be finite")
