"""``alpamayo bench cycles``: start/stop a bring-up N times in a row; exit codes and leftovers.

Each cycle starts ``ros2 launch alpamayo_ros simulation.launch.py`` (or ``alpamayo up
simulation`` with ``--runner up``) in its own session, waits until this process has
received plans (``/planning/alpamayo/trajectory``) and control commands from it, sends
SIGINT (``--signal TERM``: SIGTERM), and records: the launcher's exit code; each node's
exit as the launcher reports it (``ros2 launch``: "process has finished cleanly" /
"process has died ... exit code N"; ``alpamayo up`` names every process that did not exit
with 0); the processes it had started that are still running 15 s after it ended (then
killed); the seconds to the first plan and to stop. A cycle passes when the launcher exited
0, every node cleanly, and nothing was left. JSON on stdout (and ``--out``), with the
machine; the exit code is 0 only when every cycle passed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alpamayo_ros import graph
from alpamayo_ros.ros.lifetime import alive, descendants

BRINGUP = "simulation"  # produces plans and commands on its own
LEFTOVER_WAIT_S = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``alpamayo bench cycles``."""
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--runner", default="launch", choices=["launch", "up"],
                        help="ros2 launch (needs the ros2 CLI) or alpamayo up")
    parser.add_argument("--signal", default="INT", choices=["INT", "TERM"],
                        help="signal that stops each cycle")
    parser.add_argument("--weights", default="",
                        help="weights directory (default: random tiny weights, made here)")
    parser.add_argument("--max-reasoning-tokens", type=int, default=24)
    parser.add_argument("--startup-timeout-s", type=float, default=240.0)
    parser.add_argument("--stop-timeout-s", type=float, default=60.0)
    parser.add_argument("--out", default="", help="also write the JSON here")


class _Listener:
    """Counts plans and commands (own rclpy context, spun on a thread)."""

    def __init__(self) -> None:
        import threading

        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        from alpamayo_ros import topics
        from alpamayo_ros.msg import ControlCommand, Trajectory
        from alpamayo_ros.ros.qos import plan_qos

        self.context = Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node("alpamayo_cycles_bench", context=self.context)
        self.counts = {"plans": 0, "commands": 0}
        self.node.create_subscription(Trajectory, topics.TRAJECTORY,
                                      lambda _: self._count("plans"), plan_qos())
        self.node.create_subscription(ControlCommand, topics.CONTROL_COMMAND,
                                      lambda _: self._count("commands"), plan_qos())
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _count(self, key: str) -> None:
        self.counts[key] += 1

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.1)

    def reset(self) -> None:
        self.counts = {"plans": 0, "commands": 0}

    def close(self) -> None:
        import rclpy

        self._stop = True
        self._thread.join(timeout=10.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _command(args: argparse.Namespace, weights: str) -> list[str]:
    values = [f"weights_dir:={weights}", "device:=cpu",
              f"max_reasoning_tokens:={args.max_reasoning_tokens}"]
    if args.runner == "up":
        return [sys.executable, "-m", "alpamayo_ros.cli", "up", BRINGUP, *values]
    ros2 = Path(sys.executable).parent / "ros2"
    return [str(ros2), "launch", graph.PACKAGE, f"{BRINGUP}.launch.py", *values]


def _cycle(index: int, args: argparse.Namespace, weights: str, env: dict[str, str],
           listener: _Listener, log_dir: Path) -> dict[str, Any]:
    log = log_dir / f"cycle_{index:02d}.log"
    listener.reset()
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(_command(args, weights), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    result: dict[str, Any] = {"cycle": index, "log": str(log)}
    nodes: set[int] = set()
    try:
        deadline = started + args.startup_timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            if listener.counts["plans"] >= 1 and listener.counts["commands"] >= 10:
                break
            time.sleep(0.2)
        result["ready"] = listener.counts["plans"] >= 1 and listener.counts["commands"] >= 10
        result["first_plan_s"] = round(time.monotonic() - started, 1)
        nodes = descendants(proc.pid)
        result["processes"] = len(nodes)
        stop_start = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT if args.signal == "INT" else signal.SIGTERM)
        try:
            result["exit_code"] = proc.wait(timeout=args.stop_timeout_s)
        except subprocess.TimeoutExpired:
            result["exit_code"] = None
            proc.kill()
            proc.wait()
        result["stop_s"] = round(time.monotonic() - stop_start, 2)
        deadline = time.monotonic() + LEFTOVER_WAIT_S
        while time.monotonic() < deadline and any(alive(p) for p in nodes):
            time.sleep(0.2)
        result["left_running"] = sorted(p for p in nodes if alive(p))
    finally:
        for pid in nodes | descendants(proc.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    expected = len(graph.nodes(BRINGUP))
    if args.runner == "launch":
        result["nodes_clean"] = text.count("process has finished cleanly")
        problems = re.findall(r"process has died.*", text)
    else:
        result["nodes_clean"] = expected - len(re.findall(r"\[alpamayo up\] \S+ exited with",
                                                          text))
        problems = re.findall(r"\[alpamayo up\] .*(?:exited with|killing it).*", text)
    result["problems"] = problems + (["Traceback in the output"] if "Traceback" in text else [])
    result["passed"] = bool(result["ready"] and result["exit_code"] == 0
                            and result["nodes_clean"] == expected and not result["problems"]
                            and not result["left_running"])
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the cycles; the report."""
    if args.cycles < 1:
        raise ValueError(f"--cycles must be >= 1, got {args.cycles}")
    if args.runner == "launch" and not (Path(sys.executable).parent / "ros2").exists():
        raise ValueError("--runner launch needs the ros2 command line in this venv "
                         "(make setup ROS2_UPSTREAM=<ros2-upstream folder>)")
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    log_dir = Path(tempfile.mkdtemp(prefix="alpamayo_cycles_"))
    weights = args.weights
    if not weights:
        from alpamayo_ros.model.policy import Policy

        weights = str(log_dir / "tiny")
        Policy.from_config("tiny", device="cpu").save_pretrained(weights)
    listener = _Listener()
    cycles = []
    try:
        for index in range(args.cycles):
            cycles.append(_cycle(index, args, weights, env, listener, log_dir))
            print(json.dumps(cycles[-1]), file=sys.stderr, flush=True)
    finally:
        listener.close()
    first_plan = sorted(c["first_plan_s"] for c in cycles)
    stop = sorted(c["stop_s"] for c in cycles)
    return {
        "benchmark": "cycles",
        "command": " ".join(_command(args, weights)),
        "signal": f"SIG{args.signal}",
        "cycles": len(cycles),
        "passed": sum(c["passed"] for c in cycles),
        "exit_codes": sorted({str(c["exit_code"]) for c in cycles}),
        "left_running_total": sum(len(c["left_running"]) for c in cycles),
        "first_plan_s": {"min": first_plan[0], "median": first_plan[len(first_plan) // 2],
                         "max": first_plan[-1]},
        "stop_s": {"min": stop[0], "median": stop[len(stop) // 2], "max": stop[-1]},
        "logs": str(log_dir),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]},
        "per_cycle": cycles,
    }


def bench(args: argparse.Namespace) -> int:
    """Entry point: print the JSON (and write it to ``--out``); 0 when every cycle passed."""
    try:
        report = run(args)
    except ValueError as exc:
        print(f"alpamayo bench cycles: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if report["passed"] == report["cycles"] else 1
