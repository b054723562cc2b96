"""Seeded scenario families that cover every AR1 decision, and the episode simulator.

A family is a function ``(rng) -> Scenario``: it lays out a road, map elements, agents
with scripted behaviour and the expert's route intents, randomizing distances, speeds,
colours, lane counts, road shape and scenery. :data:`FAMILIES` maps names to families and
:data:`FAMILY_DECISIONS` says which decisions (and which proximate cause) each family is
built to produce; the tests check that the expert really produces them.
:func:`simulate` runs a scenario at 10 Hz and returns an :class:`Episode` (per-step
snapshots of the ego, agents, lights and the expert's decision records).

Every scenario also carries a navigation command (:func:`navigation_command`): families
whose expert follows a route (a turn, a route lane change, an exit, a merge) get a short
route command in varied words, stated from the start and in the direction of the
expert's intent; the others get, by seed, no command or a neutral one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from alpamayo_ros.data.expert import DecisionRecord, Expert, ExpertConfig, Intent, Turn
from alpamayo_ros.data.recovery import Disturbance
from alpamayo_ros.data.world import (
    BRAKING_MPS2,
    COLOURS,
    DT_S,
    Agent,
    Crosswalk,
    EgoState,
    Intersection,
    LaneSpan,
    Prop,
    Road,
    RoadConfig,
    RoadEvent,
    Script,
    StopSign,
    TrafficLight,
    Trigger,
    World,
    agent_world_pose,
    brake_lights_on,
    indicator,
)
from alpamayo_ros.taxonomy import ComponentType
from alpamayo_ros.taxonomy import LateralDecision as Lat
from alpamayo_ros.taxonomy import LongitudinalDecision as Lon


@dataclass
class Scenario:
    """A world, its expert and how long to run it."""

    family: str
    seed: int
    world: World
    expert: Expert
    duration_s: float = 20.0
    navigation: str = ""  # route command for the policy ("" = none), navigation_command()

    def __post_init__(self) -> None:
        if self.duration_s <= 0.0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s}")


@dataclass
class AgentSnapshot:
    """An agent (or the ego) at one step, in world coordinates."""

    id: str
    kind: str
    x: float
    y: float
    heading: float
    length_m: float
    width_m: float
    height_m: float
    colour: str
    v_mps: float
    s: float
    d: float
    siren: bool = False
    accel_mps2: float = 0.0  # longitudinal acceleration (m/s^2)
    braking: bool = False  # brake lights on (world.brake_lights_on)
    indicator: str = ""  # turn indicator on: "left" | "right" | "" (world.indicator)


@dataclass
class Frame:
    """One 10 Hz step of an episode."""

    time_s: float
    ego: AgentSnapshot
    ego_accel_mps2: float
    agents: list[AgentSnapshot]
    lights: dict[str, str]
    decision: DecisionRecord


@dataclass
class Episode:
    """A simulated scenario: the static world plus per-step frames."""

    family: str
    seed: int
    world: World  # final state; static elements are what the renderer draws
    frames: list[Frame] = field(default_factory=list)
    navigation: str = ""  # the scenario's route command, the same for every frame
    # Frames before this one are a disturbed start's drift (alpamayo_ros.data.recovery):
    # samples and keyframes begin here, so every future is the expert's own driving.
    first_sample_index: int = 0

    def ego_xyhv(self) -> np.ndarray:
        """Ego (x, y, heading, speed) per frame, (T, 4)."""
        return np.array([[f.ego.x, f.ego.y, f.ego.heading, f.ego.v_mps] for f in self.frames])


def agent_snapshot(world: World, a: Agent) -> AgentSnapshot:
    """An agent's state now, with its brake lights and indicator (what cameras show)."""
    x, y, h = agent_world_pose(world.road, a)
    return AgentSnapshot(a.id, a.kind, x, y, h, a.length_m, a.width_m, a.height_m, a.colour,
                         a.v_mps, a.s, a.d, a.siren, a.accel_mps2, brake_lights_on(a),
                         indicator(a))


def ego_snapshot(world: World) -> AgentSnapshot:
    """The ego now (a white car; braking when it decelerates past ``BRAKING_MPS2``).

    The ego's indicator is left "": the expert's manoeuvre, not a lamp, says where it goes.
    """
    e = world.ego
    x, y, h = agent_world_pose(world.road, e)
    return AgentSnapshot("ego", "car", x, y, h, e.length_m, e.width_m, e.height_m, "white",
                         e.v_mps, e.s, e.d, False, e.accel_mps2, e.accel_mps2 < BRAKING_MPS2)


