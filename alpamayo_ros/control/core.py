"""ControllerCore: safety monitor + tracker + fallback manager, the controller node's core.

The rclpy node calls :meth:`ControllerCore.submit_plan` on every trajectory,
:meth:`ControllerCore.update_obstacles` on every obstacle array, and
:meth:`ControllerCore.step` from a ``control_rate_hz`` timer, publishing the returned
:class:`Command` (``ControlCommand``) and :class:`ControllerStatus` (``SafetyStatus``).

Rules: a plan that fails a rejecting check is never executed; the last valid plan
stays active until a newer valid plan replaces it, it expires, or a newer obstacle
update puts it on a collision course (then nothing valid is left: FALLBACK). A valid
plan older (by stamp) than the active one is not adopted. ``step`` always returns a
command. When a collision course leaves no valid plan (the active plan dropped by an
obstacle update, or a plan rejected by ``min_time_to_collision_s`` while none is active),
the core keeps the path distance to that collision until a plan is adopted, and the
minimal-risk stop brakes hard enough to stand before it (``collision_stop_*``).

Input streams: the node calls :meth:`ControllerCore.note_input` when odometry or
obstacles arrive; a stream that has delivered and then stays silent longer than its
``*_timeout_s`` is listed by name (``odometry_timeout_s``, ``obstacles_timeout_s``) in
the status' ``failed_checks`` and forces FALLBACK (odometry) or DEGRADED (obstacles)
until it delivers again.

An odometry position jump (:meth:`ControllerCore.note_odometry_jump`, detected by the
node's odometry buffer against ``max_odometry_jump_m``) is a localization fault: the
active plan, anchored to the pose before the jump, is dropped (FALLBACK, minimal-risk
stop) and ``max_odometry_jump_m`` stays in ``failed_checks``; plans stamped at or before
the jump are rejected by that check; the first valid plan stamped after it ends the fault.

Time going backwards between two :meth:`ControllerCore.step` calls (bag loop, simulator
restart on ``/clock``) drops everything stamped on the old timeline: the active plan
(its stamp would be in the future, so no new plan would ever be newer), the policy and
input arrival times (silence would be negative, so no timeout could fire) and the latest
report. The next cycle is FALLBACK (no valid plan) until a plan of the new timeline passes;
the stop ramp continues from the previous command (counted in ``time_resets``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from alpamayo_ros.control.config import ControllerConfig
from alpamayo_ros.control.fallback import (
    Command,
    FallbackInputs,
    FallbackManager,
    SafetyState,
)
from alpamayo_ros.control.tracker import TrajectoryTracker
from alpamayo_ros.safety.collision import (
    Obstacle,
    check_collision,
    collision_distance_m,
    first_collision,
    poses_finite,
)
from alpamayo_ros.safety.limits import SafetyLimits
from alpamayo_ros.safety.monitor import CheckResult, SafetyMonitor, SafetyReport
from alpamayo_ros.trajectory import Trajectory

S_TO_NS = 1_000_000_000
# input stream -> the ControllerConfig field that times it out
INPUT_TIMEOUTS = {"odometry": "odometry_timeout_s", "obstacles": "obstacles_timeout_s"}


@dataclass(frozen=True)
class ControllerStatus:
    """Controller state for one cycle (``msg/SafetyStatus.msg``)."""

    stamp_ns: int
    state: SafetyState
    failed_checks: tuple[str, ...]  # rejecting checks failed by the latest plan + stale inputs
    checks: tuple[CheckResult, ...]  # every check run on the latest plan
    active_plan_stamp_ns: int  # 0 when none
    policy_silence_s: float  # inf before the first trajectory
    reason: str


class ControllerCore:
    """Accepts or rejects plans and produces a command and a status every cycle."""

    def __init__(
        self, config: ControllerConfig | None = None, limits: SafetyLimits | None = None
    ) -> None:
        self.config = config if config is not None else ControllerConfig()
        self.monitor = SafetyMonitor(limits)
        self.tracker = TrajectoryTracker(self.config)
        self.fallback = FallbackManager(self.config)
        self._lock = threading.Lock()
        self._active: Trajectory | None = None
        self._latest_report: SafetyReport | None = None
        self._latest_rejected = False
        self._invalid_reason = ""
        self._last_arrival_ns: int | None = None
        self._obstacles: tuple[Obstacle, ...] = ()
        self._obstacles_stamp_ns: int | None = None
        self._input_arrival_ns: dict[str, int] = {}
        self._last_step_ns: int | None = None
        self.time_resets = 0
        self._jump: tuple[int, float] | None = None  # (stamp, metres) of an unresolved jump
        self.odometry_jumps = 0
        # (detected at, path distance) of the collision that left no valid plan
        self._collision: tuple[int, float] | None = None

    @property
    def active_plan(self) -> Trajectory | None:
        """The plan being followed (the last valid one), or None."""
        return self._active

    def submit_plan(
        self,
        traj: Trajectory,
        now_ns: int,
        obstacles: Sequence[Obstacle] | None = None,
        obstacles_stamp_ns: int | None = None,
    ) -> tuple[SafetyReport, bool]:
        """Check a new plan; adopt it when it passes. Returns ``(report, accepted)``.

        ``obstacles`` default to the latest :meth:`update_obstacles` (in the plan's frame).
        """
        with self._lock:
            self._last_arrival_ns = int(now_ns)
            if obstacles is None:
                obstacles, obstacles_stamp_ns = self._obstacles, self._obstacles_stamp_ns
            report = self.monitor.check(traj, now_ns, obstacles, obstacles_stamp_ns)
            if self._jump is not None and traj.stamp_ns <= self._jump[0]:
                report = SafetyReport(report.plan_stamp_ns, report.checked_at_ns, (
                    *report.checks, CheckResult("max_odometry_jump_m", self._jump[1],
                                                self.config.max_odometry_jump_m, False)))
            self._latest_report = report
            if not report.passed:
                self._latest_rejected = True
                if (self._active is None and self._collision is None
                        and "min_time_to_collision_s" in report.failed_checks):
                    self._note_collision(traj, now_ns, obstacles, obstacles_stamp_ns)
                return report, False
            self._latest_rejected = False
            if self._active is not None and traj.stamp_ns < self._active.stamp_ns:
                return report, False  # valid but older than the active plan
            self._active = traj
            self._invalid_reason = ""
            self._collision = None
            self._jump = None  # a plan made after the jump: localization fault over
            return report, True

    def reject_plan(self, traj: Trajectory, now_ns: int, check_name: str,
                    reason: str) -> SafetyReport:
        """Record ``traj`` as rejected by a check the node ran itself (never adopted).

        For conditions only the node can see, e.g. no localization at the plan's stamp
        to place the obstacles in the plan's frame: the plan cannot be checked, so it is
        treated like one that failed. The monitor's other checks still run, so the report
        names every reason (a plan 3 s old also fails ``max_plan_age_s``); the collision
        check, which needs the obstacles, is left out.
        """
        with self._lock:
            self._last_arrival_ns = int(now_ns)
            checked = self.monitor.check(traj, now_ns, ())
            report = SafetyReport(traj.stamp_ns, int(now_ns), (
                *(c for c in checked.checks if c.name != "min_time_to_collision_s"),
                CheckResult(check_name, math.nan, math.nan, False)))
            self._latest_report = report
            self._latest_rejected = True
            return report

    def update_obstacles(
        self, obstacles: Sequence[Obstacle], now_ns: int, obstacles_stamp_ns: int | None = None
    ) -> SafetyReport | None:
        """Store obstacles and re-check the active plan against them.

        Returns the failing collision report when the active plan is dropped, else None.
        """
        with self._lock:
            self._obstacles = tuple(obstacles)
            self._obstacles_stamp_ns = obstacles_stamp_ns
            if self._active is None:
                return None
            lim = self.monitor.limits
            value, passed = check_collision(
                self._active, self._obstacles, now_ns, self.monitor.ego,
                lim.min_time_to_collision_s, obstacles_stamp_ns, lim.collision_time_step_s)
            if passed:
                return None
            report = SafetyReport(self._active.stamp_ns, int(now_ns), (CheckResult(
                "min_time_to_collision_s", value, lim.min_time_to_collision_s, False),))
            self._latest_report = report
            self._latest_rejected = True
            self._note_collision(self._active, now_ns, self._obstacles, obstacles_stamp_ns)
            self._active = None
            self._invalid_reason = (
                f"active plan on a collision course (time to collision {value:.2f} s)")
            return report

    def _note_collision(self, traj: Trajectory, now_ns: int, obstacles: Sequence[Obstacle],
                        obstacles_stamp_ns: int | None) -> None:
        """Remember how far ahead ``traj`` collides: the stop brakes to stand before it."""
        if not poses_finite(traj):
            return  # NaN poses fail the collision check too, but say nothing of distance
        hit = first_collision(traj, obstacles, now_ns, self.monitor.ego, obstacles_stamp_ns,
                              self.monitor.limits.collision_time_step_s)
        if hit is not None:
            self._collision = (int(now_ns), collision_distance_m(traj, hit, now_ns))

    def note_odometry_jump(self, stamp_ns: int, distance_m: float) -> None:
        """Odometry jumped ``distance_m`` at ``stamp_ns``: drop the plan anchored before it."""
        with self._lock:
            self.odometry_jumps += 1
            self._jump = (int(stamp_ns), float(distance_m))
            self._active = None
            self._invalid_reason = (
                f"odometry position jumped {distance_m:.2f} m (max_odometry_jump_m "
                f"{self.config.max_odometry_jump_m:.2f}): plan anchored to the old pose "
                "dropped")

    def note_input(self, name: str, now_ns: int) -> None:
        """Input ``name`` (``odometry`` or ``obstacles``) delivered at ``now_ns``."""
        if name not in INPUT_TIMEOUTS:
            raise ValueError(f"unknown input {name!r}; expected one of {list(INPUT_TIMEOUTS)}")
        with self._lock:
            self._input_arrival_ns[name] = int(now_ns)

    def stale_inputs(self, now_ns: int) -> tuple[tuple[str, float], ...]:
        """``(timeout parameter, seconds silent)`` of every stream past its timeout."""
        out = []
        for name, param in INPUT_TIMEOUTS.items():
            arrival = self._input_arrival_ns.get(name)
            if arrival is None:
                continue
            silent_s = (int(now_ns) - arrival) / S_TO_NS
            if silent_s > getattr(self.config, param):
                out.append((param, silent_s))
        return tuple(out)

    def policy_silence_s(self, now_ns: int) -> float:
        """Seconds since the last trajectory arrived (inf before the first)."""
        if self._last_arrival_ns is None:
            return math.inf
        return (int(now_ns) - self._last_arrival_ns) / S_TO_NS

    def _forget_timeline(self) -> None:
        """Drop what is stamped on a timeline the clock has left (caller holds the lock)."""
        self.time_resets += 1
        self._active = None
        self._latest_report = None
        self._latest_rejected = False
        self._last_arrival_ns = None
        self._input_arrival_ns.clear()
        self._jump = None
        self._collision = None
        self._invalid_reason = "clock jumped back; plans of the old timeline dropped"

    def step(self, now_ns: int, ego_speed_mps: float) -> tuple[Command, ControllerStatus]:
        """One control cycle: always a command and a status."""
        with self._lock:
            if self._last_step_ns is not None and int(now_ns) < self._last_step_ns:
                self._forget_timeline()
            self._last_step_ns = int(now_ns)
            plan = self._active
            target = None if plan is None else self.tracker.track(plan, now_ns, ego_speed_mps)
            report = self._latest_report
            silence = self.policy_silence_s(now_ns)
            stale = self.stale_inputs(now_ns)
            inputs = FallbackInputs(
                now_ns=int(now_ns), ego_speed_mps=float(ego_speed_mps), plan=plan,
                target=target, latest_rejected=self._latest_rejected,
                policy_silence_s=silence,
                rejected_checks=report.failed_checks if report is not None else (),
                invalid_reason=self._invalid_reason, stale_inputs=stale,
                collision=self._collision if plan is None else None)
            command, state, reason = self.fallback.step(inputs)
            failed = report.failed_checks if report is not None else ()
            if self._jump is not None and "max_odometry_jump_m" not in failed:
                failed += ("max_odometry_jump_m",)
            status = ControllerStatus(
                stamp_ns=int(now_ns), state=state,
                failed_checks=failed + tuple(name for name, _ in stale),
                checks=report.checks if report is not None else (),
                active_plan_stamp_ns=plan.stamp_ns if plan is not None else 0,
                policy_silence_s=silence, reason=reason)
            return command, status
