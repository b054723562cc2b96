"""The expert driver: privileged state in, ego controls plus the decision and its cause out.

Each step the expert evaluates every longitudinal constraint it knows (free-road cruise,
road events, the lead obstacle, red lights and stop signs, agents with right of way, the
gap it is searching for a lane change, passing) as an acceleration; the *binding* one
(the lowest acceleration) is the decision and its agent or element is the proximate
cause. That is what makes the labels causally correct: behind a lead vehicle that brakes
at a red light, the lead constrains the ego before the light does, so the lead is cited.
The lateral channel is a small state machine (keep lane, lane change / merge / split,
abort, in- and out-of-lane nudge, pull over, turn) fed by the scenario's route intents
and by what the expert sees. The expert only reacts to agents it has perceived (seen
within the last 2 s, occlusion included), so a pedestrian behind a parked van becomes a
cause only once it steps out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from alpamayo_ros.data.world import (
    BRAKING_MPS2,  # noqa: F401 (moved to world, re-exported)
    DT_S,
    Agent,
    World,
    brake_lights_on,
    idm,
    idm_free,
    indicator,
    visible_agents,
)
from alpamayo_ros.taxonomy import ComponentType as CT
from alpamayo_ros.taxonomy import LateralDecision as Lat
from alpamayo_ros.taxonomy import LongitudinalDecision as Lon
from alpamayo_ros.taxonomy import Uncertainty

PERCEPTION_MEMORY_S = 2.0  # AR1 labelling window: causes must be seen in the last 2 s
# An agent first seen this close (well inside the cameras' 90 m range) was hidden behind
# something, not out of range: it is described as emerging from behind a vehicle.
EMERGE_RANGE_M = 75.0
MAX_ACCEL_MPS2 = 2.4  # release comfort bound, longitudinal accel +2.40 m/s^2
MAX_DECEL_MPS2 = 7.0
MAX_JERK_MPS3 = 10.0
# Curvature of the ego's own lateral manoeuvres (lane change, nudge, pull-over). With the
# road's (the turn family's corners go down to a 9 m radius, 0.11 1/m) the path stays
# inside the AR1 release bound |kappa| <= 0.2 1/m.
MAX_STEER_CURVATURE_PER_M = 0.08


@dataclass
class Cause:
    """A critical component behind a decision, with attributes for the reasoning text."""

    type: CT
    id: str
    kind: str  # "vehicle", "pedestrian", "traffic_light", "stop_sign", "lane_end", ...
    uncertainty: Uncertainty = Uncertainty.LOW
    attrs: dict = field(default_factory=dict)
    position_sd: tuple[float, float] = (math.nan, math.nan)  # Frenet (s, d) of the element


@dataclass
class Intent:
    """A route intent: be in ``target_lane`` from ``s_from`` on."""

    s_from: float
    target_lane: int
    reason: str = "route"  # "route" (routing intent) | "lane_end" (merge) | "exit" (split)
    note: str = ""  # e.g. "the route goes left at the next intersection"


@dataclass
class Turn:
    """A turn of the route between ``s_start`` and ``s_end``."""

    s_start: float
    s_end: float
    direction: str  # "left" | "right"
    id: str = "route"


@dataclass
class ExpertConfig:
    """Tuning of the expert driver."""

    set_speed_mps: float = 13.9
    follow_headway_s: float = 1.4
    lateral_omega_rad_s: float = 1.1  # lane-change bandwidth: about 4 s per lane
    nudge_clearance_m: float = 0.5
    allow_overtake: bool = False

    def __post_init__(self) -> None:
        if self.set_speed_mps <= 0.0:
            raise ValueError(f"set_speed_mps must be > 0, got {self.set_speed_mps}")
        if self.follow_headway_s <= 0.0:
            raise ValueError(f"follow_headway_s must be > 0, got {self.follow_headway_s}")
        if self.lateral_omega_rad_s <= 0.0:
            raise ValueError(f"lateral_omega_rad_s must be > 0, got {self.lateral_omega_rad_s}")
        if self.nudge_clearance_m < 0.0:
            raise ValueError(f"nudge_clearance_m must be >= 0, got {self.nudge_clearance_m}")


@dataclass
class DecisionRecord:
    """What the expert decided at one step and why."""

    time_s: float
    longitudinal: str
    lateral: str
    long_causes: list[Cause]
    lat_causes: list[Cause]
    accel_mps2: float
    target_d: float
    visible: frozenset = frozenset()


def _time_to_cover(dist_m: float, v_mps: float, accel_mps2: float = 1.5) -> float:
    """Time to drive ``dist_m`` from speed ``v_mps`` accelerating at ``accel_mps2``."""
    return (-v_mps + math.sqrt(v_mps**2 + 2.0 * accel_mps2 * dist_m)) / accel_mps2


def stop_profile(v_mps: float, gap_m: float, start_decel_mps2: float = 0.9
                 ) -> tuple[float, bool]:
    """Constant-deceleration stop at a line ``gap_m`` ahead: (acceleration, binding).

    The stop becomes binding once the deceleration it needs reaches ``start_decel_mps2``
    (so a stop is decided with a clear deceleration, not IDM's long taper), and while the
    car waits at the line.
    """
    if gap_m <= 0.3:
        return (-4.0 if v_mps > 0.0 else 0.0), True
    need = v_mps**2 / (2.0 * (gap_m - 0.3))
    binding = need >= start_decel_mps2 or (v_mps < 0.5 and gap_m < 8.0)
    return -need, binding


class Expert:
    """Drives the ego of a :class:`World` one step at a time."""

    def __init__(self, config: ExpertConfig, intents: list[Intent] | None = None,
                 turns: list[Turn] | None = None) -> None:
        self.config = config
        self.intents = list(intents or [])
        self.turns = list(turns or [])
        self.last_seen: dict[str, float] = {}
        self.first_seen: dict[str, float] = {}
        self.emerged: set[str] = set()  # first seen late and close: came out of hiding
        self.lat_mode = "keep"
        self.origin_d = 0.0
        self.target_d: float | None = None
        self.maneuver_causes: list[Cause] = []
        self.maneuver_decision = Lat.LANE_KEEPING.value
        self.cooldown_until_s = -1.0
        self.cleared_stop_signs: set[str] = set()
        self.stopped_since_s: float | None = None
        self.passing_id: str | None = None
        self.nudge_id: str | None = None
        self.yielding_to: set[str] = set()  # across-moving agents the ego is yielding to

    # ------------------------------------------------------------------ helpers
    def _perceived(self, world: World) -> list[Agent]:
        t = world.time_s
        return [a for a in world.agents
                if a.id in self.last_seen and t - self.last_seen[a.id] <= PERCEPTION_MEMORY_S]

    def describe(self, world: World, a: Agent) -> Cause:
        """A cause for agent ``a`` with attributes seen from the ego."""
        e = world.ego
        gap = (a.s - e.s) - a.extent_s() - e.length_m / 2
        if a.s < e.s - e.length_m / 2 - a.extent_s():
            gap = (e.s - a.s) - a.extent_s() - e.length_m / 2
            where = "behind"
        elif abs(a.d - e.d) > 0.5 * (a.width_m + e.width_m) and gap < 3.0:
            where = "left" if a.d > e.d else "right"
        else:
            where = "ahead"
        if a.mode == "static":
            state = "parked" if a.is_vehicle else "static"
        elif a.mode == "across":
            state = "waiting" if (a.waiting or not a.active) else "crossing"
        elif a.siren and where == "behind":
            state = "siren"
        elif a.v_mps < 0.3:
            state = "stopped"
        elif brake_lights_on(a):  # the renderer draws the same predicate's lamps
            state = "braking"
        elif indicator(a):  # changing lanes, indicator on
            state = "cutting_in"
        elif a.v_mps < 0.7 * self.config.set_speed_mps:
            state = "slow"
        else:
            state = "moving"
        emerging = (a.kind in ("pedestrian", "cyclist") and a.id in self.emerged
                    and world.time_s - self.first_seen[a.id] < 3.0)
        side = "left" if a.d > e.d else "right"
        kind = "vehicle" if a.is_vehicle else a.kind
        high = (a.kind in ("pedestrian", "cyclist") or state in ("cutting_in", "siren")
                or emerging)
        return Cause(
            type=CT.CRITICAL_OBJECT, id=a.id, kind=kind,
            uncertainty=Uncertainty.HIGH if high else Uncertainty.LOW,
            attrs={"agent_kind": a.kind, "colour": a.colour, "distance_m": max(gap, 0.0),
                   "speed_mps": a.v_mps, "accel_mps2": a.accel_mps2, "state": state,
                   "where": where, "side": side, "emerging": emerging,
                   "lane": world.road.lane_of(a.d)},
            position_sd=(a.s, a.d))

    def _gap_ok(self, world: World, lane: int) -> tuple[bool, Agent | None]:
        """Whether ``lane`` has room for the ego now; else the agent in the way."""
        e = world.ego
        if not world.lane_exists(lane, e.s) or not world.lane_exists(lane, e.s + 15.0):
            return False, None
        d_lane = world.road.lane_center(lane)
        worst, worst_score = None, 0.0
        for a in self._perceived(world):
            if a.mode == "across":
                continue
            d_a = a.target_d if (a.target_d is not None and a.mode == "along") else a.d
            if abs(a.d - d_lane) > 0.5 * world.road.lane_width_m + 0.3 and \
                    abs(d_a - d_lane) > 0.5 * world.road.lane_width_m:
                continue
            rel = a.s - e.s
            half = a.extent_s() + e.length_m / 2
            if rel >= 0:  # ahead in the target lane
                need = max(6.0, 0.8 * e.v_mps + (e.v_mps - a.v_mps) * 1.5)
                score = need - (rel - half)
            else:  # behind: it must not close in too fast
                closing = a.v_mps - e.v_mps + max(a.accel_mps2, 0.0) * 1.5
                need = max(6.0, closing * 4.0 + 0.3 * a.v_mps)
                score = need - (-rel - half)
            if score > worst_score:
                worst, worst_score = a, score
        return worst is None, worst

    # ------------------------------------------------------------------ lateral
    def _lateral(self, world: World) -> tuple[str, list[Cause], float, dict]:
        """Lateral decision, its causes, the target d and hints for the longitudinal part."""
        e, road = world.ego, world.road
        t = world.time_s
        lane = road.lane_of(e.d)
        hints: dict = {}
        # Emergency vehicle approaching from behind: pull over and stop.
        for a in self._perceived(world):
            if a.siren and a.mode == "along" and a.s < e.s and e.s - a.s < 80.0 and \
                    abs(a.d - e.d) < 3.0:
                self.lat_mode = "pull_over"
                self.maneuver_causes = [self.describe(world, a)]
                hints["yield_pull_over"] = a
        if self.lat_mode == "pull_over":
            ev = world.agent(self.maneuver_causes[0].id)
            if ev.s > e.s + e.length_m:  # it has passed: rejoin the lane
                self.lat_mode = "keep"
            else:
                hints.setdefault("yield_pull_over", ev)
                target = -0.5 * road.lane_width_m - 0.5 * road.config.shoulder_m - 0.2
                return Lat.PULL_OVER.value, self.maneuver_causes, target, hints
        # Turns along the route.
        for tr in self.turns:
            if tr.s_start - 12.0 <= e.s <= tr.s_end:
                cause = Cause(CT.ROUTING_INTENT, tr.id, "route", Uncertainty.LOW,
                              {"direction": tr.direction,
                               "distance_m": max(0.0, tr.s_start - e.s)},
                              (tr.s_start, 0.0))
                return Lat.TURN.value, [cause], road.lane_center(lane), hints
        # Abort or finish an ongoing lane change / merge / split.
        if self.lat_mode == "change":
            target_lane = road.lane_of(self.target_d)
            ok, blocker = self._gap_ok(world, target_lane)
            progressed = abs(e.d - self.origin_d) / road.lane_width_m
            if not ok and blocker is not None and progressed < 0.5:
                self.lat_mode = "abort"
                self.target_d, self.origin_d = self.origin_d, self.target_d
                self.maneuver_causes = [self.describe(world, blocker)]
                self.cooldown_until_s = t + 4.0
                self.passing_id = None
            elif lane == target_lane:
                # The ego's centre has crossed into the target lane: the lane change (merge,
                # split) is done, and centring in the new lane is lane keeping. Holding the
                # manoeuvre until the car is centred would label its last metre of drift a
                # lane change.
                self.lat_mode = "keep"
            else:
                return self.maneuver_decision, self.maneuver_causes, self.target_d, hints
        if self.lat_mode == "abort":
            if abs(e.d - self.target_d) < 0.15:
                self.lat_mode = "keep"
            else:
                return (Lat.LATERAL_MANEUVER_ABORT.value, self.maneuver_causes,
                        self.target_d, hints)
        # Route intents and overtaking start new lane changes (or a gap search).
        intent = self._active_intent(world, lane)
        if intent is not None:
            kind, target_lane, causes = intent
            ok, blocker = self._gap_ok(world, target_lane)
            if ok and t >= self.cooldown_until_s:
                self.lat_mode = "change"
                self.origin_d = road.lane_center(lane)
                self.target_d = road.lane_center(target_lane)
                self.maneuver_decision = kind
                self.maneuver_causes = causes
                return kind, causes, self.target_d, hints
            if blocker is not None:
                hints["gap_blocker"] = blocker
                hints["gap_causes"] = [self.describe(world, blocker)] + [
                    c for c in causes if c.type != CT.CRITICAL_OBJECT]
        # Nudges around parked / static objects and slow cyclists in the lane.
        nudge = self._nudge(world, lane)
        if nudge is not None:
            return nudge[0], nudge[1], nudge[2], hints
        self.passing_id = self.passing_id if self._still_passing(world) else None
        if not world.lane_exists(lane, e.s):  # on the shoulder or a vanished lane: rejoin
            lane = min((ln for ln in range(-1, road.config.num_lanes)
                        if world.lane_exists(ln, e.s)), key=lambda ln: abs(ln - lane))
        keep_cause = Cause(CT.LANE, f"lane_{lane}", "lane", Uncertainty.LOW,
                           {"lane": lane, "num_lanes": road.config.num_lanes})
        return Lat.LANE_KEEPING.value, [keep_cause], road.lane_center(lane), hints

    def _active_intent(self, world: World, lane: int) -> tuple[str, int, list[Cause]] | None:
        e, road = world.ego, world.road
        for it in self.intents:
            if e.s < it.s_from or lane == it.target_lane:
                continue
            step = 1 if it.target_lane > lane else -1
            target_lane = lane + step
            if it.reason == "lane_end":
                span = next((sp for sp in world.lane_spans if sp.lane == lane), None)
                dist = (span.s_end - e.s) if span else 0.0
                cause = Cause(CT.LANE, f"lane_{lane}_end", "lane_end", Uncertainty.LOW,
                              {"distance_m": max(dist, 0.0), "direction":
                               "left" if step > 0 else "right"},
                              (span.s_end if span else e.s, road.lane_center(lane)))
                return Lat.MERGE_SPLIT.value, target_lane, [cause]
            if it.reason == "exit":
                cause = Cause(CT.ROUTING_INTENT, "route", "exit", Uncertainty.LOW,
                              {"direction": "left" if step > 0 else "right", "note": it.note})
                return Lat.MERGE_SPLIT.value, target_lane, [cause]
            cause = Cause(CT.ROUTING_INTENT, "route", "route", Uncertainty.LOW,
                          {"direction": "left" if step > 0 else "right", "note": it.note})
            return Lat.LANE_CHANGE.value, target_lane, [cause]
        if self.config.allow_overtake and world.lane_exists(lane + 1, e.s) and \
                road.lane_direction(lane + 1) > 0:
            lead = self._lead(world, [e.d], 45.0)
            if lead is not None and lead[0].v_mps < 0.7 * self.config.set_speed_mps and \
                    lead[0].mode == "along":
                self.passing_id = lead[0].id
                cause = self.describe(world, lead[0])
                cause.attrs["direction"] = "left"
                return Lat.LANE_CHANGE.value, lane + 1, [cause]
        return None

    def _still_passing(self, world: World) -> bool:
        if self.passing_id is None:
            return False
        a = world.agent(self.passing_id)
        return a.s + a.extent_s() > world.ego.s - world.ego.length_m / 2 - 5.0

    def _nudge(self, world: World, lane: int) -> tuple[str, list[Cause], float] | None:
        e, road, cfg = world.ego, world.road, self.config
        d_lane = road.lane_center(lane)
        half_e = e.width_m / 2
        best = None
        for a in self._perceived(world):
            if not (a.mode == "static" or (a.kind == "cyclist" and a.mode == "along")):
                continue
            rel = a.s - e.s
            if not (-a.extent_s() - e.length_m / 2 - 1.0 < rel < 40.0):
                continue
            lo, hi = a.d - a.extent_d(), a.d + a.extent_d()
            if hi < d_lane - half_e - cfg.nudge_clearance_m or \
                    lo > d_lane + half_e + cfg.nudge_clearance_m:
                continue
            if best is None or rel < best[0]:
                best = (rel, a, lo, hi)
        if best is None:
            self.nudge_id = None
            return None
        _, a, lo, hi = best
        clearance = cfg.nudge_clearance_m + (0.5 if a.kind == "cyclist" else 0.0)
        if a.d <= d_lane:
            target, side = hi + clearance + half_e, "left"
        else:
            target, side = lo - clearance - half_e, "right"
        shift = abs(target - d_lane)
        in_lane_room = 0.5 * road.lane_width_m - half_e - 0.05
        cause = self.describe(world, a)
        cause.attrs["direction"] = side
        if shift <= in_lane_room:
            self.nudge_id = a.id
            return Lat.IN_LANE_NUDGE.value, [cause], target
        if shift > road.lane_width_m:
            self.nudge_id = None
            return None
        adj = lane + (1 if side == "left" else -1)
        if not world.lane_exists(adj, e.s):
            self.nudge_id = None
            return None
        d_adj = road.lane_center(adj)
        committed = self.nudge_id == a.id
        for o in ([] if committed else self._perceived(world)):
            if o is a or o.mode != "along" or abs(o.d - d_adj) > 0.5 * road.lane_width_m:
                continue
            closing = o.v_mps * (1 if o.direction < 0 else -1) if o.s > e.s else o.v_mps
            t_pass = (a.s - e.s + 15.0) / max(e.v_mps, 3.0)
            if -10.0 < (o.s - e.s) - closing * t_pass < 30.0 + (a.s - e.s):
                self.nudge_id = None
                return None  # adjacent lane busy: wait behind (lead following)
        self.nudge_id = a.id
        cause.attrs["adjacent_lane"] = "oncoming" if road.lane_direction(adj) < 0 else side
        return Lat.OUT_OF_LANE_NUDGE.value, [cause], target

    # ------------------------------------------------------------------ longitudinal
    def _lead(self, world: World, ds: list[float], horizon_m: float = 80.0,
              exclude: frozenset = frozenset()) -> tuple[Agent, float] | None:
        e = world.ego
        best = None
        for a in self._perceived(world):
            if a.id in exclude or a.mode == "across":
                continue
            gap = (a.s - e.s) - a.extent_s() - e.length_m / 2
            if gap < -1.0 or gap > horizon_m:
                continue
            if a.mode == "along" and a.direction < 0:
                continue  # oncoming traffic is not a lead
            if not any(abs(a.d - d) < a.extent_d() + e.width_m / 2 + 0.25 for d in ds):
                continue
            if best is None or gap < best[1]:
                best = (a, gap)
        return best

    def step(self, world: World) -> DecisionRecord:
        """Decide, apply the controls to the ego and return the decision record."""
        t = world.time_s
        seen = visible_agents(world)
        for aid in seen:
            if aid not in self.first_seen:
                self.first_seen[aid] = t
                a = world.agent(aid)
                if t > 0.5 and math.hypot(a.s - world.ego.s, a.d - world.ego.d) < EMERGE_RANGE_M:
                    self.emerged.add(aid)
            self.last_seen[aid] = t
        e, road, cfg = world.ego, world.road, self.config
        lat_dec, lat_causes, target_d, hints = self._lateral(world)
        v, v0 = e.v_mps, cfg.set_speed_mps
        free = idm_free(v, v0)
        options: list[tuple[float, int, str, list[Cause]]] = []
        limit = Cause(CT.ODD_CONSTRAINT, "speed_limit", "speed_limit", Uncertainty.LOW,
                      {"speed_mps": v0})
        options.append((free, 9, Lon.SET_SPEED_TRACKING.value, [limit]))
        # Road events ahead: slow to their advisory speed at a planned deceleration.
        for ev in world.events:
            dist = ev.s_start - (e.s + e.length_m / 2)
            if ev.s_end < e.s or dist > 90.0:
                continue
            if dist <= 0.0:
                acc = -min(2.0, 0.8 * (v - ev.speed_mps)) if v > ev.speed_mps + 0.3 else \
                    min(idm_free(v, ev.speed_mps), 0.0) - 0.01
            else:
                need = (v**2 - ev.speed_mps**2) / (2.0 * dist)
                if need < 0.6:
                    continue
                acc = -need
            cause = Cause(CT.ROAD_EVENT, ev.id, ev.kind, Uncertainty.LOW,
                          {"distance_m": max(dist, 0.0), "speed_mps": ev.speed_mps},
                          (ev.s_start, 0.0))
            options.append((acc, 5, Lon.SPEED_ADAPTATION.value, [cause]))
        # Lead obstacle in the corridor (current d for close ones, planned d beyond 8 m).
        lead = self._lead(world, [e.d, target_d],
                          exclude=frozenset({self.nudge_id} if self.nudge_id else ()))
        if lead is not None:
            a, gap = lead
            if gap > 8.0 and abs(a.d - target_d) >= a.extent_d() + e.width_m / 2 + 0.25:
                lead = None  # only in the lane we are leaving: not in our way
        if lead is not None:
            a, gap = lead
            acc = idm(v, v0, max(gap, 0.1), v - a.v_mps, headway_s=cfg.follow_headway_s)
            if acc < free - 0.3 or gap < max(20.0, 2.5 * v):
                options.append((acc, 2, Lon.LEAD_OBSTACLE_FOLLOWING.value,
                                [self.describe(world, a)]))
        # Red / yellow lights and stop signs: a stopped obstacle at the stop line.
        front = e.s + e.length_m / 2
        lead_gap = lead[1] if lead is not None else math.inf
        tl = world.light_ahead(front - 1.0)
        if tl is not None and tl.stop_line_s - front > lead_gap:
            tl = None  # a lead vehicle is between us and the line: it is the constraint
        if tl is not None:
            state = tl.state(t)
            gap = tl.stop_line_s - front
            if state != "green" and (state == "red" or v**2 / (2 * max(gap, 0.1)) < 3.5):
                acc, binding = stop_profile(v, gap)
                if binding:
                    cause = Cause(CT.TRAFFIC_LIGHT, tl.id, "traffic_light",
                                  Uncertainty.HIGH if state == "yellow" else Uncertainty.LOW,
                                  {"state": state, "distance_m": max(gap, 0.0)},
                                  (tl.stop_line_s, 0.0))
                    options.append((acc, 3, Lon.STOP_FOR_STATIC_CONSTRAINT.value, [cause]))
        for ss in world.stop_signs:
            gap = ss.stop_line_s - front
            if ss.id in self.cleared_stop_signs or gap < -2.0 or gap > 90.0 or gap > lead_gap:
                continue
            if v < 0.2 and gap < 4.0:
                self.stopped_since_s = self.stopped_since_s if self.stopped_since_s is not None \
                    else t
                if t - self.stopped_since_s >= 1.5:
                    self.cleared_stop_signs.add(ss.id)
                    self.stopped_since_s = None
                    continue
            acc, binding = stop_profile(v, gap)
            if binding:
                cause = Cause(CT.YIELD_STOP_CONTROL, ss.id, "stop_sign", Uncertainty.LOW,
                              {"distance_m": max(gap, 0.0)}, (ss.stop_line_s, 0.0))
                options.append((acc, 3, Lon.STOP_FOR_STATIC_CONSTRAINT.value, [cause]))
        # Agents with right of way: crossing pedestrians, cyclists, cross traffic. Once
        # the expert yields to an agent it keeps yielding until that agent has crossed the
        # ego's corridor: no creeping off toward a car that is about to pass in front.
        perceived_across = {a.id for a in self._perceived(world) if a.mode == "across"}
        self.yielding_to &= perceived_across
        for a in self._perceived(world):
            if a.mode != "across" or not a.active:
                self.yielding_to.discard(a.id)
                continue
            gap = (a.s - a.extent_s()) - front - 2.0
            if gap < -e.length_m - 1.0 or gap > 60.0:
                self.yielding_to.discard(a.id)
                continue
            corridor = a.extent_d() + e.width_m / 2 + (3.0 if a.is_vehicle else 1.0)
            inside = abs(a.d - target_d) < corridor or abs(a.d - e.d) < corridor
            toward = (target_d - a.d) * a.direction > 0
            conflict = inside
            if a.id in self.yielding_to:
                conflict = inside or toward
            elif not inside and toward and a.v_mps > 0.1:
                t_in = (abs(target_d - a.d) - corridor) / a.v_mps
                t_out = (abs(target_d - a.d) + corridor) / a.v_mps
                t_arr = _time_to_cover(max(gap, 0.0), v)
                t_clear = _time_to_cover(max(gap, 0.0) + e.length_m + 4.0, v)
                conflict = t_in < t_clear + 1.0 and t_out > t_arr - 1.0
            if conflict and gap > -1.0:
                self.yielding_to.add(a.id)
                acc = min(idm(v, v0, max(gap, 0.1), v, min_gap_m=0.5), stop_profile(v, gap)[0])
                options.append((min(acc, free - 0.01), 1, Lon.YIELD.value,
                                [self.describe(world, a)]))
            else:
                self.yielding_to.discard(a.id)
        if "yield_pull_over" in hints:
            ev = hints["yield_pull_over"]
            acc = -min(3.0, max(1.0, v**2 / (2 * 25.0))) if v > 0.2 else 0.0
            options.append((acc, 0, Lon.YIELD.value, [self.describe(world, ev)]))
        # Gap searching for a lane change / merge: drop back behind the vehicle in the way.
        if "gap_blocker" in hints:
            b = hints["gap_blocker"]
            off = b.s - e.s
            need = b.extent_s() + e.length_m / 2 + 6.0 + 0.6 * v
            acc = float(np.clip(0.3 * (off - need) + 0.5 * (b.v_mps - v), -2.0, -0.3))
            options.append((min(acc, free), 4, Lon.GAP_SEARCHING.value, hints["gap_causes"]))
        # Passing a slow vehicle from the next lane.
        if self.passing_id is not None and self._still_passing(world) and v < v0 - 0.5 and \
                road.lane_of(target_d) != road.lane_of(world.agent(self.passing_id).d):
            a = world.agent(self.passing_id)
            acc = max(free, min(MAX_ACCEL_MPS2, idm_free(v, v0 * 1.05, MAX_ACCEL_MPS2)))
            options.append((acc, 8, Lon.ACCELERATE_TO_PASS.value, [self.describe(world, a)]))
        binding = [o for o in options if o[2] != Lon.ACCELERATE_TO_PASS.value]
        acc, _, lon_dec, lon_causes = min(binding, key=lambda o: (o[0], o[1]))
        passing = [o for o in options if o[2] == Lon.ACCELERATE_TO_PASS.value]
        if passing and lon_dec == Lon.SET_SPEED_TRACKING.value:
            acc, _, lon_dec, lon_causes = passing[0]
        self._apply(world, acc, target_d)
        return DecisionRecord(t, lon_dec, lat_dec, lon_causes, lat_causes, e.accel_mps2,
                              target_d, frozenset(seen))

    def _apply(self, world: World, acc: float, target_d: float, dt_s: float = DT_S) -> None:
        e = world.ego
        acc = float(np.clip(acc, -MAX_DECEL_MPS2, MAX_ACCEL_MPS2))
        step = MAX_JERK_MPS3 * dt_s
        acc = float(np.clip(acc, e.accel_mps2 - step, e.accel_mps2 + step))
        if e.v_mps <= 0.0 and acc < 0.0:
            acc = 0.0
        v_next = max(0.0, e.v_mps + acc * dt_s)
        arc = 0.5 * (e.v_mps + v_next) * dt_s
        e.s += arc
        e.v_mps, e.accel_mps2 = v_next, acc
        w = self.config.lateral_omega_rad_s
        acc_d = w * w * (target_d - e.d) - 2.0 * w * e.vd_mps
        limit = 0.3 * v_next
        vd_want = float(np.clip(e.vd_mps + acc_d * dt_s, -limit, limit))
        # Unicycle kinematics: the heading relative to the road turns by at most
        # MAX_STEER_CURVATURE_PER_M per metre driven and the lateral speed is the forward
        # speed times its tangent, so a slow car cannot swing sideways (it did, at 0.7 1/m,
        # rejoining the lane after a pull-over) and a car at rest does not move at all.
        psi_want = math.atan2(vd_want, max(v_next, 1e-3))
        turn = MAX_STEER_CURVATURE_PER_M * arc
        e.heading_offset_rad = float(np.clip(psi_want, e.heading_offset_rad - turn,
                                             e.heading_offset_rad + turn))
        e.vd_mps = v_next * math.tan(e.heading_offset_rad)
        e.d += e.vd_mps * dt_s