def simulate(scenario: Scenario, disturbance: Disturbance | None = None) -> Episode:
    """Run ``scenario`` for its duration at 10 Hz and record every step.

    With a ``disturbance`` the ego starts off its path and drifts until the expert takes
    over (:mod:`alpamayo_ros.data.recovery`); ``Episode.first_sample_index`` is then the
    takeover step.
    """
    world, expert = scenario.world, scenario.expert
    episode = Episode(scenario.family, scenario.seed, world, navigation=scenario.navigation)
    steps = int(round(scenario.duration_s / DT_S))
    drifting = disturbance is not None
    centre_d = disturbance.start(world.ego) if disturbance is not None else 0.0
    standstill_steps = 0
    for k in range(steps):
        ego_snap = ego_snapshot(world)
        agents = [agent_snapshot(world, a) for a in world.agents]
        lights = {tl.id: tl.state(world.time_s) for tl in world.lights}
        accel = world.ego.accel_mps2
        before = dataclasses.replace(world.ego) if drifting else None
        record = expert.step(world)
        if drifting:
            inside = disturbance.drift(world.ego, before, centre_d)
            standstill_steps += world.ego.v_mps <= 0.0
            drifting = inside and disturbance.continues(k + 1, standstill_steps)
            if not drifting:
                episode.first_sample_index = k + 1
        episode.frames.append(Frame(record.time_s, ego_snap, accel, agents, lights, record))
        world.step_agents()
    return episode


# --------------------------------------------------------------------------- helpers
def _colour(rng: np.random.Generator) -> str:
    return str(rng.choice(sorted(COLOURS)))


def _appearance(rng: np.random.Generator) -> dict:
    return {
        "sky": [int(v) for v in rng.integers([150, 170, 200], [200, 215, 250])],
        "sun_elevation_rad": float(rng.uniform(0.3, 1.2)),
        "sun_azimuth_rad": float(rng.uniform(-math.pi, math.pi)),
        "brightness": float(rng.uniform(0.75, 1.1)),
        "grass": [int(v) for v in rng.integers([60, 100, 50], [100, 140, 80])],
        "asphalt": int(rng.integers(70, 100)),
    }


def _props(rng: np.random.Generator, road: Road, n: int = 14) -> list[Prop]:
    cfg = road.config
    right = -0.5 * cfg.lane_width_m - cfg.shoulder_m - 1.5
    left = (cfg.num_lanes + cfg.oncoming_lanes - 0.5) * cfg.lane_width_m + 1.5
    props = []
    for s in np.sort(rng.uniform(5.0, road.length_m - 5.0, n)):
        side = right if rng.random() < 0.6 else left
        kind = str(rng.choice(["pole", "sign", "tree", "tree", "building"]))
        off = (-1.0 if side == right else 1.0) * (8.0 if kind == "building" else
                                                   rng.uniform(0.0, 2.0))
        colour = {"pole": (130, 130, 135), "sign": (30, 90, 170), "tree": (40, 110, 45),
                  "building": tuple(int(c) for c in rng.integers(120, 210, 3))}[kind]
        height = {"pole": 6.0, "sign": 2.6, "tree": float(rng.uniform(4, 8)),
                  "building": float(rng.uniform(6, 15))}[kind]
        size = {"pole": 0.25, "sign": 0.8, "tree": 2.0, "building": 10.0}[kind]
        props.append(Prop(kind, float(s), float(side + off), height, size, colour))
    return props


def _world(rng: np.random.Generator, road_cfg: RoadConfig, ego_s: float, ego_lane: int,
           ego_v: float, **elements) -> World:
    road = Road(road_cfg)
    ego = EgoState(s=ego_s, d=road.lane_center(ego_lane), v_mps=ego_v)
    world = World(road=road, ego=ego, appearance=_appearance(rng), **elements)
    world.props = _props(rng, road)
    return world


def _car(rng: np.random.Generator, aid: str, s: float, d: float, v: float, kind: str = "car",
         **kw) -> Agent:
    return Agent(id=aid, kind=kind, s=s, d=d, v_mps=v, desired_speed_mps=kw.pop("v_des", v),
                 colour=kw.pop("colour", _colour(rng)), **kw)


def _limit(rng: np.random.Generator, lo: float = 11.0, hi: float = 16.7) -> float:
    return float(rng.uniform(lo, hi))


def _straight(rng: np.random.Generator, length: float = 320.0) -> list[tuple[float, float]]:
    """A straight or gently curving road."""
    if rng.random() < 0.5:
        return [(length, 0.0)]
    k = float(rng.uniform(-1.0, 1.0)) / 600.0
    return [(length * 0.4, 0.0), (length * 0.6, k)]


