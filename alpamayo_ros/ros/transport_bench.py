"""``alpamayo bench transport``: camera images between two processes, per DDS setting.

For each transport setting (Fast DDS defaults, the package's large-data profile) one
publisher process sends N cameras of ``sensor_msgs/Image`` (rgb8) at a fixed rate with
reliable QoS (depth 2, the sensor QoS of the nodes) and one subscriber process counts what
arrives and measures latency (receive time minus header stamp, one clock). Both settings
run in the same invocation so their ratio is measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def _qos():
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE)


def _publish(args: argparse.Namespace) -> None:
    import rclpy
    from sensor_msgs.msg import Image

    from alpamayo_ros.ros.images import array_to_image

    rclpy.init()
    node = rclpy.create_node("alpamayo_bench_camera_publisher")
    names = [f"cam{i}" for i in range(args.cameras)]
    pubs = [node.create_publisher(Image, f"/bench/{n}/image_raw", _qos()) for n in names]
    rng = np.random.default_rng(0)
    frames = [array_to_image(rng.integers(0, 255, (args.height, args.width, 3), np.uint8), "rgb8")
              for _ in names]
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in pubs):
        time.sleep(0.05)
    time.sleep(0.5)  # let discovery settle on both sides
    period = 1.0 / args.rate_hz
    start = time.monotonic()
    for tick in range(int(args.duration_s * args.rate_hz)):
        while time.monotonic() < start + tick * period:
            time.sleep(0.0005)
        stamp = node.get_clock().now().to_msg()
        for pub, frame in zip(pubs, frames):
            frame.header.stamp = stamp
            frame.header.frame_id = str(tick)
            pub.publish(frame)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.try_shutdown()


def _subscribe(args: argparse.Namespace) -> None:
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("alpamayo_bench_camera_subscriber")
    latencies: list[float] = []
    counts = [0] * args.cameras

    def on_image(msg: Image, index: int) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        latencies.append((now - stamp) / 1e6)
        counts[index] += 1

    subs = [node.create_subscription(Image, f"/bench/cam{i}/image_raw",
                                     lambda m, i=i: on_image(m, i), _qos())
            for i in range(args.cameras)]
    expected = int(args.duration_s * args.rate_hz) * args.cameras
    deadline = time.monotonic() + args.duration_s + 25.0
    first = None
    while time.monotonic() < deadline and sum(counts) < expected:
        rclpy.spin_once(node, timeout_sec=0.1)
        if first is None and sum(counts):
            first = time.monotonic()
        if first is not None and time.monotonic() > first + args.duration_s + 3.0:
            break
    lat = np.array(latencies) if latencies else np.array([np.nan])
    print(json.dumps({
        "expected": expected, "received": sum(counts), "per_camera": counts,
        "received_ratio": sum(counts) / expected,
        "received_msgs_per_s": sum(counts) / args.duration_s,
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p99": float(np.percentile(lat, 99)),
        "subscriptions": len(subs),
    }))
    node.destroy_node()
    rclpy.try_shutdown()


def run_setting(setting: str, args: argparse.Namespace) -> dict:
    """Run one publisher/subscriber pair under ``setting`` ('defaults' or 'profile')."""
    from alpamayo_ros.ros.transport import USER_FASTDDS_VARIABLES, configure_dds_transport

    env = dict(os.environ)
    for name in USER_FASTDDS_VARIABLES:
        env.pop(name, None)
    if setting == "profile":
        configure_dds_transport(env)
    env.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 50))
    common = ["--cameras", str(args.cameras), "--width", str(args.width),
              "--height", str(args.height), "--rate-hz", str(args.rate_hz),
              "--duration-s", str(args.duration_s)]
    module = [sys.executable, "-m", "alpamayo_ros.ros.transport_bench"]
    sub = subprocess.Popen(module + ["subscribe", *common], env=env, stdout=subprocess.PIPE,
                           text=True)
    pub = subprocess.Popen(module + ["publish", *common], env=env)
    out, _ = sub.communicate(timeout=args.duration_s + 60)
    pub.wait(timeout=30)
    result = json.loads(out.strip().splitlines()[-1])
    result["setting"] = setting
    result["profile_file"] = env.get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    return result


def bench(args: argparse.Namespace) -> int:
    """Run both settings and print one JSON document."""
    results = [run_setting(s, args) for s in ("defaults", "profile")]
    report = {
        "benchmark": "transport",
        "method": (f"{args.cameras} x {args.width}x{args.height} rgb8 Image at {args.rate_hz} Hz"
                   f" for {args.duration_s} s, reliable depth 2, 2 processes per setting,"
                   " latency = receive time - header stamp"),
        "results": results,
        "profile_over_defaults_received_ratio": (
            results[1]["received_ratio"] / max(results[0]["received_ratio"], 1e-9)),
    }
    print(json.dumps(report, indent=2))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by the bench command and the child processes."""
    parser.add_argument("--cameras", type=int, default=7)
    parser.add_argument("--width", type=int, default=448)
    parser.add_argument("--height", type=int, default=280)
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--duration-s", type=float, default=5.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["publish", "subscribe"])
    add_arguments(parser)
    parsed = parser.parse_args()
    (_publish if parsed.role == "publish" else _subscribe)(parsed)
