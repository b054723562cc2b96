"""Parameters of the controller: tracking, soft stop, minimal-risk stop, policy timeout."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Autoware mrm_comfortable_stop_operator defaults (also the planning validator's soft
# stop, ar1-facts.md): min_acceleration -1.0 m/s^2, jerk limit 0.3 m/s^3.
AUTOWARE_SOFT_STOP_ACCEL_MPS2 = -1.0
AUTOWARE_SOFT_STOP_JERK_MPS3 = 0.3
# Autoware mrm_emergency_stop_operator defaults: target_acceleration -2.5 m/s^2,
# target_jerk -1.5 m/s^3.
AUTOWARE_MRM_ACCEL_MPS2 = -2.5
AUTOWARE_MRM_JERK_MPS3 = 1.5
# Autoware ODD use case UC-AEB-001-0001 (automatic emergency braking before a standstill
# obstacle): the ego stops without collision and keeps its acceleration above -6.0 m/s^2.
AUTOWARE_AEB_MIN_ACCEL_MPS2 = -6.0
# Design choice: the brake reaches -6 m/s^2 from coasting in 0.6 s.
COLLISION_STOP_JERK_MPS3 = 10.0


@dataclass(frozen=True)
class ControllerConfig:
    """Controller parameters (ROS parameter names = field names).

    - ``control_rate_hz``: rate of :meth:`ControllerCore.step` (the nominal cycle; the
      stop profiles integrate the real time between calls).
    - ``policy_timeout_s``: no trajectory for this long -> minimal-risk stop (design
      choice: two missed cycles of the ~1 Hz AR1 10B policy).
    - ``speed_gain_per_s``: feedback ``k (v_plan - v_ego)`` added to the plan's
      acceleration, bounded by ``max_feedback_accel_mps2``.
    - ``lookahead_s``: sample the plan this far ahead of now (actuation delay).
    - ``soft_stop_*``: the DEGRADED stop on the last valid plan (Autoware comfortable stop).
    - ``mrm_*``: the FALLBACK minimal-risk stop (Autoware emergency stop operator).
    - ``collision_stop_*``: when the plan was dropped for a collision course, the
      minimal-risk stop brakes as hard as needed to stop before the predicted collision,
      down to ``collision_stop_min_accel_mps2`` (Autoware's AEB use case: -6 m/s^2), at
      ``collision_stop_jerk_mps3``; the gentlest such stop, never softer than ``mrm_*``.
    - ``min/max_command_accel_mps2``: envelope of every acceleration command.
    - ``standstill_speed_mps``: below this the vehicle counts as stopped.
    - ``odometry_timeout_s`` / ``obstacles_timeout_s``: an input stream that has delivered
      and then stays silent this long is a fault (design choice: 25 cycles of 50 Hz
      odometry -> minimal-risk stop; 10 cycles of 10 Hz perception -> soft stop, since no
      plan can be checked against current obstacles). A stream never seen is not timed
      (a graph without perception runs with no obstacles).
    - ``clock_jump_reset_s``: an odometry stamp this far behind the newest (bag loop,
      simulator restart) clears the odometry buffer instead of being rejected forever.
    - ``max_odometry_jump_m``: an odometry position this far from where the previous
      sample predicts (constant speed and heading, samples at most ``odometry_timeout_s``
      apart) is a localization fault: the plan anchored to the old pose is dropped
      (minimal-risk stop) until a plan stamped after the jump passes (design choice:
      ~6 times the 0.16 m a 50 Hz sample moves at 8 m/s, far above odometry noise).
    - ``process_nice``: the controller node process' nice value (Linux, every thread);
      0 (the default) leaves the inherited one alone. No effect of -10 is established:
      the runs that seemed to show one measured through a test probe that dropped
      commands (docs/RELIABILITY.md). A vehicle computer would use a real-time policy
      instead. Values below 0 need CAP_SYS_NICE; without it the node warns and keeps its
      priority. Not used by the in-process core.
    """

    control_rate_hz: float = 50.0
    policy_timeout_s: float = 2.0
    speed_gain_per_s: float = 0.5
    max_feedback_accel_mps2: float = 1.0
    lookahead_s: float = 0.0
    soft_stop_accel_mps2: float = AUTOWARE_SOFT_STOP_ACCEL_MPS2
    soft_stop_jerk_mps3: float = AUTOWARE_SOFT_STOP_JERK_MPS3
    mrm_accel_mps2: float = AUTOWARE_MRM_ACCEL_MPS2
    mrm_jerk_mps3: float = AUTOWARE_MRM_JERK_MPS3
    collision_stop_min_accel_mps2: float = AUTOWARE_AEB_MIN_ACCEL_MPS2
    collision_stop_jerk_mps3: float = COLLISION_STOP_JERK_MPS3
    min_command_accel_mps2: float = -9.8  # Autoware validator |accel| 9.8 m/s^2
    max_command_accel_mps2: float = 9.8
    standstill_speed_mps: float = 0.1
    odometry_timeout_s: float = 0.5
    obstacles_timeout_s: float = 1.0
    clock_jump_reset_s: float = 1.0
    max_odometry_jump_m: float = 1.0
    process_nice: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        for name in ("control_rate_hz", "policy_timeout_s", "soft_stop_jerk_mps3",
                     "mrm_jerk_mps3", "collision_stop_jerk_mps3", "max_command_accel_mps2",
                     "odometry_timeout_s",
                     "obstacles_timeout_s", "clock_jump_reset_s", "max_odometry_jump_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("speed_gain_per_s", "max_feedback_accel_mps2", "lookahead_s",
                     "standstill_speed_mps"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("soft_stop_accel_mps2", "mrm_accel_mps2", "min_command_accel_mps2"):
            if not getattr(self, name) < 0:
                raise ValueError(f"{name} must be < 0 (a deceleration), got "
                                 f"{getattr(self, name)!r}")
        if not isinstance(self.process_nice, int) or not -20 <= self.process_nice <= 19:
            raise ValueError(f"process_nice must be an integer in [-20, 19], got "
                             f"{self.process_nice!r}")
        for name in ("soft_stop_accel_mps2", "mrm_accel_mps2", "collision_stop_min_accel_mps2"):
            if getattr(self, name) < self.min_command_accel_mps2:
                raise ValueError(f"{name} must be within min_command_accel_mps2 "
                                 f"({self.min_command_accel_mps2})")
        if self.collision_stop_min_accel_mps2 > self.mrm_accel_mps2:
            raise ValueError(f"collision_stop_min_accel_mps2 ({self.collision_stop_min_accel_mps2})"
                             f" must be <= mrm_accel_mps2 ({self.mrm_accel_mps2}): the "
                             "collision stop is never softer than the minimal-risk stop")

    @property
    def period_s(self) -> float:
        """Nominal control period (s)."""
        return 1.0 / self.control_rate_hz
