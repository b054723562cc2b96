"""Fallback manager: picks OK / DEGRADED / FALLBACK each cycle and shapes the stops.

States (``msg/SafetyStatus.msg``) and the command each produces:

- **OK**: a valid plan is active, the latest plan passed, the policy is alive ->
  the tracker's command (``SOURCE_POLICY``).
- **DEGRADED**: the latest plan was rejected (it is never executed), or obstacles stopped
  arriving for ``obstacles_timeout_s``, but the last valid plan is still within its
  horizon and the policy is alive -> soft stop on the last
  valid plan (``SOURCE_SOFT_STOP``): the acceleration ramps from the previous command
  toward ``soft_stop_accel_mps2`` at ``soft_stop_jerk_mps3`` (Autoware comfortable
  stop: -1.0 m/s^2, 0.3 m/s^3); where the valid plan brakes harder, the command heads
  for the plan's own acceleration instead, at the same jerk limit.
- **FALLBACK**: no valid plan (none yet, horizon expired, invalidated by an obstacle),
  odometry silent for ``odometry_timeout_s`` or the policy silent for
  ``policy_timeout_s`` -> minimal-risk stop
  (``SOURCE_MINIMAL_RISK_STOP``): ramp toward ``mrm_accel_mps2`` at ``mrm_jerk_mps3``
  (Autoware emergency stop: -2.5 m/s^2, 1.5 m/s^3), again heading for a still-valid
  plan's acceleration where it brakes harder. When the plan was dropped because it
  runs into an obstacle (the core passes the path distance to that collision), the stop
  brakes as hard as it must to stand before it: the gentlest acceleration between
  ``mrm_accel_mps2`` and ``collision_stop_min_accel_mps2`` whose ramp at
  ``collision_stop_jerk_mps3`` stops within the distance left
  (:func:`collision_stop_accel`, recomputed every cycle from the distance driven since).

In both stops the curvature follows the last valid plan's *path*, sampled at the
distance travelled since the stop began (the car is slower than the plan, so sampling
by time would turn too early); past the path's end, or with no plan, the last
curvature is held. The target speed is integrated from the commanded acceleration and
floored at 0. Each ramp starts from the previous command, so the acceleration command is
continuous across OK -> DEGRADED -> FALLBACK and its rate is bounded by the active jerk
limit (with the real time between cycles). A command is produced every cycle.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from alpamayo_ros.control.config import ControllerConfig
from alpamayo_ros.control.tracker import TrackingTarget
from alpamayo_ros.trajectory import Trajectory

S_TO_NS = 1_000_000_000


class SafetyState(enum.IntEnum):
    """``SafetyStatus.STATE_*``."""

    OK = 0
    DEGRADED = 1
    FALLBACK = 2


class CommandSource(enum.IntEnum):
    """``ControlCommand.SOURCE_*``."""

    POLICY = 0
    SOFT_STOP = 1
    MINIMAL_RISK_STOP = 2


@dataclass(frozen=True)
class Command:
    """One control command (``msg/ControlCommand.msg``)."""

    stamp_ns: int
    acceleration_mps2: float
    curvature_per_m: float
    velocity_mps: float
    source: CommandSource
    plan_stamp_ns: int  # plan being followed; 0 when none


@dataclass(frozen=True)
class FallbackInputs:
    """What the manager needs to know each cycle."""

    now_ns: int
    ego_speed_mps: float
    plan: Trajectory | None  # last valid plan (None: nothing valid)
    target: TrackingTarget | None  # the plan sampled now (None: no plan or expired)
    latest_rejected: bool
    policy_silence_s: float
    rejected_checks: tuple[str, ...] = ()
    invalid_reason: str = ""  # why there is no valid plan, when known
    # input streams that stopped: {timeout parameter name: seconds silent}
    stale_inputs: tuple[tuple[str, float], ...] = ()
    # (detected at ns, path distance m then) of the collision that invalidated the plan
    collision: tuple[int, float] | None = None


COLLISION_STOP_NOTE = "; braking harder to stop short of the predicted collision"


def stop_distance_m(speed_mps: float, accel_mps2: float, goal_accel_mps2: float,
                    jerk_mps3: float) -> float:
    """Distance (m) to a standstill from ``speed_mps`` under a jerk-limited brake.

    The acceleration moves from ``accel_mps2`` to ``goal_accel_mps2`` (< 0) at
    ``jerk_mps3`` and then holds.
    """
    if speed_mps <= 0.0:
        return 0.0
    sign = -1.0 if goal_accel_mps2 < accel_mps2 else 1.0
    ramp_s = abs(goal_accel_mps2 - accel_mps2) / jerk_mps3
    # during the ramp v(t) = v + a t + sign j t^2 / 2: does it reach 0 before the ramp ends?
    qa, qb, qc = sign * jerk_mps3 / 2.0, accel_mps2, speed_mps
    disc = qb * qb - 4.0 * qa * qc
    if disc >= 0.0:
        roots = [(-qb - math.sqrt(disc)) / (2.0 * qa), (-qb + math.sqrt(disc)) / (2.0 * qa)]
        stops = [t for t in roots if 0.0 < t <= ramp_s]
        if stops:
            t = min(stops)
            return speed_mps * t + accel_mps2 * t * t / 2.0 + sign * jerk_mps3 * t ** 3 / 6.0
    t = ramp_s
    ramp_m = speed_mps * t + accel_mps2 * t * t / 2.0 + sign * jerk_mps3 * t ** 3 / 6.0
    speed_after = speed_mps + accel_mps2 * t + sign * jerk_mps3 * t * t / 2.0
    return ramp_m + speed_after ** 2 / (-2.0 * goal_accel_mps2)


def collision_stop_accel(speed_mps: float, accel_mps2: float, distance_m: float,
                         softest_mps2: float, hardest_mps2: float,
                         jerk_mps3: float) -> tuple[float, bool]:
    """The gentlest goal acceleration in ``[hardest, softest]`` (both < 0) that stops in time.

    In time: within ``distance_m``, the goal reached at ``jerk_mps3`` from ``accel_mps2``.
    Returns ``(goal, stops_in_time)``; ``(hardest, False)`` when even that is too late.
    """
    def stops(goal: float) -> bool:
        return stop_distance_m(speed_mps, accel_mps2, goal, jerk_mps3) <= distance_m
    if stops(softest_mps2):
        return softest_mps2, True
    if not stops(hardest_mps2):
        return hardest_mps2, False
    soft, hard = softest_mps2, hardest_mps2  # soft fails, hard stops in time
    for _ in range(30):
        mid = (soft + hard) / 2.0
        soft, hard = (soft, mid) if stops(mid) else (mid, hard)
    return hard, True


def approach(value: float, target: float, max_step: float) -> float:
    """Move ``value`` toward ``target`` by at most ``max_step``."""
    if value < target:
        return min(value + max_step, target)
    return max(value - max_step, target)


class FallbackManager:
    """Stateful mode selection and jerk-limited stop profiles."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget the previous command (next ramp starts from 0 m/s^2)."""
        self._last_ns: int | None = None
        self._accel = 0.0
        self._curvature = 0.0
        self._v_ref: float | None = None
        self._path_plan_stamp: int | None = None
        self._path_s = 0.0
        self._collision_ns: int | None = None  # which collision the distance counts toward
        self._collision_driven_m = 0.0

    @property
    def last_acceleration_mps2(self) -> float:
        """Acceleration of the previous command."""
        return self._accel

    def decide(self, inp: FallbackInputs) -> tuple[SafetyState, str]:
        """Mode and reason for this cycle."""
        cfg = self.config
        if inp.plan is None:
            why = inp.invalid_reason or "no valid plan received yet"
            if math.isfinite(inp.policy_silence_s) and inp.policy_silence_s > cfg.policy_timeout_s:
                # a second cause: the operator sees both, and the policy's return
                why += (f"; policy silent for {inp.policy_silence_s:.2f} s (timeout "
                        f"{cfg.policy_timeout_s:.2f} s)")
            return SafetyState.FALLBACK, f"{why}: minimal-risk stop"
        stale = dict(inp.stale_inputs)
        if "odometry_timeout_s" in stale:
            return SafetyState.FALLBACK, (
                f"odometry silent for {stale['odometry_timeout_s']:.2f} s (timeout "
                f"{cfg.odometry_timeout_s:.2f} s): minimal-risk stop")
        if inp.policy_silence_s > cfg.policy_timeout_s:
            return SafetyState.FALLBACK, (
                f"policy silent for {inp.policy_silence_s:.2f} s "
                f"(timeout {cfg.policy_timeout_s:.2f} s): minimal-risk stop")
        if inp.target is None:
            return SafetyState.FALLBACK, "last valid plan expired: minimal-risk stop"
        if "obstacles_timeout_s" in stale:
            return SafetyState.DEGRADED, (
                f"obstacles silent for {stale['obstacles_timeout_s']:.2f} s (timeout "
                f"{cfg.obstacles_timeout_s:.2f} s): soft stop on the last valid plan")
        if inp.latest_rejected:
            checks = ", ".join(inp.rejected_checks) or "safety checks"
            return SafetyState.DEGRADED, (
                f"latest plan rejected ({checks}): soft stop on the last valid plan")
        return SafetyState.OK, "following the latest valid plan"

    def step(self, inp: FallbackInputs) -> tuple[Command, SafetyState, str]:
        """Command, state and reason for this cycle."""
        cfg = self.config
        dt = cfg.period_s if self._last_ns is None else max(
            (inp.now_ns - self._last_ns) / S_TO_NS, 0.0)
        self._last_ns = int(inp.now_ns)
        ego_v = max(float(inp.ego_speed_mps), 0.0) if math.isfinite(inp.ego_speed_mps) else 0.0
        state, reason = self.decide(inp)
        plan_stamp = inp.plan.stamp_ns if inp.plan is not None else 0

        if state is SafetyState.OK:
            target = inp.target
            self._accel, self._curvature = target.acceleration_mps2, target.curvature_per_m
            self._v_ref = None
            self._path_plan_stamp = None
            return (Command(int(inp.now_ns), self._accel, self._curvature, target.velocity_mps,
                            CommandSource.POLICY, plan_stamp), state, reason)

        if state is SafetyState.DEGRADED:
            goal, jerk, source = (cfg.soft_stop_accel_mps2, cfg.soft_stop_jerk_mps3,
                                  CommandSource.SOFT_STOP)
        else:
            goal, jerk, source = (cfg.mrm_accel_mps2, cfg.mrm_jerk_mps3,
                                  CommandSource.MINIMAL_RISK_STOP)
            harder = self._collision_goal(inp, ego_v, dt)
            if harder is not None:
                goal, jerk = harder, cfg.collision_stop_jerk_mps3
                reason += COLLISION_STOP_NOTE
        accel = approach(self._accel, goal, jerk * dt)
        if inp.target is not None:
            # keep a valid plan's harder braking, reached at the same jerk limit: the last
            # OK command carried the tracker's speed feedback, the plan's own acceleration
            # does not, so taking it at once would step the command by that feedback
            accel = approach(self._accel, min(accel, inp.target.plan_accel_mps2), jerk * dt)
        accel = min(max(accel, cfg.min_command_accel_mps2), cfg.max_command_accel_mps2)

        if self._v_ref is None:
            self._v_ref = ego_v
        else:
            self._v_ref = max(self._v_ref + accel * dt, 0.0)
        self._curvature = self._path_curvature(inp, ego_v, dt)
        self._accel = accel
        if self._v_ref <= 0.0 and ego_v <= cfg.standstill_speed_mps:
            reason += "; vehicle stopped"
        return (Command(int(inp.now_ns), accel, self._curvature, self._v_ref, source,
                        plan_stamp), state, reason)

    def _collision_goal(self, inp: FallbackInputs, ego_v: float, dt: float) -> float | None:
        """Goal acceleration that stops before the collision ahead (None: none known)."""
        if inp.collision is None:
            self._collision_ns = None
            return None
        detected_ns, distance_m = inp.collision
        if self._collision_ns != detected_ns:  # a new one: count from its detection
            self._collision_ns = detected_ns
            self._collision_driven_m = ego_v * max((inp.now_ns - detected_ns) / S_TO_NS, 0.0)
        else:
            self._collision_driven_m += ego_v * dt
        cfg = self.config
        left_m = distance_m - self._collision_driven_m
        if stop_distance_m(ego_v, self._accel, cfg.mrm_accel_mps2, cfg.mrm_jerk_mps3) <= left_m:
            return None  # the minimal-risk stop itself stands in time
        goal, _ = collision_stop_accel(ego_v, self._accel, left_m, cfg.mrm_accel_mps2,
                                       cfg.collision_stop_min_accel_mps2,
                                       cfg.collision_stop_jerk_mps3)
        return goal

    def _path_curvature(self, inp: FallbackInputs, ego_v: float, dt: float) -> float:
        """Curvature of the last valid plan at the distance driven since the stop began."""
        plan = inp.plan
        if plan is None or not math.isfinite(plan.horizon_s):
            self._path_plan_stamp = None
            return self._curvature
        if self._path_plan_stamp != plan.stamp_ns:
            self._path_plan_stamp = plan.stamp_ns
            t_now = (inp.now_ns - plan.stamp_ns) / S_TO_NS
            self._path_s = plan.distance_at(max(t_now, 0.0))
        else:
            self._path_s += ego_v * dt
        if self._path_s > float(plan.arc_length_m()[-1]):
            return self._curvature  # past the end of the path: hold
        return plan.curvature_at_distance(self._path_s)
