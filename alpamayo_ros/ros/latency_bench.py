"""``alpamayo bench latency``: camera stamp -> Trajectory through the real policy graph.

For each variant (policy node parameters, e.g. token-by-token reasoning vs the previous
reasoning as a verified draft) one policy process (``alpamayo_ros.nodes.policy_node``:
camera sync + policy, the bring-ups' process, default ``sync.yaml``/``policy.yaml``) runs
the shipped weights; this process publishes camera frames and odometry to it at 10 Hz and
receives its Trajectory messages. The frames are data-engine scenarios rendered before
they are streamed (:mod:`alpamayo_ros.inference.replay`: the expert drives, open loop;
the model's four cameras are rendered at the rig's resolution, the rig's other cameras get
a constant image so the sync node groups its usual seven) and each frame set is stamped
with the wall clock when it is published, so ``arrival - header.stamp`` of a plan is its
latency on one clock. The node publishes, per plan, its stage times on ``/diagnostics``
(``plan_timing_diagnostics``): camera stamp -> tick (sync), decode, the model's
preprocess / vision / prefill / reasoning / trajectory (the flow expert) / postprocess,
and publish. The variants run one after the other on the same frames; the JSON gives
medians and p99s per stage and end to end, the achieved plan rate, the ratios between
variants, whether the 10 Hz goal (p50 <= 100 ms, p99 <= 150 ms) is met, and else the stage
that keeps it from 10 Hz; with the machine (CPU, cores, load average, GPU when used).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

GOAL_P50_MS = 100.0
GOAL_P99_MS = 150.0
# Policy node parameters of each variant (the rest: config/policy.yaml).
VARIANTS: dict[str, dict[str, object]] = {
    "token_by_token": {"reuse_reasoning": False},
    "reuse_reasoning": {"reuse_reasoning": True},
    # the same on the free-running timer instead of the frame trigger (trigger: timer)
    "reuse_reasoning_timer": {"reuse_reasoning": True, "trigger": "timer"},
    "reuse_reasoning_flow5": {"reuse_reasoning": True, "flow_steps": 5},
    "trajectory_only": {"reasoning": False},
}
STAGES = ("sync", "queue", "decode", "model_preprocess", "model_vision", "model_prefill",
          "model_reasoning", "model_trajectory", "model_postprocess", "publish")
DEFAULT_SCENARIOS = "lead_at_red_light:9000,cut_in:9001,hidden_pedestrian:9002"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``alpamayo bench latency``."""
    parser.add_argument("--weights", default="", help="weights directory (default: shipped)")
    parser.add_argument("--device", default="cpu", help="policy device: cpu | cuda | auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="the policy's torch CPU threads (torch_threads)")
    parser.add_argument("--rate-hz", type=float, default=10.0,
                        help="camera rate and the policy's rate_hz")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS,
                        help="family:seed,... (data-engine test seeds are >= 9000)")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="streamed seconds per scenario (at most the episode)")
    parser.add_argument("--warmup-s", type=float, default=3.0,
                        help="first seconds of each scenario left out of the statistics")
    parser.add_argument("--variants", default="token_by_token,reuse_reasoning",
                        help=f"comma-separated, from {sorted(VARIANTS)}")
    parser.add_argument("--max-reasoning-tokens", type=int, default=0,
                        help="0: the model's budget")
    parser.add_argument("--out", default="", help="also write the JSON here")
    parser.add_argument("--startup-timeout-s", type=float, default=180.0)


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"n": len(values), "median_ms": round(float(np.median(arr)), 2),
            "p90_ms": round(float(np.percentile(arr, 90)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2),
            "max_ms": round(float(arr.max()), 2)}


def _cpu_name() -> str:
    from alpamayo_ros.model.bench import _cpu_name as name

    return name()


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def parse_scenarios(text: str) -> list[tuple[str, int]]:
    """``family:seed,family:seed`` -> pairs (a clear error naming a bad entry)."""
    from alpamayo_ros.data.scenarios import FAMILIES

    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        family, _, seed = item.partition(":")
        if family not in FAMILIES or not seed.lstrip("-").isdigit():
            raise ValueError(f"--scenarios entry {item!r}: expected family:seed with a family "
                             f"from {sorted(FAMILIES)}")
        out.append((family, int(seed)))
    if not out:
        raise ValueError("--scenarios names no scenario")
    return out


