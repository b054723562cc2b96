"""TF with the real tf2_ros: the simulator's frames and the policy's TF calibration.

- The sim node broadcasts ``map -> base_link`` (the ego pose, at odometry rate, stamped
  like the odometry) and static ``base_link -> <camera>``; a tf2 listener in the test
  process looks up ``map -> front_wide`` at odometry stamps and compares it with the
  odometry pose composed with the rig's mounting. The test steers the ego on a circle
  (constant curvature commands) so that the heading, and with it the rotation, changes.
  Every frame that RViz shows (rviz/alpamayo.rviz) resolves to its fixed frame ``map``.
- The policy node, given a ``camera_rig`` rig.json and a TF calibration that differs from
  it, hands the model TF's mounting (read back from its diagnostics, which report what the
  runner holds), falls back to the rig for cameras without a TF frame and says so.

The node tests are skipped where tf2_ros is not importable (it is not on PyPI;
../shared/ros2-upstream has it); the message builders are checked everywhere.
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from test.helpers.ros_harness import (
    Probe,
    SyntheticSensors,
    domain_id,
    start_node_process,
    stop_process,
)

pytestmark = pytest.mark.ros
needs_tf2 = pytest.mark.skipif(
    importlib.util.find_spec("tf2_ros") is None,
    reason="tf2_ros is not importable (ROS 2 package absent from the pip wheels; see "
    "../shared/ros2-upstream)")

ROOT = Path(__file__).resolve().parents[1]
AR1 = ["front_wide", "front_tele", "cross_left", "cross_right", "rear_left", "rear_right",
       "rear_tele"]


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _matrix(transform) -> np.ndarray:
    from alpamayo_ros.calibration import transform_to_matrix

    t, r = transform.translation, transform.rotation
    return transform_to_matrix((t.x, t.y, t.z), (r.x, r.y, r.z, r.w))


def _listener(probe: Probe):
    import tf2_ros

    buffer = tf2_ros.Buffer()
    listener = tf2_ros.TransformListener(buffer, probe.node)
    return buffer, listener


def test_transform_and_scene_marker_messages() -> None:
    from alpamayo_ros.calibration import ego_pose_matrix
    from alpamayo_ros.nodes.sim_node import ego_transform_msg, scene_markers, transform_msg
    from alpamayo_ros.sim import EgoPose, ObstacleState

    msg = ego_transform_msg(EgoPose(12.0, -3.0, 0.7, 5.0), 1_500_000_000)
    assert (msg.header.frame_id, msg.child_frame_id) == ("map", "base_link")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_000)
    assert np.allclose(_matrix(msg.transform), ego_pose_matrix(12.0, -3.0, 0.7))
    mount = np.array([[0.0, 0.0, 1.0, 1.6], [-1.0, 0.0, 0.0, 0.1], [0.0, -1.0, 0.0, 1.5],
                      [0.0, 0.0, 0.0, 1.0]])  # optical axes looking forward
    msg = transform_msg(mount, "base_link", "front_wide", 0)
    assert msg.child_frame_id == "front_wide" and np.allclose(_matrix(msg.transform), mount)
    obstacle = ObstacleState("car_1", "car", 1, 20.0, 3.5, 0.75, 0.1, 4.5, 1.8, 1.5, 8.0, 0.0)
    markers = scene_markers([obstacle], (4.8, 1.9, 1.5), 2_000_000_000).markers
    assert markers[0].action == markers[0].DELETEALL  # vanished obstacles disappear
    box, ego = markers[1], markers[2]
    assert box.header.frame_id == "map" and box.text == "car_1"
    assert (box.pose.position.x, box.pose.position.y, box.scale.x) == (20.0, 3.5, 4.5)
    assert ego.header.frame_id == "base_link" and ego.scale.x == 4.8
    assert ego.pose.position.z == pytest.approx(0.75)  # sits on the ground


@needs_tf2
def test_sim_broadcasts_the_ego_pose_and_the_rig_as_tf(ros_env, tmp_path) -> None:
    from nav_msgs.msg import Odometry
    from rclpy.time import Time
    from visualization_msgs.msg import MarkerArray

    from alpamayo_ros import topics
    from alpamayo_ros.calibration import ego_pose_matrix
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.inference.config import PolicyNodeConfig
    from alpamayo_ros.msg import ControlCommand, ObstacleArray
    from alpamayo_ros.ros.conversions import yaw_from_quaternion
    from alpamayo_ros.ros.qos import plan_qos, sensor_qos

    log = Path(tmp_path) / "sim.log"
    proc = start_node_process(
        "alpamayo_ros.nodes.sim_node",
        ["-p", "rig:=tiny", "-p", "publish_clock:=false", "-p", "family:=cruise"], ros_env, log)
    probe = Probe(domain_id(ros_env))
    try:
        probe.record(Odometry, topics.ODOMETRY, sensor_qos())
        probe.record(ObstacleArray, topics.OBSTACLES, plan_qos())
        probe.record(MarkerArray, topics.SIM_MARKERS, plan_qos())
        buffer, _listener_keepalive = _listener(probe)
        steer = probe.node.create_publisher(ControlCommand, topics.CONTROL_COMMAND, plan_qos())
        probe.node.create_timer(0.05, lambda: steer.publish(
            ControlCommand(acceleration=0.0, curvature=0.05)))  # a 20 m radius circle

        def looked_up() -> bool:
            return buffer.can_transform("map", "front_wide", Time())

        assert probe.wait_for(looked_up, 30.0, proc, log), log.read_text()
        time.sleep(2.0)  # the ego turns; odometry and TF of the same ticks arrive
        rig = {c.name: c.geometry().camera_to_ego for c in make_rig("tiny").cameras}
        # static mounting of every rig camera
        for name, cam_to_ego in rig.items():
            tf = buffer.lookup_transform("base_link", name, Time()).transform
            assert np.allclose(_matrix(tf), cam_to_ego, atol=1e-9), name
        # map -> front_wide at odometry stamps: the ego pose composed with the mounting
        odoms = probe.messages(topics.ODOMETRY)[-30:-5]  # inside the buffer, already sent
        assert len(odoms) >= 10
        checked = 0
        for odom in odoms:
            stamp = Time(nanoseconds=_ns(odom.header.stamp))
            if not buffer.can_transform("map", "front_wide", stamp):
                continue  # a TF message lost (best effort is not used for /tf, but be fair)
            got = _matrix(buffer.lookup_transform("map", "front_wide", stamp).transform)
            p = odom.pose.pose
            ego = ego_pose_matrix(p.position.x, p.position.y,
                                  yaw_from_quaternion(p.orientation))
            assert np.allclose(got, ego @ rig["front_wide"], atol=1e-6)
            checked += 1
        assert checked >= len(odoms) - 2
        moved = odoms[-1].pose.pose.position.x - odoms[0].pose.pose.position.x
        assert abs(moved) > 0.5  # the ego drives: the dynamic transform really changes
        turned = (yaw_from_quaternion(odoms[-1].pose.pose.orientation)
                  - yaw_from_quaternion(odoms[0].pose.pose.orientation))
        assert abs(turned) > 0.05  # ... and turns: the rotation is checked too

        # RViz's fixed frame reaches every frame it draws, at the messages' own stamps
        fixed = yaml.safe_load((ROOT / "rviz" / "alpamayo.rviz").read_text())[
            "Visualization Manager"]["Global Options"]["Fixed Frame"]
        assert fixed == "map"
        stamp = odoms[-1].header.stamp  # plans are stamped with camera = odometry times
        drawn = [(PolicyNodeConfig().frame_id, stamp), (odoms[-1].header.frame_id, stamp),
                 (probe.messages(topics.OBSTACLES)[-1].header.frame_id, stamp)]
        drawn += [(m.header.frame_id, m.header.stamp)
                  for m in probe.messages(topics.SIM_MARKERS)[-3].markers]
        assert {frame for frame, _ in drawn} == {"map", "base_link"}
        for frame, at in drawn:
            assert buffer.can_transform(fixed, frame, Time.from_msg(at)), (frame, at)
    finally:
        probe.close()
        assert stop_process(proc) == 0, log.read_text()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from alpamayo_ros.model.policy import Policy

    out = tmp_path_factory.mktemp("weights") / "tiny"
    Policy.from_config("tiny", device="cpu").save_pretrained(out)
    return out


def _extrinsics_status(probe: Probe, since: float):
    from alpamayo_ros import topics

    found = None
    for array in probe.messages(topics.DIAGNOSTICS, since):
        for status in array.status:
            if status.name.endswith(": camera extrinsics"):
                found = status
    return found


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@needs_tf2
def test_policy_uses_the_tf_calibration_over_its_rig_json(ros_env, tiny_weights,
                                                          tmp_path) -> None:
    import tf2_ros
    from diagnostic_msgs.msg import DiagnosticArray

    from alpamayo_ros import topics
    from alpamayo_ros.calibration import matrix_to_transform, transform_to_matrix
    from alpamayo_ros.data.bag import write_rig_json
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.nodes.sim_node import transform_msg

    rig = make_rig("ar1")
    rig_json = Path(tmp_path) / "rig.json"
    write_rig_json(rig, rig_json)
    rig_mount = {c.name: c.geometry().camera_to_ego for c in rig.cameras}
    # This vehicle's front_wide sits 0.4 m further forward, 0.1 m left, yawed 2 degrees.
    yaw = math.radians(2.0)
    shift = transform_to_matrix((0.4, 0.1, 0.0), (0.0, 0.0, math.sin(yaw / 2),
                                                 math.cos(yaw / 2)))
    calibrated = shift @ rig_mount["front_wide"]

    log = Path(tmp_path) / "policy.log"
    proc = start_node_process(
        "alpamayo_ros.nodes.policy_node",
        ["--params-file", "config/sync.yaml", "--params-file", "config/policy.yaml",
         "-p", f"weights_dir:={tiny_weights}", "-p", "device:=cpu", "-p", "rate_hz:=2.0",
         "-p", "reasoning:=false", "-p", f"camera_rig:={rig_json}",
         "-p", "diagnostics_period_s:=0.5"], ros_env, log)
    probe = Probe(domain_id(ros_env))
    try:
        probe.record(DiagnosticArray, topics.DIAGNOSTICS, 10)
        SyntheticSensors(probe, AR1)
        static = tf2_ros.StaticTransformBroadcaster(probe.node)
        static.sendTransform([transform_msg(calibrated, "base_link", "front_wide", 0)])

        def front_from_tf() -> bool:
            status = _extrinsics_status(probe, 0.0)
            return status is not None and _values(status)["front_wide/source"] == "tf"

        assert probe.wait_for(front_from_tf, 90.0, proc, log), log.read_text()
        status = _extrinsics_status(probe, time.monotonic() - 0.1) or _extrinsics_status(
            probe, 0.0)
        values = _values(status)
        (x, y, z), q = matrix_to_transform(calibrated)
        got_t = [float(v) for v in values["front_wide/translation_m"].split()]
        got_q = [float(v) for v in values["front_wide/rotation_xyzw"].split()]
        assert got_t == pytest.approx([x, y, z], abs=1e-4)
        assert got_q == pytest.approx(list(q), abs=1e-5)
        rig_t, _ = matrix_to_transform(rig_mount["front_wide"])
        assert abs(got_t[0] - rig_t[0]) > 0.3  # really not the rig.json's
        # the other model cameras have no TF frame: rig.json's, and the status says so
        for cam in ("cross_left", "cross_right", "front_tele"):
            assert values[f"{cam}/source"] == "rig"
            assert f"base_link -> {cam}" in values[f"{cam}/detail"]
            t, _ = matrix_to_transform(rig_mount[cam])
            got = [float(v) for v in values[f"{cam}/translation_m"].split()]
            assert got == pytest.approx(list(t), abs=1e-4)
        assert status.level == bytes([1]) and "cross_left" in status.message  # WARN
        assert values["source"] == "mixed"
        # once every camera has a TF frame, all come from TF and the status is OK
        static.sendTransform([transform_msg(calibrated, "base_link", "front_wide", 0)] + [
            transform_msg(rig_mount[c], "base_link", c, 0)
            for c in ("cross_left", "cross_right", "front_tele")])
        start = time.monotonic()

        def all_from_tf() -> bool:
            s = _extrinsics_status(probe, start)
            return s is not None and _values(s)["source"] == "tf"

        assert probe.wait_for(all_from_tf, 20.0, proc, log), log.read_text()
        assert _extrinsics_status(probe, start).level == bytes([0])
    finally:
        probe.close()
        stop_process(proc)
