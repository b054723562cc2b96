"""A 2.5D driving world: a road in Frenet coordinates, map elements and reactive agents.

The road is a reference polyline built from (length, curvature) segments; lanes sit at
lateral offsets ``d = lane * lane_width_m`` (lane 0 is the rightmost main lane, d grows to
the left; lane -1 is an on-ramp / exit lane or shoulder where it exists). Lanes at or above
``num_lanes`` carry oncoming traffic. Every agent lives in (s, d): vehicles and cyclists
move *along* the road (direction +1 or -1), pedestrians and cross traffic move *across*
it at a fixed s. Map elements (traffic lights with stop lines, stop signs, crosswalks,
intersections, construction zones, road events, poles and signs) are placed by s.

Agents react to each other: vehicles follow their leader with the Intelligent Driver
Model (leaders include the ego, other vehicles, crossing pedestrians and red lights), run
scripted lane changes / cut-ins / braking when their trigger fires, pedestrians wait for
an approaching car before stepping onto the road. The ego is driven by
:mod:`alpamayo_ros.data.expert`; this module only integrates what it asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DT_S = 0.1  # simulation and camera step, 10 Hz (AR1 sampling rate)
# IDM defaults (Treiber et al. 2000, urban values).
IDM_TIME_HEADWAY_S = 1.4
IDM_MIN_GAP_M = 2.5
IDM_COMFORT_DECEL_MPS2 = 2.5
IDM_MAX_DECEL_MPS2 = 8.0

# Named vehicle colours (RGB) so reasoning text can say "the red hatchback".
COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 235), "black": (30, 30, 35), "silver": (170, 175, 180),
    "red": (190, 30, 30), "blue": (30, 70, 170), "green": (40, 120, 60),
    "yellow": (225, 190, 40), "grey": (110, 110, 115), "orange": (230, 120, 30),
}

# Agent kinds: (length_m, width_m, height_m) defaults.
AGENT_DIMENSIONS_M: dict[str, tuple[float, float, float]] = {
    "car": (4.6, 1.9, 1.5), "van": (5.4, 2.1, 2.4), "truck": (8.5, 2.5, 3.2),
    "bus": (12.0, 2.6, 3.2), "ambulance": (6.0, 2.3, 2.6), "cyclist": (1.8, 0.7, 1.7),
    "pedestrian": (0.5, 0.6, 1.75), "cone": (0.4, 0.4, 0.8), "barrier": (1.8, 0.5, 1.0),
}
VEHICLE_KINDS = frozenset({"car", "van", "truck", "bus", "ambulance"})
STATIC_KINDS = frozenset({"cone", "barrier"})
OCCLUDER_MIN_HEIGHT_M = 1.3  # objects at least this tall hide what is behind them
# A vehicle decelerating harder than this is braking: its brake lights are on and the
# expert describes it as braking (engine drag and coasting stay below about 0.5 m/s^2).
BRAKING_MPS2 = -0.7
# An along-mover whose target lateral offset is this far from its offset is changing
# lanes (a scripted lane change or cut-in): its turn indicator is on, steadily.
INDICATOR_OFFSET_M = 0.5


@dataclass
class RoadConfig:
    """Geometry of the road."""

    segments: list[tuple[float, float]] = field(default_factory=lambda: [(300.0, 0.0)])
    num_lanes: int = 2  # same-direction lanes, indices 0 .. num_lanes-1
    oncoming_lanes: int = 0  # lanes num_lanes .. num_lanes+oncoming-1 drive the other way
    lane_width_m: float = 3.5
    speed_limit_mps: float = 13.9
    shoulder_m: float = 2.5  # paved shoulder right of lane 0 (pull-over space)

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("segments must not be empty")
        for length, curvature in self.segments:
            if length <= 0.0:
                raise ValueError(f"segments: length {length} must be > 0")
            if abs(curvature) > 0.2:
                raise ValueError(f"segments: |curvature| {curvature} must be <= 0.2 1/m")
        if self.num_lanes < 1:
            raise ValueError(f"num_lanes must be >= 1, got {self.num_lanes}")
        if self.oncoming_lanes < 0:
            raise ValueError(f"oncoming_lanes must be >= 0, got {self.oncoming_lanes}")
        if not 2.5 <= self.lane_width_m <= 5.0:
            raise ValueError(f"lane_width_m must be in [2.5, 5], got {self.lane_width_m}")
        if self.speed_limit_mps <= 0.0:
            raise ValueError(f"speed_limit_mps must be > 0, got {self.speed_limit_mps}")
        if self.shoulder_m < 0.0:
            raise ValueError(f"shoulder_m must be >= 0, got {self.shoulder_m}")


class Road:
    """Reference polyline sampled every ``STEP_M`` with heading and curvature."""

    STEP_M = 0.5

    def __init__(self, config: RoadConfig) -> None:
        self.config = config
        ds = self.STEP_M
        curv = np.concatenate([
            np.full(max(1, int(round(length / ds))), k) for length, k in config.segments])
        self.curvature = np.concatenate([[curv[0]], curv])
        self.heading = np.concatenate([[0.0], np.cumsum(curv * ds)])
        mid = self.heading[:-1] + 0.5 * curv * ds
        self.x = np.concatenate([[0.0], np.cumsum(ds * np.cos(mid))])
        self.y = np.concatenate([[0.0], np.cumsum(ds * np.sin(mid))])
        self.s = np.arange(self.x.size) * ds
        self.length_m = float(self.s[-1])

    @property
    def lane_width_m(self) -> float:
        """Width of every lane."""
        return self.config.lane_width_m

    def lane_center(self, lane: int) -> float:
        """Lateral offset of a lane centre."""
        return lane * self.config.lane_width_m

    def lane_of(self, d: float) -> int:
        """Lane index containing lateral offset ``d``."""
        return int(math.floor(d / self.config.lane_width_m + 0.5))

    def lane_direction(self, lane: int) -> int:
        """+1 for same-direction lanes, -1 for oncoming ones."""
        return -1 if lane >= self.config.num_lanes else 1

    def heading_at(self, s: np.ndarray | float) -> np.ndarray:
        """Road heading (rad) at arc length ``s``."""
        return np.interp(s, self.s, self.heading)

    def curvature_at(self, s: np.ndarray | float) -> np.ndarray:
        """Road curvature (1/m) at arc length ``s``."""
        return np.interp(s, self.s, self.curvature)

    def to_world(self, s: np.ndarray | float, d: np.ndarray | float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World (x, y, road heading) of Frenet points; s beyond the ends extrapolates."""
        s = np.asarray(s, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        sc = np.clip(s, 0.0, self.length_m)
        h = np.interp(sc, self.s, self.heading)
        x = np.interp(sc, self.s, self.x) + (s - sc) * np.cos(h)
        y = np.interp(sc, self.s, self.y) + (s - sc) * np.sin(h)
        return x - d * np.sin(h), y + d * np.cos(h), h


# --------------------------------------------------------------------------- map elements
@dataclass
class TrafficLight:
    """A signal controlling the ego direction, with its stop line at ``stop_line_s``."""

    id: str
    stop_line_s: float
    schedule: list[tuple[float, str]]  # (start time s, "red"|"yellow"|"green"), sorted

    def state(self, t_s: float) -> str:
        """Light colour at time ``t_s``."""
        current = self.schedule[0][1]
        for start, colour in self.schedule:
            if t_s + 1e-9 >= start:
                current = colour
        return current


@dataclass
class StopSign:
    """A stop sign with its stop line."""

    id: str
    stop_line_s: float


@dataclass
class Crosswalk:
    """A zebra crossing across all lanes at ``s`` (centre), ``width_m`` along s."""

    id: str
    s: float
    width_m: float = 4.0


@dataclass
class Intersection:
    """A crossing road (drawn perpendicular to the reference line) centred at ``s``."""

    id: str
    s: float
    width_m: float = 14.0


@dataclass
class RoadEvent:
    """A stretch with a lower advisory speed: curve, speed bump, school or work zone."""

    id: str
    kind: str  # "curve" | "speed_bump" | "school_zone" | "construction_zone"
    s_start: float
    s_end: float
    speed_mps: float


@dataclass
class LaneSpan:
    """A lane that exists only on ``[s_start, s_end]`` (on-ramp, exit lane)."""

    lane: int
    s_start: float
    s_end: float
    kind: str = "on_ramp"  # "on_ramp" (ends, must merge) | "exit" (begins, may split)


@dataclass
class Prop:
    """Decoration that also shows up in cameras: a pole, a sign board or a tree."""

    kind: str  # "pole" | "sign" | "tree" | "building"
    s: float
    d: float
    height_m: float = 5.0
    size_m: float = 0.3
    colour: tuple[int, int, int] = (120, 120, 120)


# --------------------------------------------------------------------------- agents
@dataclass
class Trigger:
    """Fires at ``time_s`` or when the ego's s passes ``ego_s`` (whichever is set)."""

    time_s: float | None = None
    ego_s: float | None = None

    def fired(self, t_s: float, ego_s: float) -> bool:
        """Whether the trigger condition holds."""
        if self.time_s is not None and t_s >= self.time_s:
            return True
        return self.ego_s is not None and ego_s >= self.ego_s


@dataclass
class Script:
    """A scripted behaviour change of an agent."""

    trigger: Trigger
    action: str  # "brake" | "lane_change" | "cut_in" | "set_speed" | "start"
    value: float = 0.0  # brake decel m/s^2, target lane, or new speed m/s
    done: bool = False


@dataclass
class Agent:
    """A road user or static object in Frenet coordinates."""

    id: str
    kind: str
    s: float
    d: float
    v_mps: float = 0.0
    mode: str = "along"  # "along" (moves in s) | "across" (moves in d at fixed s) | "static"
    direction: int = 1  # +1 / -1 along s (along) or along d (across)
    desired_speed_mps: float = 0.0
    colour: str = "silver"
    length_m: float = 0.0
    width_m: float = 0.0
    height_m: float = 0.0
    target_d: float | None = None
    d_end: float | None = None  # across movers stop (and vanish from conflict) here
    scripts: list[Script] = field(default_factory=list)
    active: bool = True  # across movers start inactive until a "start" script fires
    siren: bool = False
    accel_mps2: float = 0.0
    vd_mps: float = 0.0
    braking_to_stop: float = 0.0  # >0: scripted stop with this deceleration
    waiting: bool = False
    max_accel_mps2: float = 1.5

    def __post_init__(self) -> None:
        if self.kind not in AGENT_DIMENSIONS_M:
            raise ValueError(f"kind must be one of {sorted(AGENT_DIMENSIONS_M)}, got {self.kind}")
        if self.mode not in ("along", "across", "static"):
            raise ValueError(f"mode must be along/across/static, got {self.mode}")
        length, width, height = AGENT_DIMENSIONS_M[self.kind]
        self.length_m = self.length_m or length
        self.width_m = self.width_m or width
        self.height_m = self.height_m or height
        if self.target_d is None:
            self.target_d = self.d

    @property
    def is_vehicle(self) -> bool:
        """Cars, vans, trucks, buses, ambulances."""
        return self.kind in VEHICLE_KINDS

    def extent_s(self) -> float:
        """Half extent along s."""
        return 0.5 * (self.length_m if self.mode != "across" else self.width_m)

    def extent_d(self) -> float:
        """Half extent along d."""
        return 0.5 * (self.width_m if self.mode != "across" else self.length_m)


@dataclass
class EgoState:
    """The ego vehicle in Frenet coordinates (controlled by the expert)."""

    s: float
    d: float
    v_mps: float
    vd_mps: float = 0.0
    accel_mps2: float = 0.0
    length_m: float = 4.8
    width_m: float = 1.9
    height_m: float = 1.5
    heading_offset_rad: float = 0.0  # heading relative to the road; vd = v tan(offset)


@dataclass
class World:
    """Everything the simulator, expert, labeler and renderer need."""

    road: Road
    ego: EgoState
    agents: list[Agent] = field(default_factory=list)
    lights: list[TrafficLight] = field(default_factory=list)
    stop_signs: list[StopSign] = field(default_factory=list)
    crosswalks: list[Crosswalk] = field(default_factory=list)
    intersections: list[Intersection] = field(default_factory=list)
    events: list[RoadEvent] = field(default_factory=list)
    lane_spans: list[LaneSpan] = field(default_factory=list)
    props: list[Prop] = field(default_factory=list)
    time_s: float = 0.0
    appearance: dict = field(default_factory=dict)  # renderer hints: sky, sun, tint

    def agent(self, agent_id: str) -> Agent:
        """Agent by id."""
        for a in self.agents:
            if a.id == agent_id:
                return a
        raise KeyError(agent_id)

    def lane_exists(self, lane: int, s: float) -> bool:
        """Whether ``lane`` is drivable at ``s``."""
        cfg = self.road.config
        if 0 <= lane < cfg.num_lanes + cfg.oncoming_lanes:
            return True
        return any(sp.lane == lane and sp.s_start <= s <= sp.s_end for sp in self.lane_spans)

    def light_ahead(self, s: float, horizon_m: float = 120.0) -> TrafficLight | None:
        """Nearest traffic light whose stop line is ahead of ``s`` within ``horizon_m``."""
        ahead = [tl for tl in self.lights if 0.0 < tl.stop_line_s - s <= horizon_m]
        return min(ahead, key=lambda tl: tl.stop_line_s, default=None)

    # ------------------------------------------------------------------ agent behaviour
    def step_agents(self, dt_s: float = DT_S) -> None:
        """Advance every agent one step (reacting to the current state of all others)."""
        t = self.time_s
        commands = []
        for a in self.agents:
            for sc in a.scripts:
                if not sc.done and sc.trigger.fired(t, self.ego.s):
                    sc.done = True
                    self._apply_script(a, sc)
            if a.mode == "along" and a.active:
                commands.append((a, self._along_accel(a)))
            elif a.mode == "across" and a.active:
                commands.append((a, self._across_speed(a)))
        for a, cmd in commands:
            if a.mode == "along":
                a.accel_mps2 = cmd
                a.v_mps = max(0.0, a.v_mps + cmd * dt_s)
                a.s += a.direction * (a.v_mps * dt_s + 0.5 * cmd * dt_s**2 if a.v_mps > 0 else 0.0)
                err = (a.target_d if a.target_d is not None else a.d) - a.d
                a.vd_mps = float(np.clip(1.2 * err, -1.3, 1.3))
                a.d += a.vd_mps * dt_s
            else:
                a.v_mps = cmd
                a.d += a.direction * cmd * dt_s
                if a.d_end is not None and (a.d - a.d_end) * a.direction >= 0:
                    a.d = a.d_end
                    a.v_mps = 0.0
                    a.active = False
        self.time_s = t + dt_s

    def _apply_script(self, a: Agent, sc: Script) -> None:
        if sc.action == "brake":
            a.braking_to_stop = sc.value
        elif sc.action in ("lane_change", "cut_in"):
            a.target_d = self.road.lane_center(int(sc.value))
        elif sc.action == "set_speed":
            a.desired_speed_mps = sc.value
            a.braking_to_stop = 0.0
        elif sc.action == "start":
            a.active = True

    def _along_accel(self, a: Agent) -> float:
        """IDM acceleration of an along-moving agent toward its leader(s)."""
        if a.braking_to_stop > 0.0:
            return -a.braking_to_stop if a.v_mps > 0.0 else 0.0
        v0 = max(a.desired_speed_mps, 0.1)
        acc = idm_free(a.v_mps, v0, a.max_accel_mps2 if not a.siren else 3.0)
        half_w = a.extent_d() + 0.2
        lanes_d = [a.d, a.target_d if a.target_d is not None else a.d]
        # Other road users in its corridor.
        users = [(o.s, o.d, o.extent_s(), o.extent_d(), o.v_mps * (o.direction if o.mode == "along"
                  else 0.0)) for o in self.agents if o is not a]
        e = self.ego
        users.append((e.s, e.d, e.length_m / 2, e.width_m / 2, e.v_mps))
        for (os_, od, ohs, ohd, ov) in users:
            gap = (os_ - a.s) * a.direction - ohs - a.extent_s()
            if gap < -0.5 * a.length_m or gap > 80.0:
                continue
            if not any(abs(od - dd) < ohd + half_w for dd in lanes_d):
                continue
            acc = min(acc, idm(a.v_mps, v0, max(gap, 0.1), a.v_mps - ov * a.direction,
                                 a_max=a.max_accel_mps2))
        if a.direction > 0 and not a.siren:
            tl = self.light_ahead(a.s + a.extent_s())
            if tl is not None and tl.state(self.time_s) != "green":
                gap = tl.stop_line_s - a.s - a.extent_s()
                if a.v_mps**2 / (2.0 * max(gap, 0.1)) < 4.0:
                    acc = min(acc, idm(a.v_mps, v0, max(gap, 0.1), a.v_mps))
        return float(np.clip(acc, -IDM_MAX_DECEL_MPS2, 3.0))

    def _across_speed(self, a: Agent) -> float:
        """Speed of a crossing agent: walk, but wait at the kerb for a close vehicle."""
        cfg = self.road.config
        road_right = -0.5 * cfg.lane_width_m
        road_left = (cfg.num_lanes + cfg.oncoming_lanes - 0.5) * cfg.lane_width_m
        on_road = road_right - 0.3 < a.d < road_left + 0.3
        a.waiting = False
        if not on_road and a.kind == "pedestrian":
            e = self.ego
            dist = a.s - e.s - e.length_m / 2
            if 0.0 < dist < 25.0 and e.v_mps > 2.0 and dist / e.v_mps < 2.5:
                a.waiting = True
                return 0.0
        return a.desired_speed_mps


def brake_lights_on(a: Agent) -> bool:
    """Whether ``a``'s brake lights are on: a scripted stop or a deceleration past braking.

    The one definition shared by the renderer (lamps), the expert (a cause described as
    braking) and the perception targets, so text and pixels cannot disagree.
    """
    return a.mode == "along" and (a.braking_to_stop > 0.0 or a.accel_mps2 < BRAKING_MPS2)


def indicator(a: Agent) -> str:
    """Turn indicator of ``a``: "left" / "right" while it changes lanes, else "".

    An along-mover signals from the moment its target offset moves (a lane change or
    cut-in script fires) until it is within :data:`INDICATOR_OFFSET_M` of the target. The
    side is the vehicle's own: d grows to the left of the road, so an oncoming mover
    (direction -1) turning toward larger d signals right.
    """
    if a.mode != "along" or a.target_d is None:
        return ""
    off = (a.target_d - a.d) * a.direction
    if abs(off) <= INDICATOR_OFFSET_M:
        return ""
    return "left" if off > 0 else "right"


def idm_free(v: float, v0: float, a_max: float = 1.5) -> float:
    """IDM free-road acceleration toward desired speed ``v0``."""
    return a_max * (1.0 - (max(v, 0.0) / max(v0, 0.1)) ** 4)


def idm(v: float, v0: float, gap_m: float, dv_mps: float, a_max: float = 1.5,
        b: float = IDM_COMFORT_DECEL_MPS2, headway_s: float = IDM_TIME_HEADWAY_S,
        min_gap_m: float = IDM_MIN_GAP_M) -> float:
    """Intelligent Driver Model acceleration behind a leader ``gap_m`` ahead.

    ``dv_mps`` is the approach rate (own speed minus leader speed).
    """
    s_star = min_gap_m + max(0.0, v * headway_s + v * dv_mps / (2.0 * math.sqrt(a_max * b)))
    return a_max * (1.0 - (max(v, 0.0) / max(v0, 0.1)) ** 4 - (s_star / max(gap_m, 0.1)) ** 2)


def agent_world_pose(road: Road, a: Agent | EgoState) -> tuple[float, float, float]:
    """World (x, y, heading) of an agent's box centre."""
    x, y, h = road.to_world(a.s, a.d)
    if isinstance(a, EgoState):
        return float(x), float(y), float(h + a.heading_offset_rad)
    if a.mode == "across":
        h = h + (math.pi / 2 if a.direction > 0 else -math.pi / 2)
    elif a.direction < 0:
        h = h + math.pi
    elif a.mode == "along":
        h = h + math.atan2(a.vd_mps, max(a.v_mps, 0.5))
    return float(x), float(y), float(h)


def box_corners(x: float, y: float, heading: float, length: float, width: float) -> np.ndarray:
    """The 4 corners (4, 2) of an oriented box, counter-clockwise."""
    c, s = math.cos(heading), math.sin(heading)
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]]) * [length, width]
    return np.stack([x + local[:, 0] * c - local[:, 1] * s,
                     y + local[:, 0] * s + local[:, 1] * c], axis=1)