def _background(rng: np.random.Generator, world: World, lanes: list[int], n: int,
                s_range: tuple[float, float], prefix: str = "bg") -> None:
    """Independent traffic in ``lanes`` (kept well away from the scripted agents)."""
    for i in range(n):
        lane = int(rng.choice(lanes))
        v = float(rng.uniform(8.0, 14.0))
        direction = world.road.lane_direction(lane)
        world.agents.append(_car(rng, f"{prefix}{i}", float(rng.uniform(*s_range)),
                                 world.road.lane_center(lane), v, direction=direction,
                                 kind=str(rng.choice(["car", "car", "van"]))))


# --------------------------------------------------------------------------- families
def cruise(rng: np.random.Generator) -> Scenario:
    """Open road: track the set speed and keep the lane."""
    limit = _limit(rng)
    cfg = RoadConfig(segments=_straight(rng, 400.0), num_lanes=int(rng.integers(1, 3)),
                     oncoming_lanes=int(rng.integers(0, 2)), speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * float(rng.uniform(0.5, 0.8)))
    if cfg.oncoming_lanes:
        _background(rng, w, [cfg.num_lanes], 2, (150.0, 350.0), "oncoming")
    return Scenario("cruise", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def follow_lead(rng: np.random.Generator) -> Scenario:
    """A slower lead vehicle that later brakes: follow it."""
    limit = _limit(rng)
    cfg = RoadConfig(segments=_straight(rng), num_lanes=int(rng.integers(1, 3)),
                     speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.8)
    lead = _car(rng, "lead", 10.0 + float(rng.uniform(55.0, 70.0)), 0.0,
                limit * float(rng.uniform(0.45, 0.65)), kind=str(rng.choice(["car", "van",
                                                                                "truck"])))
    lead.scripts.append(Script(Trigger(time_s=float(rng.uniform(9.0, 12.0))), "brake",
                               float(rng.uniform(2.0, 3.5))))
    w.agents.append(lead)
    return Scenario("follow_lead", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def speed_adaptation(rng: np.random.Generator) -> Scenario:
    """A road event ahead (sharp curve, speed bump, school or work zone): slow for it."""
    limit = _limit(rng, 13.0, 16.7)
    kind = str(rng.choice(["curve", "speed_bump", "school_zone", "construction_zone"]))
    start = float(rng.uniform(140.0, 170.0))
    segments = [(450.0, 0.0)]
    if kind == "curve":
        radius = float(rng.uniform(35.0, 55.0)) * (1 if rng.random() < 0.5 else -1)
        segments = [(start, 0.0), (abs(radius) * 1.2, 1.0 / radius), (200.0, 0.0)]
        event = RoadEvent("curve", "curve", start - 5.0, start + abs(radius) * 1.2,
                          math.sqrt(2.0 * abs(radius)))
    else:
        speed = {"speed_bump": 3.5, "school_zone": 7.0, "construction_zone": 8.0}[kind]
        length = {"speed_bump": 4.0, "school_zone": 80.0, "construction_zone": 60.0}[kind]
        event = RoadEvent(kind, kind, start, start + length, speed)
    cfg = RoadConfig(segments=segments, num_lanes=2, speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.95, events=[event])
    if kind == "construction_zone":
        for i, s in enumerate(np.arange(event.s_start, event.s_end, 6.0)):
            w.agents.append(Agent(f"cone{i}", "cone", float(s), 1.75 + 0.2, mode="static",
                                  colour="orange"))
    if kind in ("school_zone", "speed_bump"):
        w.props.append(Prop("sign", event.s_start - 3.0, -3.5, 2.4, 0.9, (230, 200, 40)))
    return Scenario("speed_adaptation", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def _signal(rng: np.random.Generator, stop_s: float, red_at: float, green_at: float | None
            ) -> TrafficLight:
    schedule = [(0.0, "green"), (red_at - 3.0, "yellow"), (red_at, "red")]
    if green_at is not None:
        schedule.append((green_at, "green"))
    return TrafficLight("light", stop_s, schedule)


def red_light(rng: np.random.Generator) -> Scenario:
    """A light turns red ahead of an empty lane: stop at the line, go on green."""
    limit = _limit(rng)
    stop_s = float(rng.uniform(120.0, 150.0))
    cfg = RoadConfig(segments=[(320.0, 0.0)], num_lanes=int(rng.integers(1, 3)),
                     oncoming_lanes=1, speed_limit_mps=limit)
    light = _signal(rng, stop_s, float(rng.uniform(6.0, 7.5)), float(rng.uniform(15.0, 17.0)))
    w = _world(rng, cfg, 10.0, 0, limit * 0.9, lights=[light],
               intersections=[Intersection("junction", stop_s + 9.0)],
               crosswalks=[Crosswalk("crosswalk", stop_s + 3.0)])
    return Scenario("red_light", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def lead_at_red_light(rng: np.random.Generator) -> Scenario:
    """A lead vehicle brakes for a red light: follow the lead (the proximate cause)."""
    limit = _limit(rng)
    stop_s = float(rng.uniform(160.0, 185.0))
    cfg = RoadConfig(segments=[(360.0, 0.0)], num_lanes=1, oncoming_lanes=1,
                     speed_limit_mps=limit)
    light = _signal(rng, stop_s, float(rng.uniform(3.5, 5.0)), None)
    w = _world(rng, cfg, 10.0, 0, limit * 0.85, lights=[light],
               intersections=[Intersection("junction", stop_s + 9.0)])
    # Far enough ahead that the ego is still cruising when the lead starts braking for
    # the light: the keyframe where the ego takes the lead as its constraint cites a
    # braking lead (the light, beyond it, is not cited).
    w.agents.append(_car(rng, "lead", 10.0 + float(rng.uniform(75.0, 85.0)), 0.0,
                         limit * 0.85, v_des=limit))
    return Scenario("lead_at_red_light", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def stop_sign(rng: np.random.Generator) -> Scenario:
    """A stop sign, then cross traffic with right of way: stop, then yield."""
    limit = _limit(rng, 10.0, 13.0)
    stop_s = float(rng.uniform(75.0, 90.0))
    cfg = RoadConfig(segments=[(300.0, 0.0)], num_lanes=1, oncoming_lanes=1,
                     speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.6, stop_signs=[StopSign("stop_sign", stop_s)],
               intersections=[Intersection("junction", stop_s + 9.0)])
    w.props.append(Prop("sign", stop_s, -3.2, 2.4, 0.8, (200, 20, 20)))
    from_right = rng.random() < 0.5
    cross = Agent("cross", str(rng.choice(["car", "van"])), stop_s + 9.0 + 1.75 * 0,
                  -float(rng.uniform(45.0, 55.0)) if from_right else float(rng.uniform(48.0, 58.0)),
                  mode="across",
                  direction=1 if from_right else -1, desired_speed_mps=float(rng.uniform(8, 10)),
                  colour=_colour(rng), active=False)
    cross.d_end = 60.0 if from_right else -60.0
    cross.scripts.append(Script(Trigger(ego_s=stop_s - 4.5), "start"))
    w.agents.append(cross)
    return Scenario("stop_sign", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def crosswalk_yield(rng: np.random.Generator) -> Scenario:
    """A pedestrian or cyclist crosses at a zebra crossing: yield."""
    limit = _limit(rng, 10.0, 13.9)
    cw_s = float(rng.uniform(80.0, 110.0))
    cfg = RoadConfig(segments=[(300.0, 0.0)], num_lanes=int(rng.integers(1, 3)),
                     oncoming_lanes=int(rng.integers(0, 2)), speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.85, crosswalks=[Crosswalk("crosswalk", cw_s)])
    kind = "pedestrian" if rng.random() < 0.7 else "cyclist"
    from_right = rng.random() < 0.6
    width = (cfg.num_lanes + cfg.oncoming_lanes) * cfg.lane_width_m
    d0 = -4.5 if from_right else width + 1.0
    walker = Agent("crosser", kind, cw_s, d0, mode="across", direction=1 if from_right else -1,
                   desired_speed_mps=float(rng.uniform(1.2, 1.8)) * (2.5 if kind == "cyclist"
                                                                       else 1.0),
                   colour=_colour(rng), active=False)
    walker.d_end = width + 3.0 if from_right else -5.0
    # Start the crossing so the walker is in the ego's lane before the ego gets there:
    # one from the far kerb of a wide road needs several seconds to reach it.
    corridor = walker.extent_d() + w.ego.width_m / 2 + 1.0
    walk_s = max(0.0, abs(d0 - w.ego.d) - corridor) / walker.desired_speed_mps
    lead_m = max(float(rng.uniform(55.0, 70.0)), limit * (walk_s + float(rng.uniform(2.0, 3.0))))
    walker.scripts.append(Script(Trigger(ego_s=cw_s - lead_m), "start"))
    w.agents.append(walker)
    return Scenario("crosswalk_yield", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def hidden_pedestrian(rng: np.random.Generator) -> Scenario:
    """A pedestrian steps out from behind a parked van: yield once it is visible."""
    limit = _limit(rng, 9.0, 12.0)
    van_s = float(rng.uniform(70.0, 90.0))
    cfg = RoadConfig(segments=[(300.0, 0.0)], num_lanes=1, oncoming_lanes=1,
                     speed_limit_mps=limit, shoulder_m=2.5)
    w = _world(rng, cfg, 10.0, 0, limit * 0.9)
    van = Agent("parked_van", "van", van_s, -3.1, mode="static", colour=_colour(rng))
    ped = Agent("pedestrian", "pedestrian", van_s + 4.0, -3.0, mode="across", direction=1,
                desired_speed_mps=float(rng.uniform(1.3, 1.8)), colour=_colour(rng),
                active=False)
    ped.d_end = 9.0
    ped.scripts.append(Script(Trigger(ego_s=van_s - float(rng.uniform(28.0, 36.0))), "start"))
    w.agents += [van, ped]
    return Scenario("hidden_pedestrian", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def route_lane_change(rng: np.random.Generator) -> Scenario:
    """The route needs the next lane over: change lanes (free target lane)."""
    limit = _limit(rng)
    cfg = RoadConfig(segments=_straight(rng), num_lanes=3, speed_limit_mps=limit)
    start_lane = int(rng.integers(0, 3))
    target = start_lane + 1 if start_lane < 2 else 1
    w = _world(rng, cfg, 10.0, start_lane, limit * 0.85)
    note = ("the route goes left at the next intersection" if target > start_lane else
            "the route takes the next right")
    intent = Intent(s_from=float(rng.uniform(30.0, 50.0)), target_lane=target, note=note)
    _background(rng, w, [start_lane], 1, (120.0, 160.0))
    return Scenario("route_lane_change", 0, w,
                    Expert(ExpertConfig(set_speed_mps=limit), intents=[intent]))


def gap_search(rng: np.random.Generator) -> Scenario:
    """A vehicle travels alongside in the lane the route needs: search for a gap, then go."""
    limit = _limit(rng, 12.0, 15.0)
    cfg = RoadConfig(segments=[(400.0, 0.0)], num_lanes=2, speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.9)
    w.agents.append(_car(rng, "blocker", 10.0 + float(rng.uniform(-3.0, 4.0)), 3.5,
                         limit * 0.9, kind=str(rng.choice(["car", "van", "truck"]))))
    intent = Intent(s_from=20.0, target_lane=1, note="the route goes left ahead")
    return Scenario("gap_search", 0, w,
                    Expert(ExpertConfig(set_speed_mps=limit), intents=[intent]))


def merge(rng: np.random.Generator) -> Scenario:
    """The on-ramp lane ends: merge into the main lane (after a gap if traffic is there)."""
    limit = _limit(rng, 12.0, 16.0)
    end = float(rng.uniform(110.0, 140.0))
    cfg = RoadConfig(segments=[(400.0, 0.0)], num_lanes=2, speed_limit_mps=limit,
                     shoulder_m=1.0)
    w = _world(rng, cfg, 10.0, -1, limit * 0.8,
               lane_spans=[LaneSpan(-1, 0.0, end, "on_ramp")])
    if rng.random() < 0.6:
        w.agents.append(_car(rng, "main_traffic", 10.0 + float(rng.uniform(-2.0, 5.0)), 0.0,
                             limit * 0.8))
    intent = Intent(s_from=float(rng.uniform(25.0, 40.0)), target_lane=0, reason="lane_end")
    return Scenario("merge", 0, w, Expert(ExpertConfig(set_speed_mps=limit), intents=[intent]))


def exit_split(rng: np.random.Generator) -> Scenario:
    """An exit lane opens on the right and the route takes it: split off."""
    limit = _limit(rng, 12.0, 16.0)
    start = float(rng.uniform(50.0, 70.0))
    cfg = RoadConfig(segments=[(400.0, 0.0)], num_lanes=2, speed_limit_mps=limit,
                     shoulder_m=1.0)
    w = _world(rng, cfg, 10.0, 0, limit * 0.85,
               lane_spans=[LaneSpan(-1, start, 400.0, "exit")])
    intent = Intent(s_from=start + 5.0, target_lane=-1, reason="exit",
                    note="the route leaves at this exit")
    return Scenario("exit_split", 0, w,
                    Expert(ExpertConfig(set_speed_mps=limit), intents=[intent]))


def overtake(rng: np.random.Generator) -> Scenario:
    """A slow truck in the lane: change lanes and accelerate past it."""
    limit = _limit(rng, 13.0, 16.7)
    cfg = RoadConfig(segments=[(450.0, 0.0)], num_lanes=2, speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.6)
    w.agents.append(_car(rng, "slow_vehicle", 10.0 + float(rng.uniform(70.0, 85.0)), 0.0,
                         limit * float(rng.uniform(0.35, 0.5)),
                         kind=str(rng.choice(["truck", "bus", "van"]))))
    return Scenario("overtake", 0, w,
                    Expert(ExpertConfig(set_speed_mps=limit, allow_overtake=True)))


def nudge_out_of_lane(rng: np.random.Generator) -> Scenario:
    """A double-parked van blocks most of the lane: edge into the free oncoming lane."""
    limit = _limit(rng, 9.0, 12.0)
    cfg = RoadConfig(segments=[(300.0, 0.0)], num_lanes=1, oncoming_lanes=1,
                     speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.9)
    w.agents.append(Agent("double_parked", str(rng.choice(["van", "truck", "car"])),
                          float(rng.uniform(70.0, 90.0)), float(rng.uniform(-1.3, -0.9)),
                          mode="static", colour=_colour(rng)))
    if rng.random() < 0.5:
        w.agents.append(_car(rng, "oncoming", float(rng.uniform(200.0, 240.0)), 3.5,
                             float(rng.uniform(9.0, 12.0)), direction=-1))
    return Scenario("nudge_out_of_lane", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def nudge_in_lane(rng: np.random.Generator) -> Scenario:
    """A cyclist near the kerb or a badly parked car: shift over within the lane."""
    limit = _limit(rng, 9.0, 12.0)
    cfg = RoadConfig(segments=[(300.0, 0.0)], num_lanes=1, oncoming_lanes=1,
                     lane_width_m=float(rng.uniform(3.6, 4.0)), speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.85)
    half = cfg.lane_width_m / 2
    if rng.random() < 0.5:
        w.agents.append(Agent("parked_car", "car", float(rng.uniform(70.0, 90.0)),
                              -half - float(rng.uniform(0.1, 0.4)), mode="static",
                              colour=_colour(rng)))
    else:
        w.agents.append(Agent("cyclist", "cyclist", float(rng.uniform(70.0, 85.0)),
                              -half + 0.25, v_mps=4.0, desired_speed_mps=4.0,
                              colour=_colour(rng)))
    return Scenario("nudge_in_lane", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def pull_over(rng: np.random.Generator) -> Scenario:
    """An ambulance with its siren on comes from behind: pull over and let it pass."""
    limit = _limit(rng, 11.0, 14.0)
    cfg = RoadConfig(segments=[(400.0, 0.0)], num_lanes=1, oncoming_lanes=1,
                     speed_limit_mps=limit, shoulder_m=3.0)
    w = _world(rng, cfg, 80.0, 0, limit * 0.9)
    ev = Agent("ambulance", "ambulance", 80.0 - float(rng.uniform(110.0, 125.0)), 0.0,
               v_mps=limit * 1.3, desired_speed_mps=limit * 1.6, colour="white", siren=True)
    w.agents.append(ev)
    return Scenario("pull_over", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


def turn(rng: np.random.Generator) -> Scenario:
    """The route turns at an intersection: slow for the turn and take it."""
    limit = _limit(rng, 10.0, 13.0)
    direction = "left" if rng.random() < 0.5 else "right"
    radius = float(rng.uniform(9.0, 12.0) if direction == "right" else rng.uniform(13.0, 17.0))
    start = float(rng.uniform(90.0, 110.0))
    arc = radius * math.pi / 2
    k = (1.0 if direction == "left" else -1.0) / radius
    cfg = RoadConfig(segments=[(start, 0.0), (arc, k), (150.0, 0.0)], num_lanes=1,
                     oncoming_lanes=1, speed_limit_mps=limit)
    event = RoadEvent("turn", "turn", start - 3.0, start + arc, float(rng.uniform(4.0, 5.5)))
    w = _world(rng, cfg, 10.0, 0, limit * 0.85, events=[event],
               intersections=[Intersection("junction", start + 0.5 * arc, 2 * radius)])
    if rng.random() < 0.5:
        green = TrafficLight("light", start - 6.0, [(0.0, "green")])
        w.lights.append(green)
    return Scenario("turn", 0, w, Expert(ExpertConfig(set_speed_mps=limit),
                                         turns=[Turn(start, start + arc, direction)]))


def lane_change_abort(rng: np.random.Generator) -> Scenario:
    """A fast car closes in the target lane mid lane change: abort and return."""
    limit = _limit(rng, 12.0, 14.0)
    cfg = RoadConfig(segments=[(450.0, 0.0)], num_lanes=2, speed_limit_mps=limit)
    w = _world(rng, cfg, 60.0, 0, limit * 0.9)
    fast = _car(rng, "fast_car", 60.0 - float(rng.uniform(33.0, 38.0)), 3.5, limit * 1.1,
                max_accel_mps2=4.0)
    fast.scripts.append(Script(Trigger(ego_s=97.0), "set_speed", limit * 2.2))
    w.agents.append(fast)
    intent = Intent(s_from=85.0, target_lane=1, note="the route goes left later on")
    return Scenario("lane_change_abort", 0, w,
                    Expert(ExpertConfig(set_speed_mps=limit), intents=[intent]))


def cut_in_during_lane_change(rng: np.random.Generator) -> Scenario:
    """A car from the far lane cuts into the lane the ego is moving to: abort."""
    limit = _limit(rng, 12.0, 14.0)
    cfg = RoadConfig(segments=[(450.0, 0.0)], num_lanes=3, speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.9)
    cutter = _car(rng, "cut_in_car", 10.0 + float(rng.uniform(4.0, 9.0)), 7.0, limit * 0.9)
    cutter.scripts.append(Script(Trigger(ego_s=40.0), "cut_in", 1))
    w.agents.append(cutter)
    intent = Intent(s_from=30.0, target_lane=1, note="the route goes left ahead")
    return Scenario("cut_in_during_lane_change", 0, w,
                    Expert(ExpertConfig(set_speed_mps=limit), intents=[intent]))


def cut_in(rng: np.random.Generator) -> Scenario:
    """A car from the next lane cuts in close ahead: follow the new lead."""
    limit = _limit(rng, 12.0, 15.0)
    cfg = RoadConfig(segments=[(450.0, 0.0)], num_lanes=2, speed_limit_mps=limit)
    w = _world(rng, cfg, 10.0, 0, limit * 0.9)
    cutter = _car(rng, "cut_in_car", 10.0 + float(rng.uniform(18.0, 24.0)), 3.5,
                  limit * 0.8, v_des=limit * 0.8)
    cutter.scripts.append(Script(Trigger(time_s=float(rng.uniform(1.8, 2.5))), "cut_in", 0))
    w.agents.append(cutter)
    return Scenario("cut_in", 0, w, Expert(ExpertConfig(set_speed_mps=limit)))


FAMILIES: dict[str, Callable[[np.random.Generator], Scenario]] = {
    "cruise": cruise,
    "follow_lead": follow_lead,
    "speed_adaptation": speed_adaptation,
    "red_light": red_light,
    "lead_at_red_light": lead_at_red_light,
    "stop_sign": stop_sign,
    "crosswalk_yield": crosswalk_yield,
    "hidden_pedestrian": hidden_pedestrian,
    "route_lane_change": route_lane_change,
    "gap_search": gap_search,
    "merge": merge,
    "exit_split": exit_split,
    "overtake": overtake,
    "nudge_out_of_lane": nudge_out_of_lane,
    "nudge_in_lane": nudge_in_lane,
    "pull_over": pull_over,
    "turn": turn,
    "lane_change_abort": lane_change_abort,
    "cut_in_during_lane_change": cut_in_during_lane_change,
    "cut_in": cut_in,
}

# What each family is built to show: (channel, decision value, id of the proximate cause).
FAMILY_DECISIONS: dict[str, list[tuple[str, str, str]]] = {
    "cruise": [("lon", Lon.SET_SPEED_TRACKING.value, "speed_limit"),
               ("lat", Lat.LANE_KEEPING.value, "lane_0")],
    "follow_lead": [("lon", Lon.LEAD_OBSTACLE_FOLLOWING.value, "lead")],
    "speed_adaptation": [("lon", Lon.SPEED_ADAPTATION.value, "*event")],
    "red_light": [("lon", Lon.STOP_FOR_STATIC_CONSTRAINT.value, "light")],
    "lead_at_red_light": [("lon", Lon.LEAD_OBSTACLE_FOLLOWING.value, "lead")],
    "stop_sign": [("lon", Lon.STOP_FOR_STATIC_CONSTRAINT.value, "stop_sign"),
                  ("lon", Lon.YIELD.value, "cross")],
    "crosswalk_yield": [("lon", Lon.YIELD.value, "crosser")],
    "hidden_pedestrian": [("lon", Lon.YIELD.value, "pedestrian")],
    "route_lane_change": [("lat", Lat.LANE_CHANGE.value, "route")],
    "gap_search": [("lon", Lon.GAP_SEARCHING.value, "blocker"),
                   ("lat", Lat.LANE_CHANGE.value, "route")],
    "merge": [("lat", Lat.MERGE_SPLIT.value, "lane_-1_end")],
    "exit_split": [("lat", Lat.MERGE_SPLIT.value, "route")],
    "overtake": [("lat", Lat.LANE_CHANGE.value, "slow_vehicle"),
                 ("lon", Lon.ACCELERATE_TO_PASS.value, "slow_vehicle")],
    "nudge_out_of_lane": [("lat", Lat.OUT_OF_LANE_NUDGE.value, "double_parked")],
    "nudge_in_lane": [("lat", Lat.IN_LANE_NUDGE.value, "*object")],
    "pull_over": [("lat", Lat.PULL_OVER.value, "ambulance"),
                  ("lon", Lon.YIELD.value, "ambulance")],
    "turn": [("lat", Lat.TURN.value, "route"),
             ("lon", Lon.SPEED_ADAPTATION.value, "turn")],
    "lane_change_abort": [("lat", Lat.LATERAL_MANEUVER_ABORT.value, "fast_car")],
    "cut_in_during_lane_change": [("lat", Lat.LATERAL_MANEUVER_ABORT.value, "cut_in_car")],
    "cut_in": [("lon", Lon.LEAD_OBSTACLE_FOLLOWING.value, "cut_in_car")],
}


def cause_matches(expected: str, components: list) -> bool:
    """Whether label components (``.type``, ``.id``) cite a :data:`FAMILY_DECISIONS` cause.

    ``"*event"`` is any road event, ``"*object"`` any critical object, anything else an id.
    """
    if expected == "*event":
        return any(c.type == ComponentType.ROAD_EVENT for c in components)
    if expected == "*object":
        return any(c.type == ComponentType.CRITICAL_OBJECT for c in components)
    return any(c.id == expected for c in components)


# Families whose key events come late need longer clips (6.4 s of future after them).
FAMILY_DURATION_S: dict[str, float] = {"stop_sign": 24.0, "red_light": 24.0}
DEFAULT_DURATION_S = 20.0  # AR1 clips are 20 s


def make_scenario(family: str, seed: int, duration_s: float | None = None) -> Scenario:
    """Build scenario ``family`` from ``seed`` (same seed, same scenario and command)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    rng = np.random.default_rng([seed, sorted(FAMILIES).index(family)])
    scenario = FAMILIES[family](rng)
    scenario.seed = seed
    scenario.duration_s = duration_s or FAMILY_DURATION_S.get(family, DEFAULT_DURATION_S)
    # The command's words come from their own stream of the seed: drawing them from the
    # layout's rng would move every agent of every existing seed.
    nav_rng = np.random.default_rng([seed, sorted(FAMILIES).index(family), 1])
    scenario.navigation = navigation_command(scenario, nav_rng)
    return scenario


# --------------------------------------------------------------------------- navigation
# Route commands by manoeuvre ({d} = left / right), short enough for the tiny preset's 8
# navigation tokens once the tokenizer has seen them (navigation_corpus()).
ROUTE_COMMANDS: dict[str, tuple[str, ...]] = {
    "turn": ("turn {d} at the next junction", "take the next {d}", "turn {d} ahead",
             "at the junction, turn {d}", "next junction, turn {d}"),
    "lane_change": ("keep {d}, the route continues {d}", "move to the {d} lane",
                    "get into the {d} lane", "the route needs the {d} lane",
                    "change to the {d} lane ahead"),
    "exit": ("take the exit on the {d}", "take the next exit, {d}", "exit {d} ahead",
             "leave at the next exit, {d}"),
    "merge": ("merge {d} onto the main road", "join the main road, {d}",
              "merge into the {d} lane"),
}
# Families without a route: half the seeds get one of these, half no command at all.
NEUTRAL_COMMANDS: tuple[str, ...] = ("follow the road", "continue ahead", "stay on this road",
                                     "keep following the road", "carry on along this road")


def route_manoeuvre(scenario: Scenario) -> tuple[str, str] | None:
    """The route manoeuvre the expert is given: (kind, "left" | "right"), or None.

    kind is a key of :data:`ROUTE_COMMANDS`: a route turn, or the first route intent
    (a lane change, an exit split or an on-ramp merge) relative to the ego's start lane.
    """
    expert = scenario.expert
    if expert.turns:
        return "turn", expert.turns[0].direction
    if expert.intents:
        it = expert.intents[0]
        start = scenario.world.road.lane_of(scenario.world.ego.d)
        side = "left" if it.target_lane > start else "right"
        kind = {"exit": "exit", "lane_end": "merge"}.get(it.reason, "lane_change")
        return kind, side
    return None


def navigation_command(scenario: Scenario, rng: np.random.Generator) -> str:
    """A route command for ``scenario`` in words drawn with ``rng``.

    Route families state their manoeuvre from the start (a route, not a timing hint);
    the others get "" or a neutral command with equal odds.
    """
    route = route_manoeuvre(scenario)
    if route is None:
        return "" if rng.random() < 0.5 else str(rng.choice(NEUTRAL_COMMANDS))
    kind, side = route
    return str(rng.choice(ROUTE_COMMANDS[kind])).format(d=side)


def navigation_corpus() -> list[str]:
    """Every command the data engine can emit (to train or check a tokenizer on)."""
    out = [t.format(d=side) for forms in ROUTE_COMMANDS.values() for t in forms
           for side in ("left", "right")]
    return out + list(NEUTRAL_COMMANDS)
