"""The simulated ego in world coordinates: unicycle state, Frenet conversion, footprint.

The data engine keeps its ego in Frenet coordinates (``s``, ``d``, no heading) because
its expert drives along lanes. In closed loop the ego is driven by ``(acceleration,
curvature)`` commands and can point anywhere, so here it lives in the world (map) frame
as ``(x, y, heading, speed)`` and is integrated with :func:`alpamayo_ros.unicycle.integrate`.
:func:`frenet_from_world` projects it back onto the road so the data engine's agents
(which reason in ``s``/``d``) keep reacting to it: :func:`sync_world_ego` writes the
projection into the world's :class:`~alpamayo_ros.data.world.EgoState`.

Frenet convention (as in :class:`~alpamayo_ros.data.world.Road`): ``s`` is arc length
along the reference line, ``d`` the lateral offset (positive to the left), and
``Road.to_world(s, d)`` is the inverse of :func:`frenet_from_world`. Beyond the two ends
the road is extended straight, as ``Road.to_world`` does. The projection is unique only
where ``|d|`` is below the local radius of curvature (5 m at the 0.2 1/m bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alpamayo_ros.data.world import EgoState, Road
from alpamayo_ros.unicycle import integrate

NEWTON_ITERATIONS = 4
SEARCH_WINDOW_M = 40.0  # around the previous s when a hint is given


@dataclass(frozen=True)
class EgoPose:
    """Ego state in the map frame (rear-axle free point model: the box centre)."""

    x_m: float
    y_m: float
    heading_rad: float
    speed_mps: float
    acceleration_mps2: float = 0.0  # realised over the last step (0 once stopped)
    curvature_per_m: float = 0.0  # applied over the last step

    @property
    def yaw_rate_radps(self) -> float:
        """Heading rate: speed x curvature."""
        return self.speed_mps * self.curvature_per_m


def wrap_angle(angle_rad: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (angle_rad + math.pi) % (2.0 * math.pi) - math.pi


def step_ego(pose: EgoPose, acceleration_mps2: float, curvature_per_m: float,
             dt_s: float) -> EgoPose:
    """Advance the ego one step of constant controls with the AR1 unicycle (no reversing)."""
    states = integrate(np.array([acceleration_mps2]), np.array([curvature_per_m]),
                       pose.speed_mps, dt_s=dt_s)
    lx, ly = float(states.x_m[0]), float(states.y_m[0])
    c, s = math.cos(pose.heading_rad), math.sin(pose.heading_rad)
    speed = float(states.velocity_mps[0])
    return EgoPose(pose.x_m + c * lx - s * ly, pose.y_m + s * lx + c * ly,
                   wrap_angle(pose.heading_rad + float(states.heading_rad[0])), speed,
                   (speed - pose.speed_mps) / dt_s, curvature_per_m)


def frenet_from_world(road: Road, x_m: float, y_m: float,
                      s_hint: float | None = None) -> tuple[float, float]:
    """Frenet ``(s, d)`` of a world point: nearest point of the reference line, refined.

    ``s_hint`` (the previous ``s`` of a moving point) restricts the search to
    ``SEARCH_WINDOW_M`` around it, which keeps a point near a self-approaching road on
    its own branch and makes the search cheap.
    """
    s, d = frenet_from_world_many(road, np.array([x_m]), np.array([y_m]), s_hint)
    return float(s[0]), float(d[0])


def frenet_from_world_many(road: Road, x_m: np.ndarray, y_m: np.ndarray,
                           s_hint: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`frenet_from_world` for arrays of points ``(N,)`` sharing one ``s_hint``."""
    x = np.asarray(x_m, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y_m, dtype=np.float64).reshape(-1, 1)
    n = road.s.size
    if s_hint is None:
        i0, i1 = 0, n
    else:
        i0 = int(np.clip((s_hint - SEARCH_WINDOW_M) / road.STEP_M, 0, n - 2))
        i1 = int(np.clip((s_hint + SEARCH_WINDOW_M) / road.STEP_M + 2, i0 + 2, n))
    ax, ay = road.x[i0:i1 - 1], road.y[i0:i1 - 1]
    vx, vy = road.x[i0 + 1:i1] - ax, road.y[i0 + 1:i1] - ay
    t = ((x - ax) * vx + (y - ay) * vy) / np.maximum(vx * vx + vy * vy, 1e-12)
    lo = np.zeros(t.shape[1])
    hi = np.ones(t.shape[1])
    if i0 == 0:
        lo[0] = -np.inf  # before the start: the road extends straight backwards
    if i1 == n:
        hi[-1] = np.inf  # after the end: straight ahead
    t = np.clip(t, lo, hi)
    dist2 = (ax + t * vx - x) ** 2 + (ay + t * vy - y) ** 2
    k = np.argmin(dist2, axis=1)
    rows = np.arange(x.shape[0])
    s = road.s[i0 + k] + t[rows, k] * road.STEP_M
    x, y = x[:, 0], y[:, 0]
    # Newton refinement against Road.to_world (interpolated heading, extrapolated ends).
    for _ in range(NEWTON_ITERATIONS):
        px, py, h = road.to_world(s, np.zeros_like(s))
        ch, sh = np.cos(h), np.sin(h)
        along = (x - px) * ch + (y - py) * sh
        d = -(x - px) * sh + (y - py) * ch
        kappa = road.curvature_at(np.clip(s, 0.0, road.length_m))
        s = s + along / np.maximum(1.0 - kappa * d, 0.2)
        if np.all(np.abs(along) < 1e-9):
            break
    px, py, h = road.to_world(s, np.zeros_like(s))
    d = -(x - px) * np.sin(h) + (y - py) * np.cos(h)
    return s, d


def world_from_frenet(road: Road, s: float, d: float,
                      relative_heading_rad: float = 0.0) -> tuple[float, float, float]:
    """World ``(x, y, heading)`` of a Frenet pose heading ``relative_heading_rad`` off the road."""
    x, y, h = road.to_world(s, d)
    return float(x), float(y), wrap_angle(float(h) + relative_heading_rad)


def ego_pose_from_state(road: Road, ego: EgoState) -> EgoPose:
    """World pose of a data-engine ``EgoState`` (heading = road + its heading offset)."""
    x, y, h = world_from_frenet(road, ego.s, ego.d, ego.heading_offset_rad)
    return EgoPose(x, y, h, math.hypot(ego.v_mps, ego.vd_mps), ego.accel_mps2,
                   float(road.curvature_at(ego.s)))


def sync_world_ego(road: Road, ego: EgoState, pose: EgoPose) -> None:
    """Write the world pose into the data engine's Frenet ``EgoState`` (in place).

    ``v_mps`` becomes the speed along the road, ``vd_mps`` the lateral rate (what the
    agents' car-following and gap checks read) and ``heading_offset_rad`` the heading
    relative to the road (what ``agent_world_pose`` and the visibility test read), with
    the data engine's relation ``vd = v tan(offset)``.
    """
    s, d = frenet_from_world(road, pose.x_m, pose.y_m, s_hint=ego.s)
    rel = wrap_angle(pose.heading_rad - float(road.heading_at(s)))
    ego.s, ego.d = s, d
    ego.v_mps = pose.speed_mps * math.cos(rel)
    ego.vd_mps = pose.speed_mps * math.sin(rel)
    ego.heading_offset_rad = rel
    ego.accel_mps2 = pose.acceleration_mps2

