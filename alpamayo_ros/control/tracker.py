"""Time-aligned trajectory tracking: (acceleration, curvature, target speed) from a plan.

The plan is stamped with the camera time it was computed from and expressed from that
instant on, so at ``now`` the tracker samples it at ``t = now - stamp (+ lookahead)``:
a plan that arrives 0.8 s late is entered 0.8 s in, and the previous plan keeps being
followed, time-aligned, until the next one is accepted (the async chunk execution of
SmolVLA/pi0). Longitudinal: the plan's acceleration (zero-order hold, as integrated)
plus a bounded proportional correction on the speed error (none when the speed
measurement is not finite). Lateral: the plan's
curvature, feed-forward only (the core gets no pose relative to the plan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from alpamayo_ros.control.config import ControllerConfig
from alpamayo_ros.trajectory import Trajectory

S_TO_NS = 1_000_000_000


@dataclass(frozen=True)
class TrackingTarget:
    """What the plan asks for at one instant."""

    plan_time_s: float  # time on the plan (s after its stamp)
    plan_accel_mps2: float  # the plan's own (feed-forward) acceleration
    acceleration_mps2: float  # feed-forward + speed feedback, within the envelope
    curvature_per_m: float
    velocity_mps: float  # the plan's speed at plan_time_s


class TrajectoryTracker:
    """Samples a plan by its stamp and adds speed feedback."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config

    def plan_time_s(self, plan: Trajectory, now_ns: int) -> float:
        """Time on the plan that corresponds to ``now_ns`` (plus the lookahead)."""
        return (int(now_ns) - plan.stamp_ns) / S_TO_NS + self.config.lookahead_s

    def track(self, plan: Trajectory, now_ns: int, ego_speed_mps: float) -> TrackingTarget | None:
        """Target at ``now_ns``, or None when the plan's horizon is behind us (expired)."""
        cfg = self.config
        t = max(self.plan_time_s(plan, now_ns), 0.0)
        if t > plan.horizon_s:
            return None
        a_ff, kappa = plan.controls_at(t)
        v_ref = float(plan.velocity_at(t))
        ego = float(ego_speed_mps)
        # no usable speed measurement: feed-forward only
        correction = cfg.speed_gain_per_s * (v_ref - ego) if math.isfinite(ego) else 0.0
        correction = min(max(correction, -cfg.max_feedback_accel_mps2),
                         cfg.max_feedback_accel_mps2)
        accel = min(max(a_ff + correction, cfg.min_command_accel_mps2),
                    cfg.max_command_accel_mps2)
        return TrackingTarget(t, a_ff, accel, kappa, v_ref)
