"""``alpamayo demo`` (``make demo``): the trained policy drives the ROS 2 graph closed loop.

For each scenario of a short suite of held-out scenarios (test seeds, several decision
types) it starts the processes of the ``simulation`` bring-up exactly as ``alpamayo up`` /
``ros2 launch`` start them (same commands, parameter files and arguments): the policy
node (camera sync + policy, the shipped weights unless ``--weights``) and the controller
first; once the policy node reports its lifecycle state *active* it starts the simulator
(``on_end:=stop``), so the episode begins with the policy ready; the simulator's driver hands
over at the first command that follows a plan (``engage_on``). A recorder process
writes every topic to an MCAP bag. This process listens on the graph like RViz would:

- while it runs, the terminal shows each plan's reasoning, decisions, speed and the
  controller's safety state;
- at the end of each episode it stops the processes (SIGINT) and computes the
  closed-loop metrics of :mod:`alpamayo_ros.eval.closed_loop` from what it received
  (odometry, obstacles, plans, safety status): at-fault collisions, off-road, progress
  against the expert on the same scenario, comfort and safety interventions;
- at the end it prints the per-scenario table, writes ``summary.json``, ``summary.md`` and
  a self-contained ``report.html`` (camera mosaics with the plan drawn into the front
  camera, a bird's-eye view, the reasoning at each plan), ``preview.png`` (the first
  scenario's middle frame and bird's-eye view: the README's picture) and lists the bags.

It fails loudly (exit 1) when the graph does not drive: no plans, every plan rejected,
no progress, or an at-fault collision in a scenario where the expert has none.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alpamayo_ros import graph, topics
from alpamayo_ros.ros.up import node_command

NS_PER_S = 1_000_000_000
REPORT_FRAME_PERIOD_S = 2.0  # camera mosaics in the report: one plan every 2 s


@dataclass(frozen=True)
class DemoScenario:
    """One scenario of the demo suite."""

    family: str
    seed: int
    title: str


# Held-out seeds (>= 9000: never trained on); one scenario per decision type the issue names.
DEFAULT_SUITE = (
    DemoScenario("lead_at_red_light", 9000, "A red light behind a braking lead"),
    DemoScenario("cut_in", 9000, "A car cuts in"),
    DemoScenario("hidden_pedestrian", 9000, "A pedestrian steps out from behind a parked van"),
    DemoScenario("merge", 9000, "Merging onto the main road"),
    DemoScenario("stop_sign", 9000, "A stop sign"),
)


# --------------------------------------------------------------------------- listening
@dataclass
class _Received:
    """What the listener kept of one episode."""

    odometry: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    obstacles: list[tuple[int, np.ndarray, tuple[str, ...]]] = field(default_factory=list)
    plans: dict[int, Any] = field(default_factory=dict)  # stamp -> core Trajectory
    reasoning: dict[int, Any] = field(default_factory=dict)  # stamp -> Reasoning msg
    statuses: list[tuple[int, int, int, tuple[str, ...]]] = field(default_factory=list)
    frames: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # plan stamp
    navigation: str = ""
    sim_finished: bool = False  # the simulator's diagnostics report the episode's end


class Listener:
    """An rclpy node in this process recording the graph's outputs and printing them live."""

    def __init__(self, cameras: list[str], compressed: bool, echo: bool = True) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String

        from alpamayo_ros.msg import ObstacleArray, Reasoning, SafetyStatus, Trajectory
        from alpamayo_ros.ros.qos import latched_qos, plan_qos, sensor_qos

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("alpamayo_demo_listener", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.cameras, self.compressed, self.echo = cameras, compressed, echo
        self.lock = threading.Lock()
        self.data = _Received()
        self.label = ""
        self._images: deque[tuple[int, dict[str, Any]]] = deque(maxlen=60)
        self._last_frame_s = -math.inf
        self._t0_ns: int | None = None
        node = self.node
        node.create_subscription(Odometry, topics.ODOMETRY, self._on_odometry, sensor_qos())
        node.create_subscription(ObstacleArray, topics.OBSTACLES, self._on_obstacles,
                                 plan_qos())
        node.create_subscription(Trajectory, topics.TRAJECTORY, self._on_plan, plan_qos())
        node.create_subscription(Reasoning, topics.REASONING, self._on_reasoning, plan_qos())
        deep = plan_qos()  # 50 Hz: 4 s queued, so falling behind loses no control cycle
        deep.depth = 200
        node.create_subscription(SafetyStatus, topics.SAFETY_STATUS, self._on_status, deep)
        node.create_subscription(String, topics.NAVIGATION, self._on_navigation,
                                 latched_qos())
        node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics,
                                 plan_qos())
        image_type = CompressedImage if compressed else Image
        for cam in cameras:
            node.create_subscription(image_type, topics.image_topic(cam, compressed),
                                     lambda m, c=cam: self._on_image(c, m), sensor_qos())
        self._subscribe_extra(node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _subscribe_extra(self, node: Any) -> None:
        """Subclasses add their subscriptions/publishers here (before spinning starts)."""

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def reset(self, label: str) -> None:
        """Start a new episode's record."""
        with self.lock:
            self.data, self.label = _Received(), label
            self._images.clear()
            self._last_frame_s, self._t0_ns = -math.inf, None

    def episode_time_s(self, stamp_ns: int) -> float:
        """Seconds since the episode's first odometry."""
        return (stamp_ns - self._t0_ns) / NS_PER_S if self._t0_ns is not None else 0.0

    # ---------------------------------------------------------------- callbacks
    def _on_odometry(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import odometry_to_pose

        p = odometry_to_pose(msg)
        with self.lock:
            if self._t0_ns is None:
                self._t0_ns = p.stamp_ns
            self.data.odometry.append((p.stamp_ns, p.x_m, p.y_m, p.heading_rad, p.speed_mps))

    def _on_obstacles(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import obstacles_from_msg

        try:
            obstacles, stamp_ns = obstacles_from_msg(msg)
        except ValueError:
            return
        arr = np.array([[o.x_m, o.y_m, o.yaw_rad, o.length_m, o.width_m, o.vx_mps, o.vy_mps]
                        for o in obstacles], dtype=np.float64).reshape(-1, 7)
        with self.lock:
            self.data.obstacles.append((stamp_ns, arr, tuple(o.id for o in obstacles)))

    def _on_image(self, camera: str, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import ns_from_time

        stamp = ns_from_time(msg.header.stamp)
        with self.lock:
            if not self._images or self._images[-1][0] != stamp:
                self._images.append((stamp, {}))
            for s, imgs in reversed(self._images):
                if s == stamp:
                    imgs[camera] = msg
                    break

    def _on_plan(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import msg_to_trajectory

        plan = msg_to_trajectory(msg)
        with self.lock:
            self.data.plans[plan.stamp_ns] = plan
            t = self.episode_time_s(plan.stamp_ns)
            if t - self._last_frame_s >= REPORT_FRAME_PERIOD_S:
                found = next((imgs for s, imgs in self._images if s == plan.stamp_ns), None)
                if found and len(found) == len(self.cameras):
                    self.data.frames[plan.stamp_ns] = dict(found)  # decoded at the end
                    self._last_frame_s = t

    def _on_reasoning(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import ns_from_time

        stamp = ns_from_time(msg.header.stamp)
        with self.lock:
            self.data.reasoning[stamp] = msg
            speed = self.data.odometry[-1][4] if self.data.odometry else 0.0
            state = self.data.statuses[-1][1] if self.data.statuses else -1
            t = self.episode_time_s(stamp)
        if self.echo:
            names = {0: "OK", 1: "DEGRADED", 2: "FALLBACK"}
            decisions = f"{msg.longitudinal_decision or '?'} / {msg.lateral_decision or '?'}"
            print(f"  [{self.label} t={t:5.1f} s v={speed:4.1f} m/s "
                  f"{names.get(state, '-'):8}] {decisions}: {msg.text}", flush=True)

    def _on_status(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import ns_from_time

        with self.lock:
            self.data.statuses.append((ns_from_time(msg.header.stamp), int(msg.state),
                                       ns_from_time(msg.active_plan_stamp),
                                       tuple(msg.failed_checks)))

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.hardware_id == "alpamayo_sim":  # the simulator node
                values = {kv.key: kv.value for kv in status.values}
                if values.get("finished", "").lower() == "true":
                    with self.lock:
                        self.data.sim_finished = True

    def _on_navigation(self, msg: Any) -> None:
        with self.lock:
            self.data.navigation = msg.data

    def latest_odometry_ns(self) -> int | None:
        """Stamp of the newest odometry received this episode (the sim time), or None."""
        with self.lock:
            return self.data.odometry[-1][0] if self.data.odometry else None

    def snapshot(self) -> _Received:
        """The episode's record (the listener keeps filling a new one after reset)."""
        with self.lock:
            return self.data

    def close(self) -> None:
        """Stop spinning and shut the listener's context down."""
        import rclpy

        self._stop = True
        self._thread.join(timeout=10.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


# --------------------------------------------------------------------------- processes
def _policy_active(node: Any, timeout_s: float) -> bool:
    """Whether ``/alpamayo_policy`` reports lifecycle state *active* within ``timeout_s``."""
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState

    client = node.create_client(GetState, "/alpamayo_policy/get_state")
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if client.wait_for_service(timeout_sec=0.5):
                future = client.call_async(GetState.Request())
                end = time.monotonic() + 2.0
                while not future.done() and time.monotonic() < end:
                    time.sleep(0.05)
                result = future.result() if future.done() else None
                if result is not None and result.current_state.id == State.PRIMARY_STATE_ACTIVE:
                    return True
            time.sleep(0.5)
        return False
    finally:
        node.destroy_client(client)


def _controller_up(node: Any, timeout_s: float) -> bool:
    """Whether the controller's command publisher appears in the graph within ``timeout_s``.

    The simulator starts only then: a controller still importing when the episode begins
    takes over a moving car late, and its first cycles run under the start-up load.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.count_publishers(topics.CONTROL_COMMAND) > 0:
            return True
        time.sleep(0.1)
    return False


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(procs: list[subprocess.Popen], grace_s: float = 15.0) -> list[int]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    codes = []
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        codes.append(proc.returncode)
    return codes


def bringup_commands(values: dict[str, str]) -> dict[str, list[str]]:
    """The ``simulation`` bring-up's commands by node name (``alpamayo up``'s)."""
    resolved = graph.resolve("simulation", values)
    return {spec.name: node_command(spec, resolved) for spec in graph.nodes("simulation")}


# --------------------------------------------------------------------------- one episode
@dataclass
class EpisodeRun:
    """What :func:`run_episode`'s hook sees each turn of its wait loop (every 0.2 s)."""

    label: str
    listener: Listener
    procs: dict[str, subprocess.Popen]  # by node name; the hook may replace one (restart)
    commands: dict[str, list[str]]  # the nodes' command lines
    env: dict[str, str]
    logs: Path
    t_s: float  # simulated seconds since the episode's first odometry (0 before it)


EpisodeHook = Callable[[EpisodeRun], None]


@dataclass
class EpisodeResult:
    """One scenario's outcome."""

    scenario: DemoScenario
    metrics: dict[str, Any]
    expert_collision: bool
    report: Any  # alpamayo_ros.eval.report.ReportScenario
    bag: Path | None
    failures: list[str]
    wall_s: float


def run_episode(scn: DemoScenario, args: argparse.Namespace, env: dict[str, str],
                listener: Listener, out: Path, hook: EpisodeHook | None = None
                ) -> EpisodeResult:
    """Run one scenario through the graph and evaluate what arrived.

    ``hook`` (``alpamayo soak``'s fault injector) is called every turn of the wait loop
    while the simulator runs, before the processes are checked.
    """
    from alpamayo_ros.data.scenarios import FAMILY_DURATION_S

    label = f"{scn.family} {scn.seed}"
    duration_s = args.duration or FAMILY_DURATION_S.get(scn.family, 20.0)
    values = {"weights_dir": args.weights, "device": args.device, "family": scn.family,
              "seed": str(scn.seed), "compressed": "true", "use_sim_time": "true"}
    if args.max_reasoning_tokens:
        values["max_reasoning_tokens"] = str(args.max_reasoning_tokens)
    commands = bringup_commands(values)
    commands["alpamayo_sim"] += ["-p", "on_end:=stop", "-p", f"duration_s:={duration_s}"]
    if args.torch_threads:
        # The whole graph shares this machine: torch's default (every core) oversubscribes
        # it while the simulator renders (docs/RESULTS.md, "Latency").
        commands["alpamayo_policy"] += ["-p", f"torch_threads:={args.torch_threads}"]
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = f"{scn.family}_{scn.seed}"
    started = time.monotonic()
    procs: dict[str, subprocess.Popen] = {}
    bag = None
    if args.bag:
        bag = out / "bags" / name
        bag.parent.mkdir(parents=True, exist_ok=True)
        procs["recorder"] = _start(
            [sys.executable, "-m", "alpamayo_ros.cli", "record", "--all", "--out", str(bag),
             "--ros-args", "-p", "use_sim_time:=true"], env, logs / f"{name}_recorder.log")
    for node_name in ("alpamayo_policy", "alpamayo_controller"):
        procs[node_name] = _start(commands[node_name], env, logs / f"{name}_{node_name}.log")
    failures: list[str] = []
    try:
        if not _policy_active(listener.node, args.startup_timeout):
            raise RuntimeError(f"{label}: the policy node did not become active within "
                               f"{args.startup_timeout:g} s (log: "
                               f"{logs / f'{name}_alpamayo_policy.log'})")
        if not _controller_up(listener.node, args.startup_timeout):
            raise RuntimeError(f"{label}: the controller did not come up within "
                               f"{args.startup_timeout:g} s (log: "
                               f"{logs / f'{name}_alpamayo_controller.log'})")
        listener.reset(label)
        print(f"[demo] {scn.title} ({label}, {duration_s:g} s): driving", flush=True)
        procs["alpamayo_sim"] = _start(commands["alpamayo_sim"], env,
                                       logs / f"{name}_alpamayo_sim.log")
        budget_s = args.startup_timeout + 6.0 * duration_s
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            if listener.snapshot().sim_finished:  # on_end:=stop: the episode is over
                break
            if hook is not None:
                stamp = listener.latest_odometry_ns()
                hook(EpisodeRun(label, listener, procs, commands, env, logs,
                                listener.episode_time_s(stamp) if stamp is not None else 0.0))
            dead = [p for p in procs.values() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{label}: a process exited early ({dead[0].args[:3]}, "
                                   f"code {dead[0].returncode}); logs in {logs}")
            time.sleep(0.2)
        else:
            failures.append(f"the simulator did not finish its {duration_s:g} s episode "
                            f"within {budget_s:g} s")
    finally:
        # The simulator first (its last frames stop), then the others.
        codes = _stop(list(procs.values())[::-1])
    if any(c not in (0, None) for c in codes):
        print(f"[demo] {label}: exit codes {codes[::-1]} (logs in {logs})", flush=True)
    data = listener.snapshot()
    metrics, expert_collision, report = evaluate_episode(scn, data, duration_s)
    failures += episode_failures(metrics, expert_collision)
    return EpisodeResult(scn, metrics, expert_collision, report, bag, failures,
                         time.monotonic() - started)


def episode_failures(metrics: dict[str, Any], expert_collision: bool) -> list[str]:
    """Why an episode shows that the graph did not drive (empty: it drove)."""
    failures = []
    if not metrics["plans"]:
        failures.append("no plan arrived")
    elif metrics["accepted_plans"] == 0:
        failures.append(f"every plan ({metrics['plans']}) was rejected by the safety monitor")
    if metrics["progress_m"] <= 1.0:
        failures.append(f"no progress ({metrics['progress_m']:.1f} m)")
    if metrics["collision"] and not expert_collision:
        failures.append("an at-fault collision where the expert has none")
    return failures


def _decode(msg: Any) -> np.ndarray:
    from alpamayo_ros.ros.images import compressed_to_rgb, image_to_rgb

    return compressed_to_rgb(msg) if hasattr(msg, "format") else image_to_rgb(msg)


def evaluate_episode(scn: DemoScenario, data: _Received, duration_s: float
                     ) -> tuple[dict[str, Any], bool, Any]:
    """Closed-loop metrics of what arrived, the expert's collision flag, the report entry."""
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.data.scenarios import make_scenario
    from alpamayo_ros.eval import closed_loop as cl
    from alpamayo_ros.eval.report import ReportFrame, ReportPlan, ReportScenario, plan_to_map
    from alpamayo_ros.sim.ego import frenet_from_world
    from alpamayo_ros.sim.simulator import off_road

    world = make_scenario(scn.family, scn.seed, duration_s).world
    road, ego = world.road, world.ego
    trace = cl.Trace(scn.family, scn.seed, "demo", ego_size_m=(ego.length_m, ego.width_m),
                     lights=cl.trace_lights(world), stop_signs=cl.trace_stop_signs(world))
    odom = sorted(data.odometry)
    t0 = odom[0][0] if odom else 0
    obstacles = sorted(data.obstacles, key=lambda o: o[0])
    obstacle_stamps = [o[0] for o in obstacles]
    track = []
    next_t = 0.0
    s_hint = ego.s
    for stamp, x, y, h, v in odom:  # 10 Hz samples, like the in-process suite
        t = (stamp - t0) / NS_PER_S
        if t + 1e-6 < next_t:
            continue
        next_t = round(t / cl.TRACE_DT_S) * cl.TRACE_DT_S + cl.TRACE_DT_S
        s, d = frenet_from_world(road, x, y, s_hint=s_hint)
        s_hint = s
        k = int(np.searchsorted(obstacle_stamps, stamp, side="right")) - 1
        agents, ids = (obstacles[k][1], obstacles[k][2]) if k >= 0 else (np.zeros((0, 7)), ())
        trace.add(t, x, y, h, v, s,
                  off_road(world, x, y, h, ego.length_m, ego.width_m, s_hint=s),
                  agents, ids, cl.in_oncoming_lane(world, d))
        track.append((t, x, y, h, v))
    accepted = {s[2] for s in data.statuses if s[2]}
    trace.control_cycles = len(data.statuses)
    trace.fallback_cycles = sum(1 for s in data.statuses if s[1] != 0)
    plans = []
    pose_stamps = [o[0] for o in odom]
    for stamp in sorted(data.plans):
        plan = data.plans[stamp]
        msg = data.reasoning.get(stamp)
        text = msg.text if msg is not None else ""
        decisions = ((msg.longitudinal_decision, msg.lateral_decision) if msg is not None
                     else ("", ""))
        later = [s for s in data.statuses if s[0] >= stamp]
        failed = next((s[3] for s in later if s[3]), ())
        state = later[0][1] if later else -1
        was_accepted = stamp in accepted
        trace.rejected_plans += not was_accepted
        trace.plans.append({"t_s": round((stamp - t0) / NS_PER_S, 2), "accepted": was_accepted,
                            "reasoning": text, "decisions": list(decisions)})
        k = max(int(np.searchsorted(pose_stamps, stamp)) - 1, 0)
        _, px, py, ph, _ = odom[k] if odom else (0, 0.0, 0.0, 0.0, 0.0)
        xy = np.stack([plan.x_m, plan.y_m], axis=1)
        xy_map = plan_to_map(xy, px, py, ph)
        plans.append(ReportPlan(
            t_s=(stamp - t0) / NS_PER_S, plan_xy_ego=xy, plan_xy_map=xy_map, reasoning=text,
            decisions=decisions, accepted=was_accepted,
            failed_checks=tuple(failed) if not was_accepted else (),
            safety_state={0: "OK", 1: "DEGRADED", 2: "FALLBACK"}.get(state, "-")))
    config = cl.ClosedLoopConfig(families=(scn.family,), seeds=(scn.seed,),
                                 duration_s=duration_s)
    expert = cl.expert_trace(scn.family, scn.seed, config)
    expert_metrics = cl.scenario_metrics(expert, None)
    metrics = cl.scenario_metrics(trace, expert_metrics["progress_m"])
    metrics["accepted_plans"] = len(accepted & set(data.plans))
    metrics["navigation"] = data.navigation
    metrics["expert_progress_m"] = expert_metrics["progress_m"]
    frames = []
    for stamp, msgs in sorted(data.frames.items()):
        plan = data.plans.get(stamp)
        frames.append(ReportFrame(
            t_s=(stamp - t0) / NS_PER_S, images={c: _decode(m) for c, m in msgs.items()},
            plan_xy_ego=np.stack([plan.x_m, plan.y_m], axis=1) if plan is not None else None))
    agents_track = [((s - t0) / NS_PER_S, a, i) for s, a, i in obstacles]
    report = ReportScenario(
        family=scn.family, seed=scn.seed, title=scn.title, metrics=metrics,
        ego_track=np.array(track, dtype=np.float64).reshape(-1, 5),
        agents_track=agents_track, plans=plans, frames=frames, world=world,
        rig=make_rig("ar1"))
    return metrics, bool(expert_metrics["collision"]), report


# --------------------------------------------------------------------------- summary
TABLE_COLUMNS = ("scenario", "decisions taken", "cited cause", "collision", "off-road",
                 "red light", "stop sign", "progress", "comfort", "interventions", "PDMS")


def _cause(example: str, limit: int = 70) -> str:
    """The cause clause of a reasoning text: what follows 'because'/'since', or its start."""
    lowered = example.lower()
    clause = example.split(".")[0]
    for word in ("because ", "since ", "as "):
        i = lowered.find(word)
        if i >= 0:
            clause = example[i + len(word):].split(".")[0]
            break
    clause = clause.split(";")[0].strip()
    if len(clause) > limit:
        clause = clause[:limit].rsplit(" ", 1)[0] + " …"
    return clause


def summary_rows(results: list[EpisodeResult]) -> list[dict[str, str]]:
    """One printable row per scenario."""
    rows = []
    for r in results:
        m = r.metrics
        dec = m.get("decisions") or {}
        lon = next(iter(dec.get("longitudinal", {})), "–")
        lat = next(iter(dec.get("lateral", {})), "–")
        rows.append({
            "scenario": f"{r.scenario.title} ({r.scenario.family} {r.scenario.seed})",
            "decisions taken": f"{lon} / {lat}",
            "cited cause": _cause(dec.get("example", "")) if dec else "–",
            "collision": ("at fault" if m["collision"] else
                          "not at fault" if m["collisions"] else "none"),
            "off-road": "yes" if m["off_road"] else "no",
            "red light": "ran it" if m["red_light"] else "no",
            "stop sign": "ran it" if m["stop_sign"] else "no",
            "progress": f"{m['progress_m']:.0f} m ({100 * m['progress_ratio']:.0f} % of expert)",
            "comfort": "yes" if m["comfort"] else "no",
            "interventions": (f"{m['rejected_plans']}/{m['plans']} plans rejected, "
                              f"{100 * m['fallback_share']:.0f} % fallback"),
            "PDMS": f"{m['pdm_score']:.2f}",
        })
    return rows


def summary_markdown(rows: list[dict[str, str]]) -> str:
    """The rows as a markdown table."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(r[c].replace("|", "/") for c in TABLE_COLUMNS) + " |"
              for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command
def _parse_scenarios(items: list[str]) -> tuple[DemoScenario, ...]:
    from alpamayo_ros.data.scenarios import FAMILIES

    out = []
    for item in items:
        family, _, seed = item.partition(":")
        if family not in FAMILIES or not seed.isdigit():
            raise ValueError(f"--scenarios takes family:seed with a family of "
                             f"{sorted(FAMILIES)}, got {item!r}")
        out.append(DemoScenario(family, int(seed), family.replace("_", " ")))
    return tuple(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``alpamayo demo``."""
    parser.add_argument("--scenarios", nargs="+", default=None, metavar="FAMILY:SEED",
                        help="scenarios to drive (default: the held-out demo suite)")
    add_graph_arguments(parser)
    parser.add_argument("--out", default="out/demo", help="output directory")
    parser.add_argument("--no-bag", dest="bag", action="store_false",
                        help="do not record the MCAP bags")
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help="do not write report.html")


def add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments :func:`run_episode` reads (also ``alpamayo soak``'s)."""
    parser.add_argument("--weights", default="",
                        help="policy weights (default: the shipped weights/default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds per scenario (0: the family's own, 20 or 24 s)")
    parser.add_argument("--max-reasoning-tokens", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="the policy's torch CPU threads (0: torch's default)")
    parser.add_argument("--startup-timeout", type=float, default=90.0,
                        help="seconds the policy node may take to become active")


def prepare_run(out_dir: str) -> tuple[Path, dict[str, str]]:
    """Empty the output folder and build the environment of the graph's processes.

    The folder holds this command's own earlier output. The environment gets the DDS
    transport for 7 camera streams and unbuffered output; this process receives the camera
    streams too, so it gets the transport as well.
    """
    from alpamayo_ros.ros.transport import configure_dds_transport

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    configure_dds_transport(env)
    configure_dds_transport()
    env["PYTHONUNBUFFERED"] = "1"
    return out, env


def demo(args: argparse.Namespace) -> int:
    """Run the suite; 0 when the graph drove every scenario, 1 otherwise."""
    from alpamayo_ros.data.cameras import make_rig

    try:
        suite = _parse_scenarios(args.scenarios) if args.scenarios else DEFAULT_SUITE
    except ValueError as exc:
        print(f"alpamayo demo: {exc}", file=sys.stderr)
        return 2
    out, env = prepare_run(args.out)
    weights = args.weights or "shipped weights/default"
    print(f"[demo] {len(suite)} held-out scenarios through the simulation bring-up "
          f"(policy: {weights}); output in {out}", flush=True)
    listener = Listener([c.name for c in make_rig("ar1").cameras], compressed=True)
    results: list[EpisodeResult] = []
    started = time.monotonic()
    try:
        for scn in suite:
            result = run_episode(scn, args, env, listener, out)
            results.append(result)
            m = result.metrics
            verdict = "FAILED: " + "; ".join(result.failures) if result.failures else "ok"
            print(f"[demo] {scn.family} {scn.seed}: progress {m['progress_m']:.0f} m, "
                  f"collision {m['collision']}, off-road {m['off_road']}, "
                  f"{m['accepted_plans']}/{m['plans']} plans accepted, PDMS "
                  f"{m['pdm_score']:.2f} ({result.wall_s:.0f} s) -> {verdict}", flush=True)
    finally:
        listener.close()
    rows = summary_rows(results)
    table = summary_markdown(rows)
    failures = [f"{r.scenario.family} {r.scenario.seed}: {f}" for r in results
                for f in r.failures]
    summary = {"scenarios": [{"family": r.scenario.family, "seed": r.scenario.seed,
                              "title": r.scenario.title, "metrics": r.metrics,
                              "expert_collision": r.expert_collision,
                              "bag": str(r.bag) if r.bag else None,
                              "failures": r.failures, "wall_s": round(r.wall_s, 1)}
                             for r in results],
               "weights": weights, "wall_s": round(time.monotonic() - started, 1),
               "failures": failures}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "summary.md").write_text(table)
    print("\n" + table, flush=True)
    if args.report:
        from alpamayo_ros.eval.report import write_preview_png, write_report

        notes = [f"policy: {weights}; every scenario on a held-out test seed (>= 9000)",
                 "metrics: alpamayo_ros/eval/closed_loop.py, computed from the topics the "
                 "demo received", *failures]
        path = write_report([r.report for r in results], out / "report.html",
                            "alpamayo_ros closed-loop demo", table, notes)
        print(f"[demo] report: {path}", flush=True)
        if results:
            preview = write_preview_png(results[0].report, out / "preview.png",
                                        max_bytes=400_000)
            print(f"[demo] preview picture: {preview}", flush=True)
    for r in results:
        if r.bag:
            print(f"[demo] bag: {r.bag} (ros2 bag info / Foxglove)", flush=True)
    print(f"[demo] {len(results)} scenarios in {time.monotonic() - started:.0f} s", flush=True)
    if failures:
        print("demo FAILED: the graph did not drive:\n  " + "\n  ".join(failures), flush=True)
        return 1
    print("demo OK", flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo demo``."""
    p = subparsers.add_parser("demo", help="the trained policy drives the ROS graph closed "
                                           "loop over held-out scenarios",
                              description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=demo)
