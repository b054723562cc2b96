"""``alpamayo demo``: the shipped policy drives the simulation bring-up closed loop.

The integration test drives one short held-out scenario through the real processes and
checks the outputs (table, summary, HTML report, MCAP bag); the others check the
episode evaluation and the failure rules on hand-made records.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alpamayo_ros.ros import demo

ROOT = Path(__file__).resolve().parents[1]


def _record(speed_mps: float, seconds: float, accepted: bool) -> demo._Received:
    """A straight drive along the cruise scenario's road start, one plan per second."""
    from alpamayo_ros.data.scenarios import make_scenario
    from alpamayo_ros.sim.ego import ego_pose_from_state
    from alpamayo_ros.trajectory import Trajectory
    from alpamayo_ros.unicycle import NUM_WAYPOINTS

    world = make_scenario("cruise", 9000).world
    start = ego_pose_from_state(world.road, world.ego)
    data = demo._Received()
    t0 = 1_000 * demo.NS_PER_S
    for i in range(int(seconds * 50)):
        stamp = t0 + i * 20_000_000
        d = speed_mps * i * 0.02
        data.odometry.append((stamp, start.x_m + d * np.cos(start.heading_rad),
                              start.y_m + d * np.sin(start.heading_rad), start.heading_rad,
                              speed_mps))
    for k in range(int(seconds)):
        stamp = t0 + k * demo.NS_PER_S
        data.plans[stamp] = Trajectory.from_controls(
            np.zeros(NUM_WAYPOINTS), np.zeros(NUM_WAYPOINTS), speed_mps, stamp_ns=stamp)
        data.statuses.append((stamp + 300_000_000, 0 if accepted else 2,
                              stamp if accepted else 0, () if accepted else ("max_jerk",)))
    return data


def test_an_episode_that_drives_is_evaluated_and_passes() -> None:
    scn = demo.DemoScenario("cruise", 9000, "cruise")
    metrics, expert_collision, report = demo.evaluate_episode(
        scn, _record(10.0, 6.0, accepted=True), 6.0)
    assert metrics["progress_m"] == pytest.approx(59.8, abs=1.0)
    assert metrics["accepted_plans"] == 6 and metrics["rejected_plans"] == 0
    assert not metrics["collision"] and not expert_collision
    assert len(report.plans) == 6 and report.ego_track.shape[1] == 5
    rows = demo.summary_rows([demo.EpisodeResult(scn, metrics, False, report, None, [], 1.0)])
    assert rows[0]["progress"].startswith(f"{metrics['progress_m']:.0f} m (")
    assert rows[0]["collision"] == "none" and rows[0]["off-road"] == "no"
    assert rows[0]["red light"] == "no" and metrics["oncoming_share"] == 0.0
    assert rows[0]["stop sign"] == "no" and metrics["stop_signs"] == []
    assert "| cruise (cruise 9000) |" in demo.summary_markdown(rows)


def test_every_plan_rejected_or_no_progress_fails_loudly() -> None:
    scn = demo.DemoScenario("cruise", 9000, "cruise")
    metrics, expert_collision, _ = demo.evaluate_episode(
        scn, _record(0.0, 4.0, accepted=False), 4.0)
    assert metrics["accepted_plans"] == 0 and metrics["rejected_plans"] == 4
    assert metrics["progress_m"] == pytest.approx(0.0, abs=0.01)
    failures = demo.episode_failures(metrics, expert_collision)
    assert any("every plan (4) was rejected" in f for f in failures)
    assert any("no progress" in f for f in failures)
    assert demo.episode_failures(dict(metrics, plans=0), False)[0] == "no plan arrived"
    collided = dict(metrics, accepted_plans=2, progress_m=50.0, collision=True)
    assert demo.episode_failures(collided, False) == [
        "an at-fault collision where the expert has none"]
    assert demo.episode_failures(collided, True) == []


def test_cause_is_the_clause_after_because() -> None:
    assert demo._cause("I slow down because the light ahead is red. I keep my lane.") == \
        "the light ahead is red"
    assert demo._cause("Stopping for the stop sign") == "Stopping for the stop sign"
    assert demo._cause("The road ahead is clear and the speed limit applies; I go on.",
                       limit=30) == "The road ahead is clear and …"


def test_scenarios_argument_is_validated() -> None:
    assert demo._parse_scenarios(["cut_in:9001"])[0].seed == 9001
    with pytest.raises(ValueError, match="family:seed"):
        demo._parse_scenarios(["nope:1"])


@pytest.mark.ros
def test_demo_drives_a_held_out_scenario_through_the_graph(ros_env, tmp_path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "alpamayo_ros.cli", "demo", "--scenarios", "cruise:9001",
         "--duration", "6", "--out", str(out)],
        env=ros_env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-6000:]
    assert "demo OK" in result.stdout
    assert "[cruise 9001 t=" in result.stdout  # live reasoning lines
    summary = json.loads((out / "summary.json").read_text())
    (scn,) = summary["scenarios"]
    # What "demo OK" requires of the episode (the policy's driving is judged in RESULTS.md).
    assert scn["metrics"]["progress_m"] > 1.0 and scn["metrics"]["accepted_plans"] > 0
    assert not scn["failures"]
    html = (out / "report.html").read_text()
    assert "data:image/" in html and "cruise" in html
    assert (out / "preview.png").stat().st_size > 10_000
    # The bag holds every topic of the graph, readable with the MCAP ROS 2 reader.
    from mcap.reader import make_reader

    (mcap_file,) = Path(scn["bag"]).glob("*.mcap")
    with open(mcap_file, "rb") as f:
        channels = {c.topic for c in make_reader(f).get_summary().channels.values()}
    from alpamayo_ros import topics

    assert {topics.TRAJECTORY, topics.REASONING, topics.CONTROL_COMMAND,
            topics.SAFETY_STATUS, topics.ODOMETRY} <= channels
