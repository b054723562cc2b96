"""The sim node as a real process, observed and driven from this process's rclpy node.

7 cameras, camera_info, odometry, obstacles, /clock, diagnostics, closed-loop control.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import numpy as np
import pytest

from alpamayo_ros.data.cameras import make_rig
from test.helpers.ros_harness import Probe, domain_id, start_node_process, stop_process

pytestmark = pytest.mark.ros

CAMERAS = [c.name for c in make_rig("ar1").cameras]


@pytest.fixture
def probe(ros_env, monkeypatch):
    from alpamayo_ros.ros.transport import configure_dds_transport

    for name, value in ros_env.items():
        monkeypatch.setenv(name, value)
    configure_dds_transport()  # large-data profile: 7 raw cameras into this process
    p = Probe(domain_id(ros_env), "alpamayo_sim_test_probe")
    yield p
    p.close()


@pytest.fixture
def sim_process(ros_env, tmp_path):
    log = tmp_path / "sim.log"
    proc = start_node_process(
        "alpamayo_ros.nodes.sim_node",
        ["--params-file", "config/sim.yaml", "-p", "family:=follow_lead", "-p", "seed:=3",
         "-p", "initial_speed_mps:=8.0", "-p", "command_timeout_s:=0.5",
         "-p", "engage_timeout_s:=0.5"],
        ros_env, log)
    yield proc, log
    code = stop_process(proc)
    assert code == 0, f"sim node exited with {code}:\n{log.read_text()}"


def ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def test_sim_node_publishes_the_rig_and_follows_commands(probe, sim_process) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image

    from alpamayo_ros import topics
    from alpamayo_ros.msg import ControlCommand, ObstacleArray
    from alpamayo_ros.ros.qos import clock_qos, latched_qos, plan_qos, sensor_qos

    proc, log = sim_process
    for cam in CAMERAS:
        probe.record(Image, topics.image_topic(cam, False), sensor_qos())
        probe.record(CameraInfo, topics.camera_info_topic(cam), latched_qos())
    probe.record(Odometry, topics.ODOMETRY, sensor_qos())
    probe.record(ObstacleArray, topics.OBSTACLES, plan_qos())
    probe.record(Clock, topics.CLOCK, clock_qos())
    probe.record(DiagnosticArray, topics.DIAGNOSTICS, plan_qos())
    command_pub = probe.node.create_publisher(ControlCommand, topics.CONTROL_COMMAND, plan_qos())

    # 1. Everything arrives; measure 3 s of cameras once they flow.
    front = topics.image_topic(CAMERAS[0], False)
    assert probe.wait_for(lambda: len(probe.messages(front)) >= 3, 30.0, proc, log), \
        log.read_text()
    t0 = time.monotonic()
    time.sleep(3.0)
    t1 = time.monotonic()
    stamps: dict[int, set[str]] = defaultdict(set)
    rates = {}
    for cam in CAMERAS:
        msgs = probe.messages(topics.image_topic(cam, False), since=t0)
        arrivals = [t for t in probe.arrivals(topics.image_topic(cam, False), since=t0)
                    if t <= t1]
        rates[cam] = len(arrivals) / (t1 - t0)
        for m in msgs:
            assert (m.height, m.width, m.encoding, m.header.frame_id) == (280, 448, "rgb8", cam)
            stamps[ns(m.header.stamp)].add(cam)
    assert all(7.0 <= r <= 11.5 for r in rates.values()), rates
    # All cameras of a tick share one stamp, and ticks are 0.1 s of sim time apart.
    complete = sorted(s for s, cams in stamps.items() if cams == set(CAMERAS))
    assert len(complete) >= 0.8 * len(stamps) and len(complete) >= 20, stamps
    assert set(np.diff(complete)) <= {k * 100_000_000 for k in range(1, 4)}
    assert Counter(np.diff(complete))[100_000_000] >= 0.8 * (len(complete) - 1)

    infos = {cam: probe.messages(topics.camera_info_topic(cam)) for cam in CAMERAS}
    assert all(len(v) == 1 for v in infos.values()), {k: len(v) for k, v in infos.items()}
    for cam in make_rig("ar1").cameras:
        info = infos[cam.name][0]
        assert (info.width, info.height, info.header.frame_id) == (448, 280, cam.name)
        np.testing.assert_allclose(np.array(info.k).reshape(3, 3), cam.intrinsics())

    odom = probe.messages(topics.ODOMETRY, since=t0)
    odom_rate = len([t for t in probe.arrivals(topics.ODOMETRY, since=t0) if t <= t1]) / (t1 - t0)
    assert 35.0 <= odom_rate <= 55.0, odom_rate
    assert odom[0].header.frame_id == "map" and odom[0].child_frame_id == "base_link"
    obstacles = probe.messages(topics.OBSTACLES, since=t0)
    assert len(obstacles) >= 20 and obstacles[-1].header.frame_id == "map"
    assert [o.id for o in obstacles[-1].obstacles] == ["lead"]
    clocks = [ns(c.clock) for c in probe.messages(topics.CLOCK, since=t0)]
    assert len(clocks) >= 100 and all(np.diff(clocks) > 0)
    # /clock ticks at the 100 Hz physics rate and the camera stamps are among its ticks
    # (keep-last depth 1: a busy subscriber may miss a few /clock messages).
    assert Counter(np.diff(clocks))[10_000_000] >= 0.8 * (len(clocks) - 1)
    assert all((s - clocks[0]) % 10_000_000 == 0 for s in complete)
    all_clocks = set(ns(c.clock) for c in probe.messages(topics.CLOCK))
    assert sum(s in all_clocks for s in complete) >= 0.8 * len(complete)

    # 2. Nobody drives: after engage_timeout_s the sim brakes (8 m/s start, 2.5 m/s^2).
    speed_now = odom[-1].twist.twist.linear.x
    assert speed_now < 8.0 - 1.0, speed_now

    # 3. A NaN command is ignored (counted in diagnostics), the node keeps running.
    bad = ControlCommand(acceleration=float("nan"), curvature=0.0)
    for _ in range(3):
        command_pub.publish(bad)
        time.sleep(0.05)

    def diag_value(key: str) -> str | None:
        for arr in reversed(probe.messages(topics.DIAGNOSTICS)):
            for st in arr.status:
                if st.name.startswith("alpamayo_sim"):
                    return {kv.key: kv.value for kv in st.values}.get(key)
        return None

    assert probe.wait_for(lambda: int(diag_value("commands_rejected") or 0) >= 1, 5.0, proc,
                          log)
    assert proc.poll() is None

    # 4. Positive acceleration commands make the odometry speed grow at that rate.
    start = probe.messages(topics.ODOMETRY)[-1]
    v0, s0 = start.twist.twist.linear.x, ns(start.header.stamp)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        command_pub.publish(ControlCommand(acceleration=2.0, curvature=0.0))
        time.sleep(0.05)
    last = probe.messages(topics.ODOMETRY)[-1]
    v1, s1 = last.twist.twist.linear.x, ns(last.header.stamp)
    assert v1 > v0 + 2.0, (v0, v1)
    # Commands took effect within a few ticks of arriving: at most ~0.2 s of sim time lost.
    assert v1 - v0 == pytest.approx(2.0 * (s1 - s0) / 1e9, abs=0.5)
    assert diag_value("command_mode") == "command"


def test_sim_node_publishes_the_scenarios_route_command_latched(probe, ros_env, tmp_path) -> None:
    from std_msgs.msg import String

    from alpamayo_ros import topics
    from alpamayo_ros.data.scenarios import make_scenario
    from alpamayo_ros.ros.qos import latched_qos

    log = tmp_path / "sim_turn.log"
    proc = start_node_process(
        "alpamayo_ros.nodes.sim_node",
        ["--params-file", "config/sim.yaml", "-p", "family:=turn", "-p", "seed:=2",
         "-p", "rig:=tiny"], ros_env, log)
    try:
        time.sleep(2.0)  # subscribe late: the command is latched (transient local)
        probe.record(String, topics.NAVIGATION, latched_qos())
        assert probe.wait_for(lambda: probe.messages(topics.NAVIGATION), 30.0, proc, log), \
            log.read_text()
        expected = make_scenario("turn", 2).navigation
        assert expected and [m.data for m in probe.messages(topics.NAVIGATION)] == [expected]
    finally:
        assert stop_process(proc) == 0, log.read_text()
