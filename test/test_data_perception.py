"""Perception targets (alpamayo_ros.data.perception_targets): hand-built scenes and a sim."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alpamayo_ros.data.expert import DecisionRecord
from alpamayo_ros.data.perception_targets import perception_targets
from alpamayo_ros.data.scenarios import AgentSnapshot, Episode, Frame, make_scenario, simulate
from alpamayo_ros.data.world import (
    Agent,
    EgoState,
    Road,
    RoadConfig,
    TrafficLight,
    World,
    agent_world_pose,
)
from alpamayo_ros.perception import AGENT_SLOTS, PERCEPTION_DIM, PERCEPTION_FIELDS
from alpamayo_ros.perception import PERCEPTION_INDEX as IDX

EGO_S = 50.0


def _snap(road: Road, a: Agent | EgoState, aid: str, kind: str, **flags) -> AgentSnapshot:
    x, y, h = agent_world_pose(road, a)
    snap = AgentSnapshot(aid, kind, x, y, h, a.length_m, a.width_m, a.height_m, "red",
                         a.v_mps, a.s, a.d, bool(getattr(a, "siren", False)))
    for name, value in flags.items():  # brake lights / indicators
        setattr(snap, name, value)
    return snap


def scene(agents: list[tuple[Agent, dict]] = (), visible: set[str] | None = None,
          lights: list[tuple[TrafficLight, str]] = (), num_lanes: int = 2,
          oncoming: int = 0, ego_d: float = 0.0, ego_heading_rad: float = 0.0,
          segments: tuple[tuple[float, float], ...] = ((400.0, 0.0),)) -> Episode:
    """A one-frame episode; ``visible`` defaults to every agent."""
    road = Road(RoadConfig(segments=list(segments), num_lanes=num_lanes,
                           oncoming_lanes=oncoming))
    ego = EgoState(s=EGO_S, d=ego_d, v_mps=10.0, heading_offset_rad=ego_heading_rad)
    world = World(road, ego, agents=[a for a, _ in agents], lights=[tl for tl, _ in lights])
    ids = {a.id for a, _ in agents} if visible is None else visible
    record = DecisionRecord(0.0, "set_speed_tracking", "lane_keeping", [], [], 0.0, ego_d,
                            frozenset(ids))
    frame = Frame(0.0, _snap(road, ego, "ego", "car"), 0.0,
                  [_snap(road, a, a.id, a.kind, **flags) for a, flags in agents],
                  {tl.id: state for tl, state in lights}, record)
    return Episode("hand", 0, world, [frame])


def value(values: np.ndarray, mask: np.ndarray, name: str) -> float:
    assert mask[IDX[name]], f"{name} is masked"
    return float(values[IDX[name]] * PERCEPTION_FIELDS[IDX[name]].scale)


def test_shapes_and_scaling_contract():
    values, mask = perception_targets(scene(), 0)
    assert values.shape == mask.shape == (PERCEPTION_DIM,)
    assert values.dtype == np.float32 and mask.dtype == bool
    assert np.all(values[~mask] == 0.0)
    for f in PERCEPTION_FIELDS:  # every binary flag is 0/1 where known
        if f.kind == "binary" and mask[IDX[f.name]]:
            assert values[IDX[f.name]] in (0.0, 1.0)
    with pytest.raises(IndexError):
        perception_targets(scene(), 1)


def test_empty_road():
    values, mask = perception_targets(scene(num_lanes=1, oncoming=1), 0)
    for name in ("lead_present", "light_present", "stop_sign_present", "crossing_present",
                 "event_present", "lane_end_present", "siren_behind"):
        assert value(values, mask, name) == 0.0
    for name in ("lead_gap", "lead_speed", "lead_braking", "light_red", "light_distance",
                 "stop_sign_distance", "crossing_distance", "event_speed",
                 "lane_end_distance"):
        assert not mask[IDX[name]], name
    assert value(values, mask, "left_lane") == 0.0
    assert value(values, mask, "right_lane") == 0.0
    assert value(values, mask, "oncoming_left") == 1.0
    assert value(values, mask, "ego_lateral_offset") == pytest.approx(0.0, abs=1e-6)
    assert value(values, mask, "curvature_20m") == 0.0
    for k in range(AGENT_SLOTS):
        assert value(values, mask, f"agent{k}_present") == 0.0
        assert not mask[IDX[f"agent{k}_x"]] and not mask[IDX[f"agent{k}_braking"]]


def test_heading_error_is_relative_to_the_road():
    # Straight road: the ego's heading offset is the error, left positive.
    values, mask = perception_targets(scene(ego_heading_rad=0.04, ego_d=0.5), 0)
    assert value(values, mask, "ego_heading_error") == pytest.approx(0.04, abs=1e-6)
    assert value(values, mask, "ego_lateral_offset") == pytest.approx(0.5, abs=1e-6)
    values, mask = perception_targets(scene(ego_heading_rad=-0.02), 0)
    assert value(values, mask, "ego_heading_error") == pytest.approx(-0.02, abs=1e-6)
    # In a left bend (the road's heading 0.6 rad at the ego) a car along the lane has none;
    # its world heading is the road's plus the offset.
    bend = ((20.0, 0.0), (200.0, 0.02))
    values, mask = perception_targets(scene(segments=bend), 0)
    assert value(values, mask, "ego_heading_error") == pytest.approx(0.0, abs=1e-6)
    ep = scene(segments=bend, ego_heading_rad=-0.03)
    assert ep.frames[0].ego.heading == pytest.approx(0.6 - 0.03, abs=1e-3)
    values, mask = perception_targets(ep, 0)
    assert value(values, mask, "ego_heading_error") == pytest.approx(-0.03, abs=1e-6)


def test_lane_centre_ahead_in_the_ego_frame():
    # Straight road, the ego 0.5 m left of its lane centre and turned 0.02 rad left: the
    # centre 10 m ahead lies right of it by the offset and by what the heading adds.
    values, mask = perception_targets(scene(ego_heading_rad=0.02, ego_d=0.5), 0)
    y10 = -10.0 * math.sin(0.02) - 0.5 * math.cos(0.02)
    assert value(values, mask, "lane_center_y_10m") == pytest.approx(y10, abs=1e-3)
    assert value(values, mask, "lane_center_y_40m") == pytest.approx(
        -40.0 * math.sin(0.02) - 0.5 * math.cos(0.02), abs=1e-3)
    # Centred on a left bend of radius 50 m: the chord's lateral part, R (1 - cos(L / R)).
    bend = ((20.0, 0.0), (200.0, 0.02))
    values, mask = perception_targets(scene(segments=bend), 0)
    for ahead in (10.0, 20.0, 40.0):
        assert value(values, mask, f"lane_center_y_{ahead:g}m") == pytest.approx(
            50.0 * (1.0 - math.cos(ahead / 50.0)), abs=0.02)
    # In the left lane of two, the ego's own lane counts (3.5 m left of lane 0's centre).
    values, mask = perception_targets(scene(ego_d=3.5), 0)
    assert value(values, mask, "lane_center_y_20m") == pytest.approx(0.0, abs=1e-6)


def test_lead_braking_ahead():
    lead = Agent("lead", "car", EGO_S + 20.0, 0.0, v_mps=5.0)
    values, mask = perception_targets(scene([(lead, {"braking": True})]), 0)
    assert value(values, mask, "lead_present") == 1.0
    # Bumper to bumper: 20 m between centres minus half the lead and half the ego.
    assert value(values, mask, "lead_gap") == pytest.approx(20.0 - 2.3 - 2.4, abs=1e-4)
    assert value(values, mask, "lead_speed") == pytest.approx(5.0)
    assert value(values, mask, "lead_braking") == 1.0
    assert value(values, mask, "agent0_present") == 1.0
    assert value(values, mask, "agent0_x") == pytest.approx(20.0, abs=1e-4)
    assert value(values, mask, "agent0_y") == pytest.approx(0.0, abs=1e-4)
    assert value(values, mask, "agent0_vx") == pytest.approx(5.0, abs=1e-4)
    assert value(values, mask, "agent0_length") == pytest.approx(4.6)
    assert value(values, mask, "agent0_braking") == 1.0
    assert value(values, mask, "agent0_indicator_left") == 0.0
    assert value(values, mask, "agent1_present") == 0.0
    # Same car with its brake lights off, and the same car hidden from the cameras.
    values, mask = perception_targets(scene([(lead, {"braking": False})]), 0)
    assert value(values, mask, "lead_braking") == 0.0
    values, mask = perception_targets(scene([(lead, {})], visible=set()), 0)
    assert value(values, mask, "lead_present") == 0.0
    assert value(values, mask, "agent0_present") == 0.0


def test_agent_behind_vs_ahead_and_lanes():
    behind = Agent("behind", "van", EGO_S - 15.0, 0.0, v_mps=12.0)
    left = Agent("left", "car", EGO_S + 8.0, 3.5, v_mps=11.0)
    oncoming = Agent("oncoming", "car", EGO_S + 40.0, 7.0, v_mps=10.0, direction=-1)
    values, mask = perception_targets(scene(
        [(behind, {}), (left, {"indicator": "right"}), (oncoming, {})], num_lanes=2,
        oncoming=1), 0)
    assert value(values, mask, "lead_present") == 0.0  # none of them is in the ego lane ahead
    assert value(values, mask, "left_lane") == 1.0
    assert value(values, mask, "oncoming_left") == 0.0
    # Slots sorted by distance: the car on the left (8 m), the van behind (15 m), oncoming.
    assert value(values, mask, "agent0_x") == pytest.approx(8.0, abs=1e-4)
    assert value(values, mask, "agent0_y") == pytest.approx(3.5, abs=1e-4)
    assert value(values, mask, "agent0_indicator_right") == 1.0
    assert value(values, mask, "agent1_x") == pytest.approx(-15.0, abs=1e-4)
    assert value(values, mask, "agent1_vx") == pytest.approx(12.0, abs=1e-4)
    assert value(values, mask, "agent2_vx") == pytest.approx(-10.0, abs=1e-4)
    assert value(values, mask, "agent2_y") == pytest.approx(7.0, abs=1e-4)
    assert value(values, mask, "agent3_present") == 0.0
    # The car in the ego lane behind is not a lead; moved ahead of the ego it is.
    values, mask = perception_targets(scene([(Agent("b", "car", EGO_S - 15.0, 0.0), {})]), 0)
    assert value(values, mask, "lead_present") == 0.0
    values, mask = perception_targets(scene([(Agent("a", "car", EGO_S + 15.0, 0.0), {})]), 0)
    assert value(values, mask, "lead_present") == 1.0


def test_red_light_at_40m():
    stop = EGO_S + 2.4 + 40.0  # 40 m from the ego's front bumper
    light = TrafficLight("light", stop, [(0.0, "green")])
    values, mask = perception_targets(scene(lights=[(light, "red")]), 0)
    assert value(values, mask, "light_present") == 1.0
    assert value(values, mask, "light_red") == 1.0
    assert value(values, mask, "light_yellow") == 0.0
    assert value(values, mask, "light_green") == 0.0
    assert value(values, mask, "light_distance") == pytest.approx(40.0, abs=1e-4)
    far = TrafficLight("far", EGO_S + 2.4 + 150.0, [(0.0, "red")])
    values, mask = perception_targets(scene(lights=[(far, "red")]), 0)
    assert value(values, mask, "light_present") == 0.0
    assert not mask[IDX["light_red"]]


def test_lead_at_red_light_episode():
    ep = simulate(make_scenario("lead_at_red_light", 0))
    leads, reds = 0, 0
    for i, frame in enumerate(ep.frames):
        values, mask = perception_targets(ep, i)
        assert np.all(np.isfinite(values))
        rec = frame.decision
        cited = [c for c in rec.long_causes if c.id == "lead"]
        if rec.longitudinal == "lead_obstacle_following" and cited and \
                "lead" in rec.visible:
            leads += 1
            # The expert's lead is the one perceived, at the gap the expert measured.
            assert value(values, mask, "lead_present") == 1.0
            assert value(values, mask, "lead_gap") == pytest.approx(
                cited[0].attrs["distance_m"], abs=1e-3)
            assert value(values, mask, "lead_speed") == pytest.approx(
                cited[0].attrs["speed_mps"], abs=1e-3)
        if mask[IDX["light_red"]] and values[IDX["light_red"]] == 1.0:
            reds += 1
            assert frame.lights[ep.world.lights[0].id] == "red"
            assert 0.0 <= value(values, mask, "light_distance") <= 120.0
    assert leads > 20 and reds > 20
    # Brake lights: the lead flag is the lead snapshot's, and the lead brakes for the light.
    braking = []
    for i, frame in enumerate(ep.frames):
        values, mask = perception_targets(ep, i)
        rec = frame.decision
        if "lead" in rec.visible and any(c.id == "lead" for c in rec.long_causes):
            snap = next(a for a in frame.agents if a.id == "lead")
            assert value(values, mask, "lead_braking") == float(snap.braking)
            braking.append(snap.braking)
    assert any(braking) and not all(braking)
    # The light comes into range and its distance shrinks as the ego drives on (it never
    # backs up), then it is gone once the ego has passed its stop line or stopped before.
    dist = [value(v, m, "light_distance") for v, m in
            (perception_targets(ep, i) for i in range(len(ep.frames)))
            if m[IDX["light_distance"]]]
    assert len(dist) > 20
    assert all(b <= a + 1e-6 for a, b in zip(dist, dist[1:]))
