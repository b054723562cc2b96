"""Controller node as a real process: 50 Hz commands and fault injection over topics.

The test process publishes odometry, obstacles and trajectories and records
``ControlCommand`` and ``SafetyStatus``. Injected faults: a plan with a jerk spike, a plan
with NaN, a plan on a collision course and a policy that goes silent. Each time the
controller must reject (never execute) and fall back within one control cycle of the
event reaching it; "one cycle" is checked as the first fallback status stamped no later
than one period (20 ms) plus a delivery allowance after the event was published.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from test.helpers.ros_harness import (
    Probe,
    SyntheticSensors,
    domain_id,
    start_node_process,
    stop_process,
)

pytestmark = pytest.mark.ros

PERIOD_S = 1.0 / 50.0
DELIVERY_ALLOWANCE_S = 0.08  # DDS delivery + scheduling on a loaded 2-core machine
SPEED_MPS = 8.0
POLICY_TIMEOUT_S = 1.0


def _stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


@pytest.fixture(scope="module")
def controller(ros_env, tmp_path_factory):
    from alpamayo_ros import topics
    from alpamayo_ros.msg import ControlCommand, SafetyStatus
    from alpamayo_ros.ros.qos import plan_qos

    log = Path(tmp_path_factory.mktemp("controller")) / "controller.log"
    proc = start_node_process(
        "alpamayo_ros.nodes.controller_node",
        # obstacles are published once, by one test; their timeout (a soft stop once they
        # stop arriving) is tested in test_faults_controller.py
        ["--params-file", "config/safety.yaml", "-p", f"policy_timeout_s:={POLICY_TIMEOUT_S}",
         "-p", "obstacles_timeout_s:=1000.0"],
        ros_env, log)
    probe = Probe(domain_id(ros_env))
    probe.record(ControlCommand, topics.CONTROL_COMMAND, plan_qos())
    probe.record(SafetyStatus, topics.SAFETY_STATUS, plan_qos())
    sensors = SyntheticSensors(probe, cameras=[], speed_mps=SPEED_MPS)
    try:
        assert probe.wait_for(lambda: len(probe.messages(topics.SAFETY_STATUS)) > 5, 30.0,
                              proc, log), f"no SafetyStatus:\n{log.read_text()}"
        yield probe, sensors, proc, log
    finally:
        probe.close()
        stop_process(proc)


def _plan_msg(probe: Probe, accel: np.ndarray, curvature: np.ndarray, stamp_ns: int):
    from alpamayo_ros.ros.conversions import trajectory_to_msg
    from alpamayo_ros.trajectory import Trajectory

    plan = Trajectory.from_controls(accel, curvature, SPEED_MPS, stamp_ns=stamp_ns,
                                    frame_id="base_link", model_id="test")
    return trajectory_to_msg(plan)


class Publisher:
    """Trajectory and obstacle publishers on the probe."""

    def __init__(self, probe: Probe) -> None:
        from alpamayo_ros import topics
        from alpamayo_ros.msg import ObstacleArray
        from alpamayo_ros.msg import Trajectory as TrajectoryMsg
        from alpamayo_ros.ros.qos import plan_qos

        self.probe = probe
        self.plans = probe.node.create_publisher(TrajectoryMsg, topics.TRAJECTORY, plan_qos())
        self.obstacles = probe.node.create_publisher(ObstacleArray, topics.OBSTACLES,
                                                     plan_qos())

    def now_ns(self) -> int:
        return self.probe.node.get_clock().now().nanoseconds

    def good_plan(self) -> int:
        """A smooth constant-speed straight plan stamped now; returns its stamp."""
        stamp = self.now_ns()
        self.plans.publish(_plan_msg(self.probe, np.zeros(64), np.zeros(64), stamp))
        return stamp

    def plan(self, accel: np.ndarray, curvature: np.ndarray) -> int:
        stamp = self.now_ns()
        self.plans.publish(_plan_msg(self.probe, accel, curvature, stamp))
        return stamp


_PUBLISHERS: dict[int, Publisher] = {}


def publisher(probe: Probe) -> Publisher:
    if id(probe) not in _PUBLISHERS:
        _PUBLISHERS[id(probe)] = Publisher(probe)
        time.sleep(0.5)  # discovery
    return _PUBLISHERS[id(probe)]


def _settle_ok(probe: Probe, pub: Publisher, proc, log) -> int:
    """Feed good plans until the controller follows one (state OK)."""
    from alpamayo_ros import topics

    stamp = 0

    def following() -> bool:
        nonlocal stamp
        stamp = pub.good_plan()
        time.sleep(0.1)
        statuses = probe.messages(topics.SAFETY_STATUS)
        return bool(statuses) and statuses[-1].state == 0 and \
            _stamp_ns(statuses[-1].active_plan_stamp) > 0
    assert probe.wait_for(following, 15.0, proc, log), \
        f"controller never reached OK: {probe.messages(topics.SAFETY_STATUS)[-1].reason}"
    return stamp


def _first_status_after(probe: Probe, since_ns: int, state: int):
    from alpamayo_ros import topics

    for status in probe.messages(topics.SAFETY_STATUS):
        if _stamp_ns(status.header.stamp) >= since_ns and status.state == state:
            return status
    return None


def _inject_and_check(controller, make_bad, expected_check: str) -> float:
    """Publish a bad plan after a good one; return the fallback latency (s)."""
    from alpamayo_ros import topics

    probe, _, proc, log = controller
    pub = publisher(probe)
    good = _settle_ok(probe, pub, proc, log)
    bad_stamp = make_bad(pub)
    assert probe.wait_for(lambda: _first_status_after(probe, bad_stamp, 1) is not None,
                          5.0, proc, log), "no DEGRADED status after the bad plan"
    status = _first_status_after(probe, bad_stamp, 1)
    assert expected_check in list(status.failed_checks), status.failed_checks
    latency_s = (_stamp_ns(status.header.stamp) - bad_stamp) / 1e9
    print(f"fallback latency {expected_check}: {latency_s * 1e3:.1f} ms")
    assert latency_s <= PERIOD_S + DELIVERY_ALLOWANCE_S, latency_s
    # The bad plan is never executed: no command carries its stamp, the last valid
    # plan stays the one being followed, under a soft stop.
    time.sleep(0.2)
    commands = probe.messages(topics.CONTROL_COMMAND)
    assert all(_stamp_ns(c.plan_stamp) != bad_stamp for c in commands)
    later = [c for c in commands if _stamp_ns(c.header.stamp) > _stamp_ns(status.header.stamp)]
    assert later and all(c.source == 1 for c in later)  # SOURCE_SOFT_STOP
    assert all(_stamp_ns(c.plan_stamp) == good for c in later)
    return latency_s


def test_commands_are_published_at_50_hz(controller) -> None:
    from alpamayo_ros import topics

    probe, *_ = controller
    start = time.monotonic() + 0.5
    time.sleep(3.5)
    for topic in (topics.CONTROL_COMMAND, topics.SAFETY_STATUS):
        msgs = probe.messages(topic, since=start)
        stamps = [_stamp_ns(m.header.stamp) for m in msgs]
        span_s = (stamps[-1] - stamps[0]) / 1e9
        assert span_s > 2.0
        # one message per 20 ms cycle: rate from the node's stamps, and no cycle missing
        assert 49.0 <= (len(stamps) - 1) / span_s <= 51.0, (topic, len(stamps), span_s)
        assert max(np.diff(stamps)) <= 1.5 * PERIOD_S * 1e9


def test_every_thread_of_the_controller_runs_at_its_process_nice(controller) -> None:
    import os

    from alpamayo_ros.control import ControllerConfig
    from alpamayo_ros.ros.lifetime import process_nices

    _, _, proc, log = controller
    nices = process_nices(proc.pid)
    assert len(nices) > 1  # the main thread and rclpy's DDS threads
    wanted = ControllerConfig().process_nice
    if not wanted:  # 0: the node keeps what it inherited from this process
        assert set(nices.values()) == {os.getpriority(os.PRIO_PROCESS, 0)}, nices
    elif os.geteuid() == 0:  # allowed to lower it
        assert set(nices.values()) == {wanted}, nices
    else:
        assert f"could not set nice {wanted}" in log.read_text()


def test_jerk_spike_is_rejected_within_one_cycle(controller) -> None:
    accel = np.zeros(64)
    accel[20:] = 3.0  # a 3 m/s^2 step in one 0.1 s step: 30 m/s^3
    _inject_and_check(controller, lambda pub: pub.plan(accel, np.zeros(64)),
                      "max_longitudinal_jerk_mps3")


def test_nan_plan_is_rejected_within_one_cycle(controller) -> None:
    accel = np.zeros(64)
    accel[10] = np.nan
    _inject_and_check(controller, lambda pub: pub.plan(accel, np.zeros(64)), "nonfinite_values")


def test_collision_course_is_rejected_within_one_cycle(controller) -> None:
    from alpamayo_ros.msg import Obstacle as ObstacleMsg
    from alpamayo_ros.msg import ObstacleArray
    from alpamayo_ros.ros.conversions import time_from_ns
    from alpamayo_ros.trajectory import Trajectory

    probe, sensors, *_ = controller
    publisher(probe)
    curve = np.full(64, 0.04)
    swerve = Trajectory.from_controls(np.zeros(64), curve, SPEED_MPS)
    target = 15  # the obstacle sits where the swerving plan is at 1.6 s

    def bad(p: Publisher) -> int:
        stamp = p.now_ns()
        ego_x = sensors.position_at_ns(stamp)
        obstacle = ObstacleMsg(id="parked_van", classification=ObstacleMsg.CLASS_VEHICLE)
        obstacle.pose.position.x = ego_x + float(swerve.x_m[target])
        obstacle.pose.position.y = float(swerve.y_m[target])
        obstacle.pose.orientation.w = 1.0
        obstacle.size.x, obstacle.size.y, obstacle.size.z = 4.5, 2.0, 2.0
        array = ObstacleArray(obstacles=[obstacle])
        array.header.stamp, array.header.frame_id = time_from_ns(stamp), "map"
        p.obstacles.publish(array)
        time.sleep(0.2)  # the straight plan being followed stays clear of it
        return p.plan(np.zeros(64), curve)

    _inject_and_check(controller, bad, "min_time_to_collision_s")


def test_silent_policy_triggers_minimal_risk_stop_within_one_cycle(controller) -> None:
    from alpamayo_ros import topics

    probe, _, proc, log = controller
    pub = publisher(probe)
    last = _settle_ok(probe, pub, proc, log)
    deadline_ns = last + int(POLICY_TIMEOUT_S * 1e9)
    assert probe.wait_for(lambda: _first_status_after(probe, last, 2) is not None,
                          POLICY_TIMEOUT_S + 3.0, proc, log), "no FALLBACK after silence"
    status = _first_status_after(probe, last, 2)
    late_s = (_stamp_ns(status.header.stamp) - deadline_ns) / 1e9
    print(f"minimal-risk stop {late_s * 1e3:.1f} ms after the timeout")
    assert -0.01 <= late_s <= PERIOD_S + DELIVERY_ALLOWANCE_S, late_s
    assert status.policy_silence_s >= POLICY_TIMEOUT_S
    time.sleep(0.2)
    later = [c for c in probe.messages(topics.CONTROL_COMMAND)
             if _stamp_ns(c.header.stamp) > _stamp_ns(status.header.stamp)]
    assert later and all(c.source == 2 for c in later)  # SOURCE_MINIMAL_RISK_STOP
    # jerk-limited: acceleration moves toward -2.5 m/s^2 by at most 1.5 m/s^3 * dt
    accels = [c.acceleration for c in later]
    assert all(abs(b - a) <= 1.5 * 0.05 + 1e-6 for a, b in zip(accels, accels[1:]))


def test_the_controller_sends_over_udp_only(controller) -> None:
    """No shared-memory segment in the controller process.

    A Fast DDS shared-memory send can sleep 333 ms when another process restarts
    (alpamayo_ros/ros/transport.py).
    """
    _, _, proc, _ = controller
    if not Path("/proc/self/maps").is_file():
        pytest.skip("needs Linux /proc")
    mine = Path("/proc/self/maps").read_text()  # the probe here uses shared memory
    assert "/dev/shm/fastdds" in mine
    assert "/dev/shm/fastdds" not in Path(f"/proc/{proc.pid}/maps").read_text()