def visible_agents(world: World, max_range_m: float = 90.0) -> set[str]:
    """Ids of agents the ego cameras can see: in range and not fully hidden by a tall box.

    An agent counts as visible when the sight line from the roof of the ego to its centre
    or to any of its corners crosses no other tall object (2D test against box footprints).
    """
    road = world.road
    ex, ey, _ = agent_world_pose(road, world.ego)
    poses = {a.id: agent_world_pose(road, a) for a in world.agents}
    boxes = {a.id: box_corners(*poses[a.id], *_footprint(a)) for a in world.agents}
    occluders = [a for a in world.agents if a.height_m >= OCCLUDER_MIN_HEIGHT_M]
    seen = set()
    for a in world.agents:
        ax, ay, _ = poses[a.id]
        if math.hypot(ax - ex, ay - ey) > max_range_m:
            continue
        targets = np.vstack([[ax, ay], boxes[a.id]])
        for tx, ty in targets:
            blocked = False
            for o in occluders:
                if o is a:
                    continue
                if _segment_hits_box(ex, ey, tx, ty, boxes[o.id]):
                    blocked = True
                    break
            if not blocked:
                seen.add(a.id)
                break
    return seen


def _footprint(a: Agent) -> tuple[float, float]:
    """(length, width) of an agent's footprint along its heading."""
    return a.length_m, a.width_m


def _segment_hits_box(x0: float, y0: float, x1: float, y1: float, box: np.ndarray) -> bool:
    """Whether segment (x0,y0)-(x1,y1) intersects a convex box (4, 2)."""
    # Liang-Barsky style: clip the segment against each edge half-plane.
    t0, t1 = 0.0, 1.0
    dx, dy = x1 - x0, y1 - y0
    for i in range(4):
        p, q = box[i], box[(i + 1) % 4]
        nx, ny = q[1] - p[1], -(q[0] - p[0])  # outward normal for a CCW polygon
        num = nx * (p[0] - x0) + ny * (p[1] - y0)
        den = nx * dx + ny * dy
        if abs(den) < 1e-12:
            if num < 0:
                return False
            continue
        t = num / den
        if den < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    # Touching only at the very ends (the target's own surface) does not count.
    return t1 - t0 > 1e-3 and t0 < 0.999
