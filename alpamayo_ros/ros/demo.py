"""``alpamayo demo``: the most complete job the package runs end to end today.

1. Builds AR1 training targets: random smooth driving plans are integrated with the
   unicycle model, logged with 5 cm pose noise, and fitted back to (a, kappa) controls by
   regularized least squares; it reports the fit error against the clean plan and the
   jerk of the fit against finite differences of the noisy poses.
2. Ships the fitted plans across a real ROS 2 graph: a child process publishes each plan
   as ``alpamayo_ros/Trajectory`` + ``nav_msgs/Path`` + ``MarkerArray`` (with the DDS
   profile the package applies), this process subscribes, checks every plan arrives
   intact with its camera stamp, and reports transport latency.

It lives in ``alpamayo_ros.ros`` because it runs ROS processes; the fitting stage uses
only the pure core. Every number printed is measured in this run. The closed-loop
simulation demo replaces this once the simulator, policy and controller nodes exist.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from alpamayo_ros import unicycle
from alpamayo_ros.trajectory import Trajectory


def random_plans(count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Smooth random controls (sums of slow sinusoids) and initial speeds."""
    rng = np.random.default_rng(seed)
    t = unicycle.DT_S * np.arange(unicycle.NUM_WAYPOINTS)
    plans = []
    for _ in range(count):
        accel = sum(rng.uniform(-0.8, 0.8) * np.sin(t / rng.uniform(0.8, 3.0) + rng.uniform(0, 6))
                    for _ in range(2))
        curv = sum(rng.uniform(-0.04, 0.04) * np.sin(t / rng.uniform(1.0, 4.0) + rng.uniform(0, 6))
                   for _ in range(2))
        plans.append((accel, curv, float(rng.uniform(2.0, 15.0))))
    return plans


def fit_targets(count: int, seed: int, noise_m: float,
                base_stamp_ns: int = 0) -> tuple[list[Trajectory], dict]:
    """Fit controls to noisy poses of random plans; return fitted plans and statistics.

    Plan ``i`` is stamped ``base_stamp_ns + i * 0.1 s`` (a 10 Hz camera time).
    """
    rng = np.random.default_rng(seed + 1)
    fitted, errors, fit_jerk, fd_jerk = [], [], [], []
    start = time.perf_counter()
    for i, (accel, curv, v0) in enumerate(random_plans(count, seed)):
        clean = unicycle.integrate(accel, curv, v0)
        noisy_x = clean.x_m + rng.normal(0, noise_m, clean.x_m.shape)
        noisy_y = clean.y_m + rng.normal(0, noise_m, clean.y_m.shape)
        fit = unicycle.fit_controls(noisy_x, noisy_y)
        plan = Trajectory.from_controls(
            fit.acceleration_mps2, fit.curvature_per_m, float(fit.v0_mps),
            stamp_ns=base_stamp_ns + i * 100_000_000, frame_id="base_link",
            model_id="unicycle_fit", model_version="demo")
        errors.append(float(np.max(np.hypot(plan.x_m - clean.x_m, plan.y_m - clean.y_m))))
        fit_jerk.append(float(np.max(np.abs(unicycle.jerk_from_controls(fit.acceleration_mps2)))))
        fd_jerk.append(float(np.median(unicycle.jerk_from_positions(noisy_x, noisy_y))))
        fitted.append(plan)
    stats = {
        "plans": count,
        "pose_noise_m": noise_m,
        "fit_error_vs_clean_m": {"median": float(np.median(errors)), "max": float(np.max(errors))},
        "fitted_max_jerk_mps3_median": float(np.median(fit_jerk)),
        "noisy_finite_difference_jerk_mps3_median": float(np.median(fd_jerk)),
        "fit_time_ms_per_plan": 1e3 * (time.perf_counter() - start) / count,
    }
    return fitted, stats


