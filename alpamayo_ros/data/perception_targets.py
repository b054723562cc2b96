"""Perception targets of one episode step, from the simulator's privileged state.

Fills the vector defined by :mod:`alpamayo_ros.perception` (ego frame at the step: x
forward, y left; real values divided by their field's scale) and its mask (False where a
value is undefined: the gap to a lead that is not there, the colour of an absent light,
the box of an empty agent slot; ``*_present`` flags are always known). Only what the
cameras can show counts: an agent must be visible at that step
(``frame.decision.visible``, occlusion included). Map elements (traffic lights, stop
signs, road events, lane ends) count within :data:`MAP_RANGE_M` ahead of the front
bumper, the range the labeller accepts map causes in.

The lead is chosen like the expert's (:meth:`alpamayo_ros.data.expert.Expert._lead`):
the nearest along-moving or static agent ahead (bumper gap -1 .. 80 m), not oncoming,
overlapping the ego's corridor at its current or planned lateral offset. Brake lights
and turn indicators are the agent snapshot's ``braking`` / ``indicator`` flags
(``False`` / ``""`` for snapshots that do not carry them). Agent velocities are ground
velocities expressed in the ego frame.
"""

from __future__ import annotations

import math

import numpy as np

from alpamayo_ros.data.coc import to_ego_frame
from alpamayo_ros.data.scenarios import AgentSnapshot, Episode
from alpamayo_ros.perception import (
    AGENT_RANGE_M,
    AGENT_SLOTS,
    LANE_CENTER_AHEAD_M,
    PERCEPTION_DIM,
    PERCEPTION_FIELDS,
    PERCEPTION_INDEX,
    lane_center_field,
)

MAP_RANGE_M = 120.0  # map elements ahead of the front bumper
LEAD_HORIZON_M = 80.0  # as the expert's lead search
CROSSING_RANGE_M = 50.0
SIREN_RANGE_M = 80.0


class _Targets:
    """Accumulates named entries: ``set`` stores value / scale and marks it known."""

    def __init__(self) -> None:
        self.values = np.zeros(PERCEPTION_DIM, np.float32)
        self.mask = np.zeros(PERCEPTION_DIM, bool)

    def set(self, name: str, value: float) -> None:
        i = PERCEPTION_INDEX[name]
        self.values[i] = float(value) / PERCEPTION_FIELDS[i].scale
        self.mask[i] = True

    def flag(self, name: str, on: bool) -> None:
        self.set(name, 1.0 if on else 0.0)


def _agent_info(episode: Episode) -> dict[str, tuple[str, int]]:
    """(mode, direction) of every agent; both are fixed for an agent's lifetime."""
    return {a.id: (a.mode, a.direction) for a in episode.world.agents}


def _extents(snap: AgentSnapshot, mode: str) -> tuple[float, float]:
    """Half extents (along s, along d) of an agent as the world defines them."""
    if mode == "across":
        return 0.5 * snap.width_m, 0.5 * snap.length_m
    return 0.5 * snap.length_m, 0.5 * snap.width_m


