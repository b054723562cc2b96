"""Ego odometry buffer: poses by time, interpolated, and the model's ego-motion history.

The policy needs, at the camera time of its newest frame set, the 16 ego poses of the last
1.5 s at 10 Hz expressed in the ego frame at that time (``DrivingSample.ego_history``);
the controller needs the ego pose at a plan's stamp to bring map-frame obstacles into the
plan's frame. Both read this buffer, fed from ``nav_msgs/Odometry`` (map frame).

Defined behaviour on bad input: a sample with a non-finite value, or a position or speed
beyond :data:`MAX_ABS_POSITION_M` / :data:`MAX_ABS_SPEED_MPS` (finite, but interpolating or
transforming it would overflow to inf), is rejected (counted);
a sample older than the newest one is rejected (counted) so time never runs backwards;
with ``max_jump_m``, a sample farther than that from where the previous one predicts
(constant speed and heading; checked when the two are at most ``max_jump_gap_s`` apart)
is a *position jump* (localization reset, map re-anchoring): poses on either side are
not comparable, so the buffer restarts from the new sample and the jump is counted
(``jumps``, ``last_jump_m``, ``last_jump_stamp_ns``) for the caller to react;
a query after the newest sample by more than ``max_extrapolation_s`` or before the
oldest is answered with ``None``. History slots older than the buffer are padded (see
:meth:`OdometryBuffer.history_at`) and the padding is reported.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from alpamayo_ros.sample import EGO_HISTORY_STEPS, HISTORY_DT_S

S_TO_NS = 1_000_000_000
# Plausibility bounds of a map-frame pose: far beyond any map (Earth's circumference is
# 4e7 m) or vehicle, small enough that differences and rotations of them stay finite.
MAX_ABS_POSITION_M = 1e9
MAX_ABS_SPEED_MPS = 1e3


@dataclass(frozen=True)
class EgoPose:
    """Ego pose in the map frame."""

    stamp_ns: int
    x_m: float
    y_m: float
    heading_rad: float
    speed_mps: float


@dataclass(frozen=True)
class EgoHistory:
    """``DrivingSample.ego_history`` plus how many oldest slots were padded."""

    poses: np.ndarray  # float32 (steps, 4): x, y, heading, speed in the ego frame at t=0
    padded_steps: int
    pose: EgoPose  # the ego pose at t=0 (map frame)


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


class OdometryBuffer:
    """Time-ordered ego poses with interpolation (thread-compatible: one writer)."""

    def __init__(self, horizon_s: float = 5.0, max_extrapolation_s: float = 0.2,
                 max_jump_m: float = math.inf, max_jump_gap_s: float = 1.0) -> None:
        if not (math.isfinite(horizon_s) and horizon_s > 0):
            raise ValueError(f"horizon_s must be > 0, got {horizon_s!r}")
        if not (math.isfinite(max_extrapolation_s) and max_extrapolation_s >= 0):
            raise ValueError(f"max_extrapolation_s must be >= 0, got {max_extrapolation_s!r}")
        if not max_jump_m > 0:
            raise ValueError(f"max_jump_m must be > 0, got {max_jump_m!r}")
        if not (math.isfinite(max_jump_gap_s) and max_jump_gap_s > 0):
            raise ValueError(f"max_jump_gap_s must be > 0, got {max_jump_gap_s!r}")
        self.max_jump_m = float(max_jump_m)
        self.max_jump_gap_ns = int(max_jump_gap_s * S_TO_NS)
        self.jumps = 0
        self.last_jump_m = math.nan
        self.last_jump_stamp_ns: int | None = None
        self.horizon_ns = int(horizon_s * S_TO_NS)
        self.max_extrapolation_ns = int(max_extrapolation_s * S_TO_NS)
        self._poses: deque[EgoPose] = deque()
        self.rejected_non_finite = 0
        self.rejected_out_of_range = 0
        self.rejected_out_of_order = 0

    def __len__(self) -> int:
        return len(self._poses)

    @property
    def latest(self) -> EgoPose | None:
        """The newest pose, or None."""
        return self._poses[-1] if self._poses else None

    def add(self, pose: EgoPose) -> bool:
        """Store a pose; False (and counted) when non-finite, out of range or older."""
        values = (pose.x_m, pose.y_m, pose.heading_rad, pose.speed_mps)
        if not all(math.isfinite(v) for v in values):
            self.rejected_non_finite += 1
            return False
        if (max(abs(pose.x_m), abs(pose.y_m)) > MAX_ABS_POSITION_M
                or abs(pose.speed_mps) > MAX_ABS_SPEED_MPS):
            self.rejected_out_of_range += 1
            return False
        if self._poses and pose.stamp_ns <= self._poses[-1].stamp_ns:
            if pose.stamp_ns == self._poses[-1].stamp_ns:
                self._poses[-1] = pose
                return True
            self.rejected_out_of_order += 1
            return False
        if self._poses and math.isfinite(self.max_jump_m):
            jump = self._jump_m(self._poses[-1], pose)
            if jump > self.max_jump_m:
                self._poses.clear()
                self.jumps += 1
                self.last_jump_m, self.last_jump_stamp_ns = jump, pose.stamp_ns
        self._poses.append(pose)
        while self._poses and self._poses[0].stamp_ns < pose.stamp_ns - self.horizon_ns:
            self._poses.popleft()
        return True

    def _jump_m(self, last: EgoPose, pose: EgoPose) -> float:
        """Distance of ``pose`` from ``last`` driven on to its stamp (0 after a long gap)."""
        gap_ns = pose.stamp_ns - last.stamp_ns
        if gap_ns > self.max_jump_gap_ns:
            return 0.0  # too long apart to predict: accepted as a new start
        dt = gap_ns / S_TO_NS
        x = last.x_m + last.speed_mps * dt * math.cos(last.heading_rad)
        y = last.y_m + last.speed_mps * dt * math.sin(last.heading_rad)
        return math.hypot(pose.x_m - x, pose.y_m - y)

    def clear(self) -> None:
        """Forget every pose (e.g. after a clock jump on bag loop)."""
        self._poses.clear()

    def pose_at(self, stamp_ns: int) -> EgoPose | None:
        """Pose at ``stamp_ns``, or None before the oldest or too far after the newest.

        Interpolated inside the buffer; extrapolated at constant speed and heading up to
        ``max_extrapolation_s`` past the newest pose.
        """
        poses = self._poses
        if not poses or stamp_ns < poses[0].stamp_ns:
            return None
        last = poses[-1]
        if stamp_ns >= last.stamp_ns:
            ahead_ns = stamp_ns - last.stamp_ns
            if ahead_ns > self.max_extrapolation_ns:
                return None
            dt = ahead_ns / S_TO_NS
            return EgoPose(stamp_ns, last.x_m + last.speed_mps * dt * math.cos(last.heading_rad),
                           last.y_m + last.speed_mps * dt * math.sin(last.heading_rad),
                           last.heading_rad, last.speed_mps)
        # Binary search for the bracketing pair.
        lo, hi = 0, len(poses) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if poses[mid].stamp_ns <= stamp_ns:
                lo = mid
            else:
                hi = mid
        a, b = poses[lo], poses[hi]
        w = (stamp_ns - a.stamp_ns) / (b.stamp_ns - a.stamp_ns)
        heading = a.heading_rad + w * _wrap(b.heading_rad - a.heading_rad)
        return EgoPose(stamp_ns, a.x_m + w * (b.x_m - a.x_m), a.y_m + w * (b.y_m - a.y_m),
                       _wrap(heading), a.speed_mps + w * (b.speed_mps - a.speed_mps))

    def history_at(self, stamp_ns: int, steps: int = EGO_HISTORY_STEPS,
                   dt_s: float = HISTORY_DT_S) -> EgoHistory | None:
        """The model's ego history ending at ``stamp_ns``, oldest first, in its ego frame.

        None when the pose at ``stamp_ns`` itself is unknown. Slots older than the buffer
        (just after start-up) are padded by extrapolating backwards from the oldest pose
        at its speed and heading, and counted in ``padded_steps``.
        """
        current = self.pose_at(stamp_ns)
        if current is None:
            return None
        oldest = self._poses[0]
        out = np.zeros((steps, 4), dtype=np.float64)
        padded = 0
        c, s = math.cos(current.heading_rad), math.sin(current.heading_rad)
        for i in range(steps):
            t_ns = stamp_ns - int(round((steps - 1 - i) * dt_s * S_TO_NS))
            pose = self.pose_at(t_ns)
            if pose is None:
                padded += 1
                back = (oldest.stamp_ns - t_ns) / S_TO_NS
                pose = EgoPose(t_ns, oldest.x_m - oldest.speed_mps * back *
                               math.cos(oldest.heading_rad),
                               oldest.y_m - oldest.speed_mps * back *
                               math.sin(oldest.heading_rad),
                               oldest.heading_rad, oldest.speed_mps)
            dx, dy = pose.x_m - current.x_m, pose.y_m - current.y_m
            out[i] = (c * dx + s * dy, -s * dx + c * dy,
                      _wrap(pose.heading_rad - current.heading_rad), pose.speed_mps)
        return EgoHistory(out.astype(np.float32), padded, current)

