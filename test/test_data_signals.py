"""Brake lights and turn indicators: one predicate each, used by expert, snapshots, renderer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from alpamayo_ros.data.cameras import make_rig
from alpamayo_ros.data.expert import Expert, ExpertConfig
from alpamayo_ros.data.mosaic import project_ego_points
from alpamayo_ros.data.render import BRAKE_ON, INDICATOR_ON, SceneRenderer
from alpamayo_ros.data.scenarios import Scenario, make_scenario, simulate
from alpamayo_ros.data.world import (
    BRAKING_MPS2,
    Agent,
    EgoState,
    Road,
    RoadConfig,
    World,
    brake_lights_on,
    indicator,
)
from alpamayo_ros.taxonomy import ComponentType

TELE = {c.name: c for c in make_rig("train_small").cameras}["front_tele"]


def _world(*agents: Agent) -> World:
    road = Road(RoadConfig(segments=[(300.0, 0.0)], num_lanes=2))
    world = World(road, EgoState(10.0, 0.0, 0.0), appearance={"brightness": 1.0})
    world.agents.extend(agents)
    return world


def _render_one(agent: Agent, cam=TELE) -> tuple[np.ndarray, object]:
    """One frame of a world with ``agent`` in front of a stopped ego: (image, snapshot)."""
    scenario = Scenario("custom", 0, _world(agent), Expert(ExpertConfig(set_speed_mps=0.1)),
                        duration_s=0.1)
    ep = simulate(scenario)
    return SceneRenderer(ep).render(0, [cam])[0], ep.frames[0].agents[0]


def _near(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 25) -> np.ndarray:
    return np.all(np.abs(img.astype(int) - np.array(rgb)) <= tol, axis=-1)


def test_brake_predicate_is_the_experts_braking_state():
    world = _world()
    expert = Expert(ExpertConfig(set_speed_mps=14.0))
    cases = [(0.0, 0.0, False), (-0.5, 0.0, False), (BRAKING_MPS2 - 0.01, 0.0, True),
             (0.5, 2.5, True), (-3.0, 0.0, True)]
    for accel, brake_to_stop, on in cases:
        a = Agent("v", "car", 40.0, 0.0, v_mps=8.0, desired_speed_mps=10.0, colour="white",
                  accel_mps2=accel, braking_to_stop=brake_to_stop)
        assert brake_lights_on(a) is on
        assert (expert.describe(world, a).attrs["state"] == "braking") is on
    parked = Agent("p", "car", 40.0, -2.0, mode="static", accel_mps2=-3.0)
    assert not brake_lights_on(parked)


def test_indicator_side_and_threshold():
    a = Agent("c", "car", 40.0, 3.5, v_mps=8.0)
    assert indicator(a) == ""
    a.target_d = 0.0
    assert indicator(a) == "right"  # toward smaller d: to the right of a same-way car
    a.target_d = 7.0
    assert indicator(a) == "left"
    a.target_d = 3.9
    assert indicator(a) == ""  # within the threshold: centring, not changing lanes
    oncoming = Agent("o", "car", 40.0, 3.5, v_mps=8.0, direction=-1, target_d=7.0)
    assert indicator(oncoming) == "right"  # larger d is its own right
    walker = Agent("w", "pedestrian", 40.0, -3.0, mode="across", target_d=5.0)
    assert indicator(walker) == ""


@pytest.mark.parametrize("family,seed", [("follow_lead", 0), ("lead_at_red_light", 1)])
def test_cited_braking_agents_show_brake_lights(family, seed):
    ep = simulate(make_scenario(family, seed))
    cited = 0
    for f in ep.frames:
        snaps = {a.id: a for a in f.agents}
        for c in f.decision.long_causes + f.decision.lat_causes:
            if c.type == ComponentType.CRITICAL_OBJECT and c.attrs["state"] == "braking":
                assert snaps[c.id].braking, (f.time_s, c.id)
                cited += 1
    assert cited > 0
    lead = [next(a for a in f.agents if a.id == "lead") for f in ep.frames]
    assert any(a.braking for a in lead) and not lead[0].braking


def test_cut_in_signals_steadily_from_the_start_of_the_manoeuvre():
    ep = simulate(make_scenario("cut_in", 0))
    car = [next(a for a in f.agents if a.id == "cut_in_car") for f in ep.frames]
    on = [k for k, a in enumerate(car) if a.indicator]
    assert on and {car[k].indicator for k in on} == {"right"}
    assert on == list(range(on[0], on[-1] + 1))  # steady: no blinking between frames
    moving = next(k for k in range(1, len(car)) if car[k].d < car[k - 1].d - 1e-6)
    assert on[0] <= moving  # on no later than the first lateral motion
    assert car[on[0] - 1].d == pytest.approx(3.5)


def test_braking_lead_has_bright_rear_lamps_at_model_resolution():
    def lead(braking: bool) -> Agent:
        return Agent("lead", "car", 55.0, 0.0, v_mps=5.0, desired_speed_mps=5.0,
                     colour="silver", braking_to_stop=3.0 if braking else 0.0)

    img_on, snap_on = _render_one(lead(True))
    img_off, snap_off = _render_one(lead(False))
    assert snap_on.braking and not snap_off.braking
    # Native resolution: lit lamp pixels only on the braking car, at its rear lamps.
    lit_on, lit_off = _near(img_on, BRAKE_ON), _near(img_off, BRAKE_ON)
    assert lit_on.sum() >= 20 and lit_off.sum() == 0
    ys, xs = np.nonzero(lit_on)
    u, v = project_ego_points(TELE, np.array([[45.0 - 2.3, 0.0, 0.62]]))[0]
    assert abs(xs.mean() - u) < 6 and abs(np.median(ys) - v) < 6
    assert (xs < u).any() and (xs > u).any()  # a lamp on each side
    # The default model input (160x96), 45 m ahead: still clearly red.
    small_on = cv2.resize(img_on, (160, 96), interpolation=cv2.INTER_AREA).astype(int)
    small_off = cv2.resize(img_off, (160, 96), interpolation=cv2.INTER_AREA).astype(int)

    def red(im: np.ndarray) -> int:
        return int(np.sum((im[..., 0] > 180) & (im[..., 1] < 110) & (im[..., 2] < 110)))

    assert red(small_on) >= 3 and red(small_off) == 0


@pytest.mark.parametrize("target_d,side", [(3.5, "left"), (-3.5, "right")])
def test_indicator_lamps_on_the_signalling_side(target_d, side):
    car = Agent("lc", "van", 35.0, 0.0, v_mps=5.0, desired_speed_mps=5.0, colour="blue",
                target_d=target_d)
    img, snap = _render_one(car)
    assert snap.indicator == side
    ys, xs = np.nonzero(_near(img, INDICATOR_ON))
    assert len(xs) >= 4
    u = project_ego_points(TELE, np.array([[25.0, 0.0, 0.9]]))[0, 0]
    assert (np.all(xs < u) if side == "left" else np.all(xs > u))
    plain, _ = _render_one(Agent("lc", "van", 35.0, 0.0, v_mps=5.0, colour="blue"))
    assert not _near(plain, INDICATOR_ON).any()


def test_cut_in_car_shows_its_right_indicator_to_the_ego():
    ep = simulate(make_scenario("cut_in", 0, duration_s=4.0))
    k = next(i for i, f in enumerate(ep.frames) if f.agents[0].indicator) + 3
    a, e = ep.frames[k].agents[0], ep.frames[k].ego
    img = SceneRenderer(ep).render(k, [TELE])[0]
    ys, xs = np.nonzero(_near(img, INDICATOR_ON))
    assert len(xs) >= 4
    # The car is ahead on the left; the lit lamps are on its right (the ego's side).
    u = project_ego_points(TELE, np.array([[a.x - e.x, a.y - e.y, 0.6]]))[0, 0]
    assert xs.mean() > u


def test_reasoning_cites_only_what_the_cameras_show():
    from alpamayo_ros.data.expert import Cause
    from alpamayo_ros.data.text import clause
    from alpamayo_ros.taxonomy import Uncertainty

    rng = np.random.default_rng(0)
    events = [Cause(ComponentType.ROAD_EVENT, k, k, Uncertainty.LOW,
                    {"distance_m": d, "speed_mps": 8.0})
              for k in ("curve", "speed_bump", "school_zone", "construction_zone")
              for d in (0.0, 40.0)]
    limit = Cause(ComponentType.ODD_CONSTRAINT, "speed_limit", "speed_limit",
                  Uncertainty.LOW, {"speed_mps": 13.9})
    siren = Cause(ComponentType.CRITICAL_OBJECT, "amb", "vehicle", Uncertainty.HIGH,
                  {"agent_kind": "ambulance", "state": "siren", "where": "behind"})
    for _ in range(30):
        for c in events:  # no sign shows an advisory speed: no km/h in the cause
            assert "km/h" not in clause(c, rng)
        assert "km/h" not in clause(limit, rng) and "posted" not in clause(limit, rng)
        assert "siren" not in clause(siren, rng)  # a camera sees lights, not sound
    # "Emerging from behind a vehicle" only for one that was hidden, not out of range.
    for seed in range(8):
        ep = simulate(make_scenario("crosswalk_yield", seed))
        assert not any(c.attrs.get("emerging") for f in ep.frames
                       for c in f.decision.long_causes)
    ep = simulate(make_scenario("hidden_pedestrian", 0))
    assert any(c.attrs.get("emerging") for f in ep.frames for c in f.decision.long_causes)


@pytest.mark.parametrize("seed,kind", [(0, "school_zone"), (3, "speed_bump")])
def test_speed_bump_and_school_zone_are_drawn(seed, kind):
    ep = simulate(make_scenario("speed_adaptation", seed))
    ev = ep.world.events[0]
    assert ev.kind == kind
    k = min(range(len(ep.frames)), key=lambda j: abs(ev.s_start - ep.frames[j].ego.s - 30.0))
    with_event = SceneRenderer(ep).render(k, [TELE])[0].astype(int)
    ep.world.events = []
    without = SceneRenderer(ep).render(k, [TELE])[0].astype(int)
    changed = np.abs(with_event - without).max(axis=-1) > 30
    assert changed.sum() >= 30
    r, g, b = (with_event[changed].mean(axis=0))
    assert r > b + 40  # red surface / yellow stripes, not grey asphalt