def perception_targets(episode: Episode, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets ``float32 (PERCEPTION_DIM,)`` and mask ``bool (PERCEPTION_DIM,)`` at ``index``."""
    if not 0 <= index < len(episode.frames):
        raise IndexError(f"index {index} outside the episode's {len(episode.frames)} frames")
    frame = episode.frames[index]
    world, road = episode.world, episode.world.road
    ego = frame.ego
    front = ego.s + 0.5 * ego.length_m
    info = _agent_info(episode)
    visible = [a for a in frame.agents if a.id in frame.decision.visible and a.id in info]
    t = _Targets()

    # Lead vehicle / obstacle in the ego's corridor.
    lead, lead_gap = None, math.inf
    corridor = [ego.d, frame.decision.target_d]
    for a in visible:
        mode, direction = info[a.id]
        if mode == "across" or (mode == "along" and direction < 0):
            continue
        half_s, half_d = _extents(a, mode)
        gap = (a.s - ego.s) - half_s - 0.5 * ego.length_m
        if gap < -1.0 or gap > LEAD_HORIZON_M:
            continue
        if not any(abs(a.d - d) < half_d + 0.5 * ego.width_m + 0.25 for d in corridor):
            continue
        if gap < lead_gap:
            lead, lead_gap = a, gap
    t.flag("lead_present", lead is not None)
    if lead is not None:
        t.set("lead_gap", max(lead_gap, 0.0))
        t.set("lead_speed", lead.v_mps)
        t.flag("lead_braking", lead.braking)

    # Traffic light for the ego's road ahead (as the expert looks it up).
    light = world.light_ahead(front - 1.0, MAP_RANGE_M)
    t.flag("light_present", light is not None)
    if light is not None:
        state = frame.lights.get(light.id, light.state(frame.time_s))
        t.flag("light_red", state == "red")
        t.flag("light_yellow", state == "yellow")
        t.flag("light_green", state == "green")
        t.set("light_distance", max(light.stop_line_s - front, 0.0))

    signs = [ss.stop_line_s - front for ss in world.stop_signs
             if -2.0 <= ss.stop_line_s - front <= MAP_RANGE_M]
    t.flag("stop_sign_present", bool(signs))
    if signs:
        t.set("stop_sign_distance", max(min(signs), 0.0))

    # Agents crossing the road ahead (moving across, or standing on the carriageway).
    cfg = road.config
    road_right = -0.5 * cfg.lane_width_m
    road_left = (cfg.num_lanes + cfg.oncoming_lanes - 0.5) * cfg.lane_width_m
    origin = np.array([ego.x, ego.y, ego.heading])
    crossing = None
    for a in visible:
        mode, _ = info[a.id]
        if mode != "across":
            continue
        half_s, _ = _extents(a, mode)
        gap = (a.s - half_s) - front
        on_road = road_right - 0.3 < a.d < road_left + 0.3
        if not (a.v_mps > 0.05 or on_road) or not -ego.length_m <= gap <= CROSSING_RANGE_M:
            continue
        if crossing is None or gap < crossing[0]:
            crossing = (gap, a)
    t.flag("crossing_present", crossing is not None)
    if crossing is not None:
        gap, a = crossing
        rel = to_ego_frame(np.array([[a.x, a.y, a.heading]]), origin)[0]
        t.set("crossing_distance", max(gap, 0.0))
        t.set("crossing_lateral", rel[1])

    events = [ev for ev in world.events
              if ev.s_end >= ego.s and ev.s_start - front <= MAP_RANGE_M]
    event = min(events, key=lambda ev: ev.s_start, default=None)
    t.flag("event_present", event is not None)
    if event is not None:
        t.set("event_distance", max(event.s_start - front, 0.0))
        t.set("event_speed", event.speed_mps)

    lane = road.lane_of(ego.d)
    ends = [sp.s_end - front for sp in world.lane_spans
            if sp.kind == "on_ramp" and sp.lane == lane
            and sp.s_start <= ego.s and 0.0 <= sp.s_end - front <= MAP_RANGE_M]
    t.flag("lane_end_present", bool(ends))
    if ends:
        t.set("lane_end_distance", min(ends))

    left, right = lane + 1, lane - 1
    t.flag("left_lane", world.lane_exists(left, ego.s) and road.lane_direction(left) > 0)
    t.flag("right_lane", world.lane_exists(right, ego.s) and road.lane_direction(right) > 0)
    t.flag("oncoming_left", world.lane_exists(left, ego.s) and road.lane_direction(left) < 0)
    t.flag("siren_behind", any(
        a.siren and 0.0 < ego.s - a.s <= SIREN_RANGE_M for a in visible))
    t.set("ego_lateral_offset", ego.d - road.lane_center(lane))
    heading_error = ego.heading - float(road.heading_at(ego.s))
    t.set("ego_heading_error", math.atan2(math.sin(heading_error), math.cos(heading_error)))
    t.set("curvature_20m", float(road.curvature_at(ego.s + 20.0)))
    t.set("curvature_50m", float(road.curvature_at(ego.s + 50.0)))
    ahead = ego.s + np.asarray(LANE_CENTER_AHEAD_M)
    xs, ys, hs = road.to_world(ahead, np.full(ahead.shape, road.lane_center(lane)))
    centres = to_ego_frame(np.stack([xs, ys, hs], axis=1), origin)
    for ahead_m, (_, y, _) in zip(LANE_CENTER_AHEAD_M, centres):
        t.set(lane_center_field(ahead_m), float(y))

    # The AGENT_SLOTS nearest visible agents, box centres in the ego frame.
    slots = []
    if visible:
        poses = to_ego_frame(np.array([[a.x, a.y, a.heading] for a in visible]), origin)
        for a, (x, y, h) in zip(visible, poses):
            dist = math.hypot(x, y)
            if dist <= AGENT_RANGE_M:
                slots.append((dist, a.id, a, x, y, h))
    slots.sort(key=lambda s: (s[0], s[1]))
    for k in range(AGENT_SLOTS):
        p = f"agent{k}_"
        t.flag(p + "present", k < len(slots))
        if k >= len(slots):
            continue
        _, _, a, x, y, h = slots[k]
        indicator = a.indicator
        t.set(p + "x", x)
        t.set(p + "y", y)
        t.set(p + "vx", a.v_mps * math.cos(h))
        t.set(p + "vy", a.v_mps * math.sin(h))
        t.set(p + "length", a.length_m)
        t.set(p + "width", a.width_m)
        t.flag(p + "braking", a.braking)
        t.flag(p + "indicator_left", indicator == "left")
        t.flag(p + "indicator_right", indicator == "right")
    return t.values, t.mask


def episode_perception_targets(episode: Episode, indices: list[int] | np.ndarray
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Stacked targets ``(N, PERCEPTION_DIM)`` and masks of several steps."""
    rows = [perception_targets(episode, int(i)) for i in indices]
    if not rows:
        return (np.zeros((0, PERCEPTION_DIM), np.float32),
                np.zeros((0, PERCEPTION_DIM), bool))
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
