"""Shared pieces of the launch_testing tests in this folder.

Each ``<bring-up>.py`` here is a ``launch_testing`` test file, run by
``test/test_launch_bringups.py`` with ``python -m launch_testing.launch_test FILE
name:=value ...`` (launch_testing's pytest plugin does not load under pytest 9). It
includes the installed ``share/alpamayo_ros/launch/<bring-up>.launch.py`` through the
real ``launch``, as ``ros2 launch alpamayo_ros <bring-up>.launch.py`` does (the launch
arguments given on the command line reach it), asserts on topics and rates while it runs,
and, after launch_testing has shut the bring-up down (SIGINT to every process), checks
that every process exited with code 0 and printed no traceback.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from test.helpers.ros_harness import Probe

STARTUP_TIMEOUT_S = 240.0  # first plan: model load + warm-up on a loaded 2-core machine


def bringup_description(bringup: str):
    """The bring-up's installed launch file, included, then ``ReadyToTest``."""
    import launch_testing.actions
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from launch import LaunchDescription

    path = Path(get_package_share_directory("alpamayo_ros")) / "launch" / f"{bringup}.launch.py"
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(path))),
        launch_testing.actions.ReadyToTest(),
    ])


def make_probe() -> Probe:
    """A listening node in this test process, on the bring-up's domain."""
    return Probe(int(os.environ.get("ROS_DOMAIN_ID", "0")), "alpamayo_launch_test_probe")


def stamp_ns(header) -> int:
    """A header's stamp in integer nanoseconds."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def wait_for(predicate, timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s:g} s")


def stamp_rate_hz(messages: list) -> tuple[float, float]:
    """(rate, span_s) measured from header stamps: (n - 1) / (last - first)."""
    stamps = sorted(stamp_ns(m.header) for m in messages)
    span_s = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else 0.0
    return ((len(stamps) - 1) / span_s if span_s > 0 else 0.0), span_s


def check_clean_exit(test, proc_info, proc_output, executables: list[str]) -> None:
    """Every process of the bring-up ran, exited with 0 and printed no traceback."""
    import launch_testing.asserts

    names = sorted(proc_info.process_names())
    for executable in executables:
        test.assertTrue(any(executable in name for name in names), (executable, names))
    launch_testing.asserts.assertExitCodes(proc_info)  # every process: 0
    for name in names:
        text = "".join(io.text.decode(errors="replace") for io in proc_output[name])
        test.assertNotIn("Traceback", text, f"{name} printed a traceback:\n{text[-3000:]}")


def call_service(srv_type, name: str, request, timeout_s: float = 30.0):
    """Call a service from a short-lived node on the bring-up's domain; the response."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    context = Context()
    rclpy.init(args=[], context=context, domain_id=int(os.environ.get("ROS_DOMAIN_ID", "0")))
    node = rclpy.create_node("alpamayo_launch_test_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        executor.add_node(node)
        client = node.create_client(srv_type, name)
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise AssertionError(f"service {name} not available within {timeout_s:g} s")
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done():
            raise AssertionError(f"service {name}: no response within {timeout_s:g} s")
        return future.result()
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


RIG = ["front_wide", "front_tele", "cross_left", "cross_right", "rear_left", "rear_right",
       "rear_tele"]  # config/sync.yaml's cameras (AR1)
BAG_START_NS = 1_700_000_000_000_000_000
CAMERA_PERIOD_NS = 100_000_000  # 10 Hz
ODOMETRY_PERIOD_NS = 20_000_000  # 50 Hz


def write_replay_bag(out_dir: Path, duration_s: float) -> Path:
    """A rosbag2 (MCAP) for the replay bring-up, ``duration_s`` long.

    The 7 cameras as 96x60 jpeg at 10 Hz and odometry at 50 Hz of an ego driving along +x
    at 8 m/s, stamped (and logged) from :data:`BAG_START_NS`.
    """
    import cv2
    import numpy as np
    from nav_msgs.msg import Odometry
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage

    from alpamayo_ros import topics
    from alpamayo_ros.bags.record import BagWriter
    from alpamayo_ros.ros.conversions import time_from_ns

    writer = BagWriter(out_dir)
    for camera in RIG:
        writer.add_topic(topics.image_topic(camera, True), "sensor_msgs/msg/CompressedImage")
    writer.add_topic(topics.ODOMETRY, "nav_msgs/msg/Odometry")
    gradient = np.linspace(0, 255, 96, dtype=np.uint8)
    image = np.dstack([np.tile(gradient, (60, 1))] * 3)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    end_ns = BAG_START_NS + int(duration_s * 1e9)
    for stamp_ns in range(BAG_START_NS, end_ns, ODOMETRY_PERIOD_NS):
        if (stamp_ns - BAG_START_NS) % CAMERA_PERIOD_NS == 0:
            for camera in RIG:
                msg = CompressedImage(format="jpeg", data=jpeg)
                msg.header.stamp, msg.header.frame_id = time_from_ns(stamp_ns), camera
                writer.write(topics.image_topic(camera, True), stamp_ns, serialize_message(msg))
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id = time_from_ns(stamp_ns), "map"
        odom.child_frame_id = "base_link"
        odom.pose.pose.position.x = 8.0 * (stamp_ns - BAG_START_NS) / 1e9
        odom.pose.pose.orientation.w = 1.0
        odom.twist.twist.linear.x = 8.0
        writer.write(topics.ODOMETRY, stamp_ns, serialize_message(odom))
    writer.close()
    return out_dir
