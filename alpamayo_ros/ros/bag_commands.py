"""Simulator-and-bags commands: ``alpamayo replay``, ``record``, ``recover``, ``bench sim``.

The replay/record flags are those of the ``bag_player`` / ``bag_recorder`` executables
(:mod:`alpamayo_ros.bags.config`); anything after ``--ros-args`` goes to rclpy
(``alpamayo record --all --out run1 --ros-args -p use_sim_time:=true``).
``alpamayo bench sim`` starts the simulator node as a separate process and measures, from
this process, what it delivers (per-camera and complete-set rates, odometry rate, the
node's own work per camera tick and CPU use); JSON on stdout. rclpy is only imported
when a command runs, so ``alpamayo --help`` works without ROS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay``, ``record`` and ``recover`` subcommands."""
    from alpamayo_ros.bags.config import add_player_arguments, add_recorder_arguments

    p = subparsers.add_parser("replay", help="play a rosbag2 (MCAP) bag with original stamps")
    add_player_arguments(p)
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="ROS arguments for the player node")
    p.set_defaults(func=_replay)

    r = subparsers.add_parser("record", help="record topics into a rosbag2 MCAP bag")
    add_recorder_arguments(r)
    r.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="ROS arguments for the recorder node (e.g. -p use_sim_time:=true)")
    r.set_defaults(func=_record)

    v = subparsers.add_parser("recover", help="restore a bag whose recorder was killed "
                              "(complete chunks into a new bag)")
    v.add_argument("bag", help="the damaged rosbag2 directory (or its .mcap file)")
    v.add_argument("--out", "-o", default=None,
                   help="new bag directory (default: BAG_recovered)")
    v.set_defaults(func=_recover)


def _ros_args(args: argparse.Namespace) -> list[str]:
    return ["--ros-args", *args.ros_args] if args.ros_args else []


def _replay(args: argparse.Namespace) -> int:
    from alpamayo_ros.bags.config import BagPlayerConfig, player_values
    from alpamayo_ros.bags.replay import read_info, select_topics

    values = player_values(args)
    if not values.get("bag"):
        raise SystemExit("alpamayo replay: give the bag directory")
    try:
        BagPlayerConfig(**values)
        select_topics(read_info(values["bag"]), values.get("topics", ()))
    except (ValueError, OSError) as exc:  # fail before starting ROS, with the reason
        raise SystemExit(f"alpamayo replay: {exc}") from None
    from alpamayo_ros.nodes.bag_player import play

    play(values, _ros_args(args))
    return 0


def _recover(args: argparse.Namespace) -> int:
    from alpamayo_ros.bags.recover import RecoveryError, recover_bag

    try:
        report = recover_bag(args.bag, args.out)
    except (RecoveryError, OSError) as exc:
        raise SystemExit(f"alpamayo recover: {exc}") from None
    print(report.summary())
    return 0


