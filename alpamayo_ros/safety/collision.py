"""Collision check of a plan against obstacles: oriented boxes at constant velocity.

Obstacles (the twin of ``msg/Obstacle.msg``) are given in the plan's frame (the ego
frame at the plan's camera stamp; the node transforms them with tf) at their own stamp
``obstacles_stamp_ns``, and move at constant velocity. The plan is sampled every
``time_step_s`` from *now* (the part already behind us is not checked) to its horizon;
at each sample the ego box (inflated by a margin) is tested against every obstacle box
with the separating-axis theorem. The time to collision is counted from now.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from alpamayo_ros.trajectory import Trajectory

S_TO_NS = 1_000_000_000


class ObstacleClass(enum.IntEnum):
    """``Obstacle.CLASS_*`` constants."""

    UNKNOWN = 0
    VEHICLE = 1
    PEDESTRIAN = 2
    CYCLIST = 3
    STATIC = 4


@dataclass(frozen=True)
class Obstacle:
    """An oriented box moving at constant velocity, in the plan's frame."""

    x_m: float
    y_m: float
    yaw_rad: float
    length_m: float
    width_m: float
    vx_mps: float = 0.0
    vy_mps: float = 0.0
    height_m: float = 0.0
    id: str = ""
    classification: ObstacleClass = ObstacleClass.UNKNOWN

    def __post_init__(self) -> None:
        for name in ("length_m", "width_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        for name in ("x_m", "y_m", "yaw_rad", "vx_mps", "vy_mps"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class EgoBox:
    """Ego footprint: box centre ``center_offset_m`` ahead of the trajectory point."""

    length_m: float
    width_m: float
    center_offset_m: float = 0.0
    margin_m: float = 0.0


@dataclass(frozen=True)
class Collision:
    """First predicted overlap."""

    time_to_collision_s: float  # from now
    plan_time_s: float  # time_from_start on the plan
    obstacle_index: int
    obstacle_id: str


def ego_poses(traj: Trajectory, plan_times_s: np.ndarray) -> np.ndarray:
    """Ego ``(x, y, heading)`` at ``plan_times_s`` (linear between points, origin at 0)."""
    t = traj.time_s
    x, y, h = traj.x_m, traj.y_m, traj.heading_rad
    if t[0] > 0:
        t = np.concatenate([[0.0], t])
        x, y, h = (np.concatenate([[0.0], arr]) for arr in (x, y, h))
    return np.stack([np.interp(plan_times_s, t, v) for v in (x, y, h)], axis=-1)


def boxes_overlap(
    centers_a: np.ndarray, yaw_a: np.ndarray, half_a: np.ndarray,
    centers_b: np.ndarray, yaw_b: np.ndarray, half_b: np.ndarray,
) -> np.ndarray:
    """Separating-axis overlap test of oriented rectangles, broadcasting over leading dims.

    ``centers_*`` ``(..., 2)``, ``yaw_*`` ``(...)``, ``half_*`` ``(..., 2)`` half length and
    half width. Touching boxes count as overlapping.
    """
    axes_a = np.stack([np.stack([np.cos(yaw_a), np.sin(yaw_a)], -1),
                       np.stack([-np.sin(yaw_a), np.cos(yaw_a)], -1)], -2)  # (..., 2, 2)
    axes_b = np.stack([np.stack([np.cos(yaw_b), np.sin(yaw_b)], -1),
                       np.stack([-np.sin(yaw_b), np.cos(yaw_b)], -1)], -2)
    d = centers_b - centers_a
    separated = np.zeros(np.broadcast_shapes(d.shape[:-1], yaw_a.shape, yaw_b.shape), bool)
    for axes in (axes_a, axes_b):
        for k in range(2):
            u = axes[..., k, :]
            ra = (half_a[..., 0] * np.abs(np.sum(u * axes_a[..., 0, :], -1))
                  + half_a[..., 1] * np.abs(np.sum(u * axes_a[..., 1, :], -1)))
            rb = (half_b[..., 0] * np.abs(np.sum(u * axes_b[..., 0, :], -1))
                  + half_b[..., 1] * np.abs(np.sum(u * axes_b[..., 1, :], -1)))
            separated |= np.abs(np.sum(u * d, -1)) > ra + rb
    return ~separated


def poses_finite(traj: Trajectory) -> bool:
    """True when every time and pose of ``traj`` is finite (else it cannot be checked)."""
    return all(bool(np.all(np.isfinite(getattr(traj, f))))
               for f in ("time_s", "x_m", "y_m", "heading_rad"))


def first_collision(
    traj: Trajectory,
    obstacles: Sequence[Obstacle],
    now_ns: int,
    ego: EgoBox,
    obstacles_stamp_ns: int | None = None,
    time_step_s: float = 0.05,
) -> Collision | None:
    """Earliest overlap between the plan (from now on) and the obstacles, or None."""
    if not obstacles:
        return None
    age_s = (int(now_ns) - traj.stamp_ns) / S_TO_NS
    start = max(age_s, 0.0)
    if start > traj.horizon_s:
        return None
    times = np.arange(start, traj.horizon_s, time_step_s)
    times = np.concatenate([times, [traj.horizon_s]])
    pose = ego_poses(traj, times)  # (S, 3)
    ego_c = pose[:, :2] + ego.center_offset_m * np.stack(
        [np.cos(pose[:, 2]), np.sin(pose[:, 2])], -1)
    ego_half = np.array([ego.length_m / 2 + ego.margin_m, ego.width_m / 2 + ego.margin_m])
    obs = np.array([(o.x_m, o.y_m, o.yaw_rad, o.length_m / 2, o.width_m / 2, o.vx_mps,
                     o.vy_mps) for o in obstacles])  # (K, 7)
    obs_stamp = int(now_ns) if obstacles_stamp_ns is None else int(obstacles_stamp_ns)
    # obstacle time at each sample: stamp + t_plan - obstacle stamp
    dt_obs = (traj.stamp_ns - obs_stamp) / S_TO_NS + times  # (S,)
    obs_c = obs[None, :, 0:2] + dt_obs[:, None, None] * obs[None, :, 5:7]  # (S, K, 2)
    hit = boxes_overlap(
        ego_c[:, None, :], pose[:, None, 2], ego_half[None, None, :],
        obs_c, obs[None, :, 2], obs[None, :, 3:5])  # (S, K)
    if not hit.any():
        return None
    s, k = np.argwhere(hit)[0]
    return Collision(
        time_to_collision_s=float(times[s] - age_s),
        plan_time_s=float(times[s]),
        obstacle_index=int(k),
        obstacle_id=obstacles[int(k)].id,
    )


def check_collision(
    traj: Trajectory,
    obstacles: Sequence[Obstacle],
    now_ns: int,
    ego: EgoBox,
    min_time_to_collision_s: float,
    obstacles_stamp_ns: int | None = None,
    time_step_s: float = 0.05,
) -> tuple[float, bool]:
    """Time to the first predicted collision (s, inf when none); passes at >= the limit.

    A plan whose poses are not finite gets NaN (and fails): it cannot be checked.
    """
    if not poses_finite(traj):
        return math.nan, False
    hit = first_collision(traj, obstacles, now_ns, ego, obstacles_stamp_ns, time_step_s)
    value = math.inf if hit is None else hit.time_to_collision_s
    return value, value >= min_time_to_collision_s


def collision_distance_m(traj: Trajectory, hit: Collision, now_ns: int) -> float:
    """Path distance (m) from where ``traj`` has the ego at ``now_ns`` to the collision ``hit``.

    ``hit`` is :func:`first_collision`'s answer for ``traj``; 0 when it overlaps already.
    """
    now_s = max((int(now_ns) - traj.stamp_ns) / S_TO_NS, 0.0)
    return max(traj.distance_at(hit.plan_time_s) - traj.distance_at(now_s), 0.0)


def obstacles_in_frame(obstacles: Sequence[Obstacle], origin_x_m: float, origin_y_m: float,
                       origin_yaw_rad: float) -> list[Obstacle]:
    """Obstacles re-expressed in the frame whose origin is the given pose (map -> ego)."""
    c, s = math.cos(origin_yaw_rad), math.sin(origin_yaw_rad)
    out = []
    for ob in obstacles:
        dx, dy = ob.x_m - origin_x_m, ob.y_m - origin_y_m
        out.append(replace(
            ob, x_m=c * dx + s * dy, y_m=-s * dx + c * dy,
            yaw_rad=math.atan2(math.sin(ob.yaw_rad - origin_yaw_rad),
                               math.cos(ob.yaw_rad - origin_yaw_rad)),
            vx_mps=c * ob.vx_mps + s * ob.vy_mps, vy_mps=-s * ob.vx_mps + c * ob.vy_mps))
    return out