def _publish_child(args: argparse.Namespace) -> None:
    """Child process: publish the fitted plans as Trajectory + Path + MarkerArray."""
    import rclpy
    from nav_msgs.msg import Path
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import MarkerArray

    from alpamayo_ros.msg import Trajectory as TrajectoryMsg
    from alpamayo_ros.ros.conversions import plan_markers, trajectory_to_msg, trajectory_to_path
    from alpamayo_ros.ros.transport import configure_dds_transport

    configure_dds_transport()
    plans, _ = fit_targets(args.plans, args.seed, args.noise_m, args.base_stamp_ns)
    rclpy.init()
    node = rclpy.create_node("alpamayo_demo_planner")
    qos = QoSProfile(depth=args.plans, reliability=ReliabilityPolicy.RELIABLE)
    traj_pub = node.create_publisher(TrajectoryMsg, "/alpamayo/trajectory", qos)
    path_pub = node.create_publisher(Path, "/alpamayo/path", qos)
    marker_pub = node.create_publisher(MarkerArray, "/alpamayo/markers", qos)
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and traj_pub.get_subscription_count() == 0:
        time.sleep(0.05)
    time.sleep(0.3)
    for plan in plans:
        # Publish each plan when the wall clock reaches its camera stamp, as a planner
        # keeping up with a 10 Hz camera would; the viewer measures latency from it.
        while time.time_ns() < plan.stamp_ns:
            time.sleep(0.001)
        traj_pub.publish(trajectory_to_msg(plan))
        path_pub.publish(trajectory_to_path(plan))
        marker_pub.publish(plan_markers(plan, f"unicycle fit of logged plan {plan.stamp_ns}"))
    time.sleep(1.0)
    node.destroy_node()
    rclpy.try_shutdown()


def run_demo(args: argparse.Namespace) -> int:
    """Run both stages and print a JSON report."""
    import rclpy
    from nav_msgs.msg import Path
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from alpamayo_ros.msg import Trajectory as TrajectoryMsg
    from alpamayo_ros.ros.conversions import msg_to_trajectory
    from alpamayo_ros.ros.transport import configure_dds_transport

    print(f"[1/2] fitting AR1 (a, kappa) targets to {args.plans} noisy logged plans ...",
          flush=True)
    base_stamp_ns = time.time_ns() + 4 * 10**9  # leaves time for the child to start
    plans, fit_stats = fit_targets(args.plans, args.seed, args.noise_m, base_stamp_ns)
    print(json.dumps(fit_stats, indent=2), flush=True)

    print("[2/2] publishing the plans from a child process over ROS 2 ...", flush=True)
    configure_dds_transport()
    child = subprocess.Popen([sys.executable, "-m", "alpamayo_ros.ros.demo", "--child",
                              "--plans", str(args.plans), "--seed", str(args.seed),
                              "--noise-m", str(args.noise_m),
                              "--base-stamp-ns", str(base_stamp_ns)],
                             env=dict(os.environ))
    rclpy.init()
    node = rclpy.create_node("alpamayo_demo_viewer")
    qos = QoSProfile(depth=args.plans, reliability=ReliabilityPolicy.RELIABLE)
    received, latencies_ms, paths = {}, [], [0]

    def on_trajectory(msg: TrajectoryMsg) -> None:
        plan = msg_to_trajectory(msg)
        latencies_ms.append((time.time_ns() - plan.stamp_ns) / 1e6)
        received[plan.stamp_ns] = plan

    node.create_subscription(TrajectoryMsg, "/alpamayo/trajectory", on_trajectory, qos)
    node.create_subscription(Path, "/alpamayo/path", lambda _m: paths.__setitem__(0, paths[0] + 1),
                             qos)
    deadline = time.monotonic() + 60.0 + args.plans * 0.1
    try:
        while len(received) < len(plans) and time.monotonic() < deadline and child.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.1)
        for _ in range(10):
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        child.wait(timeout=30)
    intact = sum(
        1 for plan in plans if plan.stamp_ns in received
        and np.allclose(received[plan.stamp_ns].x_m, plan.x_m, atol=1e-9)
        and np.allclose(received[plan.stamp_ns].curvature_per_m, plan.curvature_per_m, atol=1e-12))
    report = {
        "trajectories_received_intact": f"{intact}/{len(plans)}",
        "paths_received": paths[0],
        "trajectory_latency_ms": {
            "median": float(np.median(latencies_ms)) if latencies_ms else None,
            "max": float(np.max(latencies_ms)) if latencies_ms else None,
        },
        "method": ("each plan is published when the wall clock reaches its camera stamp;"
                   " latency = receive wall time - header stamp"),
    }
    print(json.dumps(report, indent=2))
    ok = intact == len(plans)
    print("demo " + ("OK" if ok else "FAILED: plans lost or changed in transit"))
    return 0 if ok else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Demo options."""
    parser.add_argument("--plans", type=int, default=20, help="number of logged plans")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-m", type=float, default=0.05, help="pose noise std (m)")
    parser.add_argument("--base-stamp-ns", type=int, default=0, help=argparse.SUPPRESS)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo demo``."""
    parser = subparsers.add_parser("demo", help="run the end-to-end demo (real, measured)")
    add_arguments(parser)
    parser.set_defaults(func=run_demo)


if __name__ == "__main__":
    cli = argparse.ArgumentParser()
    cli.add_argument("--child", action="store_true")
    add_arguments(cli)
    parsed = cli.parse_args()
    sys.exit(_publish_child(parsed) if parsed.child else run_demo(parsed))