class _Graph:
    """The bench side of the graph: publishers, recorders, a spin thread."""

    def __init__(self, domain_id: int, camera_names: list[str]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        from alpamayo_ros import topics
        from alpamayo_ros.msg import Reasoning
        from alpamayo_ros.msg import Trajectory as TrajectoryMsg
        from alpamayo_ros.ros.qos import plan_qos, sensor_qos

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("alpamayo_bench_latency", context=self.context)
        self.lock = threading.Lock()
        self.arrivals: dict[int, int] = {}  # plan stamp -> arrival (ns, wall clock)
        self.reasoning: dict[int, str] = {}
        self.timings: dict[int, dict[str, float]] = {}
        self.policy_seen = threading.Event()
        self.device = ""
        self.image_pubs = {c: self.node.create_publisher(Image, topics.image_topic(c, False),
                                                         sensor_qos()) for c in camera_names}
        self.odom_pub = self.node.create_publisher(Odometry, topics.ODOMETRY, sensor_qos())
        self.node.create_subscription(TrajectoryMsg, topics.TRAJECTORY, self._on_plan,
                                      plan_qos())
        self.node.create_subscription(Reasoning, topics.REASONING, self._on_reasoning,
                                      plan_qos())
        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diag, 200)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # the context went away while closing
                if not self._stop:
                    raise

    def _on_plan(self, msg: Any) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.arrivals[stamp] = now

    def _on_reasoning(self, msg: Any) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.reasoning[stamp] = msg.text

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name.endswith(": plan timing") and "stamp_ns" in values:
                parsed = {}
                for key, value in values.items():
                    try:
                        parsed[key] = float(value)
                    except ValueError:
                        continue
                with self.lock:
                    self.timings[int(values["stamp_ns"])] = parsed
            elif status.name.endswith(": policy") and "device" in values:
                self.device = values["device"]
                self.policy_seen.set()

    def close(self) -> None:
        import rclpy

        self._stop = True
        self.thread.join(timeout=10.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _odometry(pose: Any, stamp_ns: int) -> Any:
    from nav_msgs.msg import Odometry

    from alpamayo_ros import topics
    from alpamayo_ros.ros.conversions import quaternion_from_yaw, time_from_ns

    msg = Odometry()
    msg.header.stamp = time_from_ns(stamp_ns)
    msg.header.frame_id, msg.child_frame_id = topics.MAP_FRAME, topics.EGO_FRAME
    msg.pose.pose.position.x, msg.pose.pose.position.y = pose.x_m, pose.y_m
    msg.pose.pose.orientation = quaternion_from_yaw(pose.heading_rad)
    msg.twist.twist.linear.x = pose.speed_mps
    return msg


def _stream(graph: _Graph, episode: Any, model_cameras: list[str], rate_hz: float,
            seconds: float, warmup_s: float) -> tuple[int, int, int]:
    """Publish one scenario in real time; returns (measured start ns, end ns, sets sent)."""
    from std_msgs.msg import Header

    from alpamayo_ros.nodes.sim_node import rgb8_image_msg
    from alpamayo_ros.ros.conversions import time_from_ns

    frames = episode.frames[: max(1, int(seconds * rate_hz))]
    shape = frames[0].images[0].shape
    blank = np.full(shape, 96, np.uint8)
    index = {c: i for i, c in enumerate(model_cameras)}
    msgs = [[rgb8_image_msg(f.images[index[c]] if c in index else blank, Header(frame_id=c))
             for c in graph.image_pubs] for f in frames]
    period_s = 1.0 / rate_hz
    start = time.monotonic()
    measured_from = end = 0
    for i, (frame, images) in enumerate(zip(frames, msgs)):
        while (delay := start + i * period_s - time.monotonic()) > 0:
            time.sleep(min(delay, 0.005))
        stamp_ns = time.time_ns()
        if i == int(warmup_s * rate_hz):
            measured_from = stamp_ns
        graph.odom_pub.publish(_odometry(frame.pose, stamp_ns))
        stamp = time_from_ns(stamp_ns)
        for pub, msg in zip(graph.image_pubs.values(), images):
            msg.header.stamp = stamp
            pub.publish(msg)
        end = stamp_ns
    sent = len(frames) - int(warmup_s * rate_hz)
    time.sleep(1.0)  # the last plans
    return measured_from, end, sent


def run_variant(name: str, args: argparse.Namespace, scenarios: list[tuple[str, int]],
                weights: str) -> dict[str, Any]:
    """One policy process with the variant's parameters over every scenario."""
    from alpamayo_ros.inference.config import PolicyNodeConfig
    from alpamayo_ros.inference.replay import render_episode
    from alpamayo_ros.paths import config_path
    from alpamayo_ros.ros.transport import configure_dds_transport
    from alpamayo_ros.sync.config import SyncConfig

    params = {"weights_dir": weights, "device": args.device, "rate_hz": float(args.rate_hz),
              "torch_threads": int(args.threads), "plan_timing_diagnostics": True,
              "max_reasoning_tokens": int(args.max_reasoning_tokens), "reasoning": True,
              **VARIANTS[name]}
    domain = random.randint(101, 200)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=str(args.threads))
    configure_dds_transport(env)
    configure_dds_transport()
    cmd = [sys.executable, "-m", "alpamayo_ros.nodes.policy_node", "--ros-args",
           "--params-file", str(config_path("sync.yaml")),
           "--params-file", str(config_path("policy.yaml"))]
    for key, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        cmd += ["-p", f"{key}:={text}" if text else f"{key}:=''"]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"alpamayo_bench_latency_{name}.log"
    handle = open(log, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    camera_names = list(SyncConfig().camera_names)
    model_cameras = list(PolicyNodeConfig().model_cameras)
    graph = _Graph(domain, camera_names)
    windows: list[tuple[str, int, int, int]] = []
    try:
        deadline = time.monotonic() + args.startup_timeout_s
        while not graph.policy_seen.wait(0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"policy process did not come up ({name}):\n"
                                   f"{log.read_text()[-3000:]}")
        for family, seed in scenarios:
            episode = render_episode(family, seed, model_cameras, max_frames=int(
                args.seconds * args.rate_hz))
            start, end, sent = _stream(graph, episode, model_cameras, args.rate_hz,
                                       args.seconds, args.warmup_s)
            windows.append((f"{family}:{seed}", start, end, sent))
        time.sleep(1.0)
    finally:
        graph.close()
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        handle.close()
    with graph.lock:
        arrivals, timings = dict(graph.arrivals), dict(graph.timings)
        texts = dict(graph.reasoning)
    e2e: list[float] = []
    stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "stamp_to_publish",
                                                       "model_total")}
    passes: list[float] = []
    accepted: list[float] = []
    per_scenario = []
    sent_total = 0
    for label, start, end, sent in windows:
        stamps = sorted(s for s in arrivals if start <= s <= end)
        sent_total += sent
        lat = [(arrivals[s] - s) / 1e6 for s in stamps]
        e2e += lat
        for s in stamps:
            t = timings.get(s)
            if t is None:
                continue
            for stage in stages:
                if f"{stage}_ms" in t:
                    stages[stage].append(t[f"{stage}_ms"])
            passes.append(t.get("reasoning_passes", 0.0))
            accepted.append(t.get("draft_tokens_accepted", 0.0))
        per_scenario.append({"scenario": label, "frame_sets_sent": sent, "plans": len(stamps),
                             "stamp_to_arrival": _stats(lat),
                             "reasoning_texts": len({texts.get(s, "") for s in stamps})})
    seconds = sum(sent for *_, sent in windows) / args.rate_hz
    result = {
        "variant": name, "parameters": params,
        "stamp_to_arrival": _stats(e2e),
        "stages": {stage: _stats(v) for stage, v in stages.items()},
        "plans": len(e2e), "frame_sets_sent": sent_total,
        "plan_rate_hz": round(len(e2e) / seconds, 2) if seconds else None,
        "reasoning_passes_median": statistics.median(passes) if passes else None,
        "draft_tokens_accepted_median": statistics.median(accepted) if accepted else None,
        "per_scenario": per_scenario, "device": graph.device, "log": str(log),
    }
    result["goal_met"] = _goal_met(result)
    result["limiting_stage"] = _limiting_stage(result)
    return result


