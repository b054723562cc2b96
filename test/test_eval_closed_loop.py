"""Closed-loop evaluation (alpamayo_ros.eval.closed_loop).

Metrics on hand-built traces, short in-process runs with the monitor on and off, and the
``--closed-loop`` command.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alpamayo_ros.eval import closed_loop as cl
from alpamayo_ros.trajectory import Trajectory
from alpamayo_ros.unicycle import NUM_WAYPOINTS

EGO = (4.8, 2.0)


def _trace(ego: list[tuple[float, float, float, float]], agents: list[list[list[float]]],
           s: list[float] | None = None, off: list[bool] | None = None) -> cl.Trace:
    tr = cl.Trace("cruise", 9000, "hand", ego_size_m=EGO)
    for i, (x, y, h, v) in enumerate(ego):
        arr = np.array(agents[i], dtype=np.float64).reshape(-1, 7)
        tr.add(0.1 * i, x, y, h, v, (s or [x for x, *_ in ego])[i],
               (off or [False] * len(ego))[i], arr, tuple(f"a{j}" for j in range(len(arr))))
    return tr


def test_a_front_collision_is_at_fault_a_rear_end_or_a_stopped_ego_is_not() -> None:
    car = [0.0, 0.0, 0.0, 4.5, 1.8, 0.0, 0.0]
    # Ego drives into a stopped car 10 m ahead.
    ego = [(i * 1.0, 0.0, 0.0, 10.0) for i in range(8)]
    front = _trace(ego, [[[10.0, *car[1:]]]] * 8)
    hits = cl.collisions(front)
    assert len(hits) == 1 and hits[0]["at_fault"] and hits[0]["t_s"] == pytest.approx(0.6)
    # A car from behind runs into the moving ego.
    rear = _trace([(10.0 + i, 0.0, 0.0, 5.0) for i in range(4)],
                  [[[5.0 + 3.0 * i, 0.0, 0.0, 4.5, 1.8, 30.0, 0.0]] for i in range(4)])
    assert cl.collisions(rear) and not any(h["at_fault"] for h in cl.collisions(rear))
    # The stopped ego is hit from the front.
    stopped = _trace([(0.0, 0.0, 0.0, 0.0)] * 4,
                     [[[12.0 - 3.0 * i, 0.0, math.pi, 4.5, 1.8, -30.0, 0.0]] for i in range(4)])
    assert [h["at_fault"] for h in cl.collisions(stopped)] == [False]
    # One overlap lasting several steps is one collision.
    assert len(cl.collisions(_trace([(0.0, 0.0, 0.0, 3.0)] * 5, [[[2.0, *car[1:]]]] * 5))) == 1


def test_close_encounter_needs_an_agent_ahead_within_one_second() -> None:
    still = [0.0, 0.0, 4.5, 1.8, 0.0, 0.0]
    # 10 m/s towards a stopped car 12 m ahead: gaps 12 - 4.65 m = 7.35 m < 10 m in 1 s.
    assert cl.close_encounter(_trace([(0.0, 0.0, 0.0, 10.0)], [[[12.0, *still]]]))
    # 25 m ahead: no overlap within 1 s.
    assert not cl.close_encounter(_trace([(0.0, 0.0, 0.0, 10.0)], [[[25.0, *still]]]))
    # The same car behind the ego does not count; nor in the next lane.
    assert not cl.close_encounter(_trace([(0.0, 0.0, 0.0, 10.0)], [[[-12.0, *still]]]))
    assert not cl.close_encounter(_trace([(0.0, 0.0, 0.0, 10.0)], [[[12.0, 3.7, *still[1:]]]]))


def test_comfort_of_the_executed_motion() -> None:
    smooth = [(i * 1.0, 0.0, 0.0, 10.0 + 0.1 * i) for i in range(30)]  # +1 m/s^2
    ok, broken = cl.motion_comfort(_trace(smooth, [[]] * 30))
    assert ok and broken == {}
    hard = [(i * 1.0, 0.0, 0.0, 10.0 - (0.8 * i if i > 15 else 0.0)) for i in range(30)]
    ok, broken = cl.motion_comfort(_trace(hard, [[]] * 30))  # -8 m/s^2 stop, jerk 80
    assert not ok and {"min_longitudinal_accel_mps2", "longitudinal_jerk_mps3"} <= set(broken)


def test_pdm_score_and_progress_ratio() -> None:
    assert cl.pdm_score(False, False, 1.0, False, True) == 1.0
    assert cl.pdm_score(True, False, 1.0, False, True) == 0.0
    assert cl.pdm_score(False, True, 1.0, False, True) == 0.0
    assert cl.pdm_score(False, False, 0.5, True, False) == pytest.approx(2.5 / 12)
    ego = [(i * 1.0, 0.0, 0.0, 10.0) for i in range(11)]
    m = cl.scenario_metrics(_trace(ego, [[]] * 11), expert_progress_m=20.0)
    assert m["progress_m"] == 10.0 and m["progress_ratio"] == 0.5
    assert cl.scenario_metrics(_trace(ego, [[]] * 11), 5.0)["progress_ratio"] == 1.0
    off = cl.scenario_metrics(_trace(ego, [[]] * 11, off=[False] * 10 + [True]), 10.0)
    assert off["off_road"] and off["pdm_score"] == 0.0


class _IntoTheLead:
    """Accelerates hard at every tick: a plan the safety monitor must refuse."""

    name, description = "reckless", "full throttle"

    def plan(self, request: cl.PlanRequest) -> cl.PlanResult:
        v0 = float(request.history.pose.speed_mps)
        return cl.PlanResult(Trajectory.from_controls(
            np.full(NUM_WAYPOINTS, 3.0), np.zeros(NUM_WAYPOINTS), v0,
            stamp_ns=request.stamp_ns, frame_id="base_link", model_id="reckless"))


def test_the_monitor_refuses_a_reckless_planner_that_runs_unchecked_without_it() -> None:
    cfg = cl.ClosedLoopConfig(families=("follow_lead",), seeds=(9000,), duration_s=12.0,
                              rig="tiny")
    checked = cl.run_planner(_IntoTheLead(), "follow_lead", 9000, cfg, monitor=True)
    unchecked = cl.run_planner(_IntoTheLead(), "follow_lead", 9000, cfg, monitor=False)
    assert checked.rejected_plans > 0 and unchecked.rejected_plans == 0
    assert len(checked.plans) == len(unchecked.plans) >= 20  # 2 Hz over 12 s
    # The unchecked ego goes faster than the monitored one.
    assert unchecked.ego[-1][3] > checked.ego[-1][3] + 1.0
    assert checked.fallback_cycles > 0
    assert checked.engaged_at_s == unchecked.engaged_at_s == pytest.approx(0.7)


class _Refused(_IntoTheLead):
    """Every plan jerks far past the jerk bound: the monitor refuses each one."""

    name = "refused"

    def plan(self, request: cl.PlanRequest) -> cl.PlanResult:
        v0 = float(request.history.pose.speed_mps)
        return cl.PlanResult(Trajectory.from_controls(
            np.resize([2.0, -2.0], NUM_WAYPOINTS), np.zeros(NUM_WAYPOINTS), v0,
            stamp_ns=request.stamp_ns, frame_id="base_link", model_id="refused"))


def test_a_planner_never_adopted_never_engages_and_the_driver_brakes() -> None:
    cfg = cl.ClosedLoopConfig(families=("cruise",), seeds=(9000,), duration_s=5.0,
                              rig="tiny", engage_timeout_s=2.0)
    trace = cl.run_planner(_Refused(), "cruise", 9000, cfg)
    assert trace.rejected_plans == len(trace.plans) > 0 and trace.engaged_at_s is None
    speeds = [e[3] for e in trace.ego]
    assert speeds[19] == pytest.approx(speeds[0])  # the driver held the start speed 2 s
    assert speeds[-1] < speeds[0] - 4.0  # then braked (2.5 m/s^2 for 3 s)


def test_constant_velocity_run_records_a_10_hz_trace_and_drives() -> None:
    cfg = cl.ClosedLoopConfig(families=("cruise",), seeds=(9000,), duration_s=4.0,
                              rig="tiny")
    trace = cl.run_planner(cl.ConstantVelocityPlanner(), "cruise", 9000, cfg)
    assert len(trace.t_s) == 40 and trace.t_s[1] == pytest.approx(0.1)
    assert len(trace.plans) == 7  # ticks at 0.5 ... 3.5 s, delivered 0.2 s later
    m = cl.scenario_metrics(trace, cl.scenario_metrics(cl.expert_trace("cruise", 9000, cfg),
                                                       None)["progress_m"])
    assert m["progress_m"] > 20.0 and not m["collision"] and not m["off_road"]
    assert m["rejected_plans"] == 0
    # engaged by the first plan's first command (0.5 s + 0.2 s latency); the driver held
    # the start speed until then instead of the controller's minimal-risk stop
    assert m["engaged_at_s"] == pytest.approx(0.7)
    assert trace.ego[7][3] == pytest.approx(trace.ego[0][3], abs=1e-6)


def test_red_light_counts_a_front_bumper_crossing_the_stop_line_on_red_only() -> None:
    # stop line at s = 52.4: the front bumper (centre + 2.4 m) crosses it between the
    # samples at s = 49.5 and 50.5 (t = 0.1 s)
    light = ("tl0", 52.4, [(0.0, "red"), (5.0, "green")])
    tr = _trace([(49.5, 0, 0, 10), (50.5, 0, 0, 10), (51.5, 0, 0, 10)], [[], [], []])
    tr.lights = [light]
    assert cl.red_light_violations(tr) == [{"t_s": 0.1, "light": "tl0"}]
    assert cl.scenario_metrics(tr, None)["red_light"]
    tr.lights = [("tl0", 52.4, [(0.0, "green")])]  # green: no violation
    assert cl.red_light_violations(tr) == []
    tr.lights = [("tl0", 52.4, [(0.0, "yellow")])]  # yellow: not counted
    assert cl.red_light_violations(tr) == []
    stopped = _trace([(49.5, 0, 0, 0), (49.6, 0, 0, 0)], [[], []])  # stopped before it
    stopped.lights = [light]
    assert cl.red_light_violations(stopped) == []
    assert cl.light_colour(light[2], 4.99) == "red" and cl.light_colour(light[2], 5.0) == "green"


def test_stop_sign_needs_a_stop_in_the_zone_before_its_line() -> None:
    # stop line at s = 52.4; the front bumper is at centre + 2.4 m
    rolling = _trace([(40.0, 0, 0, 10), (45.0, 0, 0, 5), (49.5, 0, 0, 2), (50.5, 0, 0, 2)],
                     [[]] * 4)
    rolling.stop_signs = [("stop_sign", 52.4)]
    assert cl.stop_sign_violations(rolling) == [{"t_s": 0.3, "sign": "stop_sign",
                                                 "speed_mps": 2.0}]  # slowed, never stood
    assert cl.scenario_metrics(rolling, None)["stop_sign"]
    # stood at 46 m (bumper 48.4 m, inside the 10 m zone), then went through: fine
    stopped = _trace([(40.0, 0, 0, 10), (46.0, 0, 0, 0.0), (46.0, 0, 0, 0.3),
                      (50.5, 0, 0, 3)], [[]] * 4)
    stopped.stop_signs = [("stop_sign", 52.4)]
    assert cl.stop_sign_violations(stopped) == []
    # stood 30 m before the line (outside the zone), then rolled through: a violation
    early = _trace([(20.0, 0, 0, 0.0), (30.0, 0, 0, 8), (49.5, 0, 0, 8), (50.5, 0, 0, 8)],
                   [[]] * 4)
    early.stop_signs = [("stop_sign", 52.4)]
    assert len(cl.stop_sign_violations(early)) == 1
    # never reaches the line: nothing to judge
    short = _trace([(40.0, 0, 0, 5), (45.0, 0, 0, 5)], [[]] * 2)
    short.stop_signs = [("stop_sign", 52.4)]
    assert cl.stop_sign_violations(short) == []


def test_the_expert_stops_at_its_stop_sign() -> None:
    cfg = cl.ClosedLoopConfig(families=("stop_sign",), seeds=(9000,), rig="tiny")
    expert = cl.expert_trace("stop_sign", 9000, cfg)
    assert expert.stop_signs and cl.stop_sign_violations(expert) == []


def test_oncoming_share_and_the_expert_stops_at_red_lights() -> None:
    tr = _trace([(0, 0, 0, 10)] * 4, [[]] * 4)
    tr.oncoming = [False, True, True, False]
    assert cl.scenario_metrics(tr, None)["oncoming_share"] == 0.5
    cfg = cl.ClosedLoopConfig(families=("red_light",), seeds=(9000,), rig="tiny")
    expert = cl.expert_trace("red_light", 9000, cfg)
    assert expert.lights, "the red_light family has a light"
    m = cl.scenario_metrics(expert, None)
    assert not m["red_light"] and m["oncoming_share"] == 0.0
    # the same run with the light's red phase moved to when the expert passed: counted
    line = expert.lights[0][1]
    k = next(i for i, s in enumerate(expert.s_m) if s + EGO[0] / 2 >= line)
    t = expert.t_s[k]
    expert.lights = [(expert.lights[0][0], line, [(0.0, "green"), (t - 0.5, "red")])]
    assert cl.scenario_metrics(expert, None)["red_light"]


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="families"):
        cl.ClosedLoopConfig(families=("nope",))
    with pytest.raises(ValueError, match="plan_latency_s"):
        cl.ClosedLoopConfig(plan_latency_s=0.9)
    with pytest.raises(ValueError, match="policy_rate_hz"):
        cl.ClosedLoopConfig(policy_rate_hz=0.0)


def test_closed_loop_command_with_a_tiny_policy(tmp_path, capsys) -> None:
    from alpamayo_ros.cli import main
    from alpamayo_ros.model.policy import Policy

    weights = tmp_path / "tiny"
    policy = Policy.from_config("tiny", device="cpu")
    policy.save_pretrained(weights)
    rc = main(["eval", "--closed-loop", "--weights", str(weights), "--families", "cruise",
               "--seeds", "9000", "--duration", "2", "--max-reasoning-tokens", "8",
               "--rows", "model", "constant_velocity", "expert", "--no-progress",
               "--out", str(tmp_path / "out")])
    assert rc == 0
    results = json.loads((tmp_path / "out" / "closed_loop.json").read_text())
    names = [r["name"] for r in results["rows"]]
    assert names == ["model", "constant velocity", "expert"]
    model = results["rows"][0]
    assert model["metrics"]["scenarios"] == 1 and model["scenarios"][0]["plans"] == 3
    assert results["rows"][2]["metrics"]["progress_ratio"] == 1.0
    assert "| model |" in (tmp_path / "out" / "closed_loop.md").read_text()