def _record(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alpamayo_ros.bags.config import BagRecorderConfig, recorder_values

    values = recorder_values(args)
    try:
        config = BagRecorderConfig(**values)
    except ValueError as exc:
        raise SystemExit(f"alpamayo record: {exc}") from None
    if not config.topics and not config.all_topics:
        raise SystemExit("alpamayo record: give --topics T ... or --all")
    if config.out_dir and Path(config.out_dir).exists():
        raise SystemExit(f"alpamayo record: {config.out_dir} exists; give a new directory")
    from alpamayo_ros.nodes.bag_recorder import record

    record(values, _ros_args(args))
    return 0


# --------------------------------------------------------------------------- bench sim
def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo bench sim``."""
    b = bench_subparsers.add_parser("sim", help="simulator node output rates, two processes")
    b.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    b.add_argument("--warmup-s", type=float, default=3.0, help="after the first frame")
    b.add_argument("--rig", default="ar1")
    b.add_argument("--family", default="lead_at_red_light")
    b.add_argument("--compressed", action="store_true", help="jpeg CompressedImage")
    b.add_argument("--real-time-factor", type=float, default=1.0,
                   help="the node's pace (0 = as fast as it can)")
    b.set_defaults(func=_bench_sim)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bench_sim(args: argparse.Namespace) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage, Image

    from alpamayo_ros import topics
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.paths import config_path
    from alpamayo_ros.ros.qos import plan_qos, sensor_qos
    from alpamayo_ros.ros.transport import configure_dds_transport

    cameras = [c.name for c in make_rig(args.rig).cameras]
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(101, 200)), PYTHONUNBUFFERED="1")
    configure_dds_transport(env)
    configure_dds_transport()
    cmd = [sys.executable, "-m", "alpamayo_ros.nodes.sim_node", "--ros-args", "--params-file",
           str(config_path("sim.yaml")), "-p", f"rig:={args.rig}", "-p",
           f"family:={args.family}", "-p", f"compressed:={str(args.compressed).lower()}",
           "-p", f"real_time_factor:={float(args.real_time_factor)}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    context = Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("alpamayo_bench_sim", context=context)
    lock = threading.Lock()
    images: list[tuple[float, str, int]] = []
    odom: list[float] = []
    diag: dict[str, str] = {}
    image_type = CompressedImage if args.compressed else Image

    def on_image(msg, cam: str) -> None:
        with lock:
            images.append((time.monotonic(), cam,
                           msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))

    def on_diag(msg) -> None:
        for st in msg.status:
            if st.name.startswith("alpamayo_sim"):
                diag.update({kv.key: kv.value for kv in st.values})

    for cam in cameras:
        node.create_subscription(image_type, topics.image_topic(cam, args.compressed),
                                 lambda m, c=cam: on_image(m, c), sensor_qos())
    node.create_subscription(Odometry, topics.ODOMETRY, lambda m: odom.append(time.monotonic()),
                             sensor_qos())
    node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diag, plan_qos())
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 60.0
        while not images and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        if not images:
            raise SystemExit("bench sim: no camera frame within 60 s")
        end_warmup = time.monotonic() + args.warmup_s
        while time.monotonic() < end_warmup:
            executor.spin_once(timeout_sec=0.05)
        t0, cpu0 = time.monotonic(), _cpu_s(proc.pid)
        while time.monotonic() < t0 + args.seconds:
            executor.spin_once(timeout_sec=0.05)
        t1, cpu1 = time.monotonic(), _cpu_s(proc.pid)
        end_diag = time.monotonic() + 1.5  # one more diagnostics message
        while time.monotonic() < end_diag:
            executor.spin_once(timeout_sec=0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    window = [(t, c, s) for t, c, s in images if t0 <= t <= t1]
    span = t1 - t0
    per_stamp: dict[int, set[str]] = {}
    for _, cam, stamp in window:
        per_stamp.setdefault(stamp, set()).add(cam)
    complete = sum(1 for cams in per_stamp.values() if cams == set(cameras))
    rig = make_rig(args.rig).cameras[0]
    print(json.dumps({
        "rig": args.rig, "cameras": len(cameras), "resolution": f"{rig.width_px}x{rig.height_px}",
        "encoding": "jpeg" if args.compressed else "rgb8", "seconds": round(span, 2),
        "real_time_factor_asked": args.real_time_factor,
        "images_per_s": round(len(window) / span, 1),
        "complete_sets_per_s": round(complete / span, 2),
        "incomplete_sets": len(per_stamp) - complete,
        "odometry_per_s": round(sum(1 for t in odom if t0 <= t <= t1) / span, 1),
        "sim_node_cpu_percent_of_one_core": round(100.0 * (cpu1 - cpu0) / span, 1),
        "node_camera_tick_work_ms": diag.get("camera_tick_work_ms"),
        "node_real_time_factor": diag.get("real_time_factor"),
        "node_pace_slips": diag.get("pace_slips"),
        "cpu_cores": os.cpu_count(), "processes": 2,
    }))
    return 0