def _goal_met(result: dict[str, Any]) -> bool:
    e2e = result["stamp_to_arrival"]
    return bool(e2e["n"] and e2e["median_ms"] <= GOAL_P50_MS and e2e["p99_ms"] <= GOAL_P99_MS
                and result["plan_rate_hz"] is not None and result["plan_rate_hz"] >= 9.0)


def _limiting_stage(result: dict[str, Any]) -> dict[str, Any]:
    """The stage with the largest median and the one with the largest p99."""
    stages = {k: v for k, v in result["stages"].items()
              if k in STAGES and v["n"] and v["median_ms"] is not None}
    if not stages:
        return {}
    by_median = max(stages, key=lambda k: stages[k]["median_ms"])
    by_p99 = max(stages, key=lambda k: stages[k]["p99_ms"])
    return {"by_median": by_median, "median_ms": stages[by_median]["median_ms"],
            "by_p99": by_p99, "p99_ms": stages[by_p99]["p99_ms"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every variant; the result dict."""
    from alpamayo_ros.paths import default_weights_dir

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise ValueError(f"--variants {unknown or names}: choose from {sorted(VARIANTS)}")
    if args.rate_hz <= 0 or args.seconds <= args.warmup_s or args.threads < 1:
        raise ValueError("--rate-hz must be > 0, --seconds > --warmup-s, --threads >= 1")
    scenarios = parse_scenarios(args.scenarios)
    weights = args.weights or str(default_weights_dir())
    load_before = _load()
    results = [run_variant(name, args, scenarios, weights) for name in names]
    load_after = _load()
    gpu = ""
    if any(r["device"].startswith("cuda") for r in results):
        import torch

        gpu = torch.cuda.get_device_name(0)
    import torch

    report: dict[str, Any] = {
        "benchmark": "latency",
        "what": "camera stamp -> Trajectory arrival through camera_sync + policy (one "
                "process, as the bring-ups run it), reasoning on, per variant",
        "goal": {"median_ms": GOAL_P50_MS, "p99_ms": GOAL_P99_MS, "plan_rate_hz": 10.0},
        "weights": weights, "scenarios": [f"{f}:{s}" for f, s in scenarios],
        "seconds_per_scenario": args.seconds, "warmup_s_per_scenario": args.warmup_s,
        "rate_hz": args.rate_hz, "variants": results,
        "machine": {"cpu": _cpu_name(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "gpu": gpu or None,
                    "policy_device": sorted({r["device"] for r in results}),
                    "torch_threads": args.threads, "torch": torch.__version__,
                    "load_average_before_after": [load_before, load_after]},
        "how": "frames published by this process with stamp = wall clock at publish; "
               "plan latency = arrival (wall clock, same host) - header.stamp; stage times "
               "from the node's per-plan diagnostics; statistics over the plans whose "
               "camera stamp falls after each scenario's warm-up",
    }
    if len(results) > 1:
        base = results[0]
        report["ratios_vs_" + base["variant"]] = {
            r["variant"]: {
                "stamp_to_arrival_median": _ratio(base["stamp_to_arrival"]["median_ms"],
                                                  r["stamp_to_arrival"]["median_ms"]),
                "stamp_to_arrival_p99": _ratio(base["stamp_to_arrival"]["p99_ms"],
                                               r["stamp_to_arrival"]["p99_ms"]),
                "reasoning_median": _ratio(base["stages"]["model_reasoning"]["median_ms"],
                                           r["stages"]["model_reasoning"]["median_ms"]),
            } for r in results[1:]}
    return report


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def bench(args: argparse.Namespace) -> int:
    """Entry point: print the JSON (and write it to ``--out``)."""
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0
