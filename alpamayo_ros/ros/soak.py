"""``alpamayo soak``: the closed-loop demo graph over a scenario suite, faults at random times.

Each scenario runs exactly as in ``alpamayo demo`` (:func:`alpamayo_ros.ros.demo.run_episode`:
the policy and controller processes of the ``simulation`` bring-up, then the simulator
with ``on_end:=stop``) while a :class:`FaultInjector`, called from the episode's wait loop,
injects the faults of the seeded schedule (:func:`alpamayo_ros.eval.soak.schedule_faults`)
from outside the nodes:

- ``nan_plan`` / ``jerk_plan`` / ``stale_plan``: a burst of invalid plans (10 Hz) published
  on the trajectory topic, stamped just before the newest odometry (so the controller
  can place them; ``stale_plan`` 3 s before it);
- ``policy_freeze``: SIGSTOP to the policy process, SIGCONT once the drawn hold has passed
  in sim time;
- ``policy_restart``: SIGKILL to the policy process, started again at once with the same
  command (it loads the weights and activates itself, as after a crash under
  ``alpamayo up``);
- ``corrupt_frames``: for each frame of one camera (``--corrupt-camera``) received during
  the hold, a copy with the same header and garbage bytes for the jpeg.

This process listens like the demo (:class:`SoakListener`, a demo ``Listener`` that also
keeps the ``ControlCommand`` stamps, the safety status' reason, the plans' speeds and
every ``/diagnostics`` status) and, after each episode, the closed-loop metrics of
``evaluate_episode`` give the at-fault collisions. The analysis
(:func:`alpamayo_ros.eval.soak.analyse`) writes ``soak.json`` and ``soak.md``; the exit
code is 1 when a pass line fails (no at-fault collision, every fault detected, largest
command gap <= 40 ms, driving resumed after each fault, no invalid plan executed, the
simulated time driven); ``records/<episode>.json`` hold each episode's status
transitions, plans and diagnostics, for looking into a line that failed.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from alpamayo_ros import topics
from alpamayo_ros.eval import soak as core
from alpamayo_ros.ros import demo

NS_PER_S = 1_000_000_000
POLICY = "alpamayo_policy"
PLAN_PERIOD_S = 0.1  # invalid plans of a burst, 10 Hz
STAMP_OFFSET_NS = 7_000_001  # off the sim's 10 ms tick grid: never a policy plan's stamp
STALE_PLAN_AGE_S = 3.0
GARBAGE_BYTES = 4096


SIM_PACING_KEYS = ("lag_s", "pace_slips", "real_time_factor")


def _kept_values(status: Any) -> dict[str, str]:
    """A diagnostic status' values for the record; of the simulator's, its pacing only.

    A sim step that ran late shows in the controller's stamps as a command gap.
    """
    values = {kv.key: kv.value for kv in status.values}
    if status.hardware_id == "alpamayo_sim":
        return {k: values[k] for k in SIM_PACING_KEYS if k in values}
    return values


class SoakListener(demo.Listener):
    """The demo's listener plus what the soak analysis needs; it also injects frames/plans."""

    def __init__(self, corrupt_camera: str) -> None:
        self.corrupt_camera = corrupt_camera
        self.garbage = b"\xff\xd8\xff\xe0" + np.random.default_rng(0).integers(
            0, 256, GARBAGE_BYTES, dtype=np.uint8).tobytes()
        self._corrupt_active = False
        self.corrupt_frames = 0
        self.injected_plans: set[int] = set()
        self._soak_reset()
        super().__init__([], compressed=True, echo=False)

    def _soak_reset(self) -> None:
        self.commands: list[core.CommandSample] = []
        self.status_reasons: dict[int, str] = {}
        self.plan_speeds: dict[int, float] = {}
        self.diagnostics: list[core.DiagnosticSample] = []

    def _subscribe_extra(self, node: Any) -> None:
        from sensor_msgs.msg import CompressedImage

        from alpamayo_ros.msg import ControlCommand
        from alpamayo_ros.msg import Trajectory as TrajectoryMsg
        from alpamayo_ros.ros.qos import plan_qos, sensor_qos

        # 4 s of commands queued: this process falling behind must not look like a gap
        deep = plan_qos()
        deep.depth = 200
        node.create_subscription(ControlCommand, topics.CONTROL_COMMAND, self._on_command,
                                 deep)
        camera_topic = topics.image_topic(self.corrupt_camera, True)
        node.create_subscription(CompressedImage, camera_topic, self._on_camera, sensor_qos())
        self.plan_pub = node.create_publisher(TrajectoryMsg, topics.TRAJECTORY, plan_qos())
        self.camera_pub = node.create_publisher(CompressedImage, camera_topic, sensor_qos())

    def reset(self, label: str) -> None:
        """Start a new episode's record."""
        super().reset(label)
        with self.lock:
            self._soak_reset()

    # ---------------------------------------------------------------- callbacks
    def _on_command(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import ns_from_time

        sample = core.CommandSample(ns_from_time(msg.header.stamp), int(msg.source),
                                    ns_from_time(msg.plan_stamp))
        with self.lock:
            self.commands.append(sample)

    def _on_status(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import ns_from_time

        super()._on_status(msg)
        with self.lock:
            self.status_reasons[ns_from_time(msg.header.stamp)] = msg.reason

    def _on_plan(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import ns_from_time

        stamp = ns_from_time(msg.header.stamp)
        if stamp in self.injected_plans:
            return  # ours: not the policy's driving
        super()._on_plan(msg)
        speeds = [p.velocity for p in msg.points]
        with self.lock:
            self.plan_speeds[stamp] = float(np.max(speeds)) if speeds else 0.0

    def _on_diagnostics(self, msg: Any) -> None:
        from alpamayo_ros.ros.conversions import ns_from_time

        super()._on_diagnostics(msg)
        stamp = ns_from_time(msg.header.stamp)
        samples = [core.DiagnosticSample(stamp, s.name, _kept_values(s)) for s in msg.status]
        with self.lock:
            self.diagnostics += samples

    def _on_camera(self, msg: Any) -> None:
        from sensor_msgs.msg import CompressedImage

        if not self._corrupt_active or bytes(msg.data[:8]) == self.garbage[:8]:
            return  # not corrupting now, or our own garbage coming back
        out = CompressedImage(header=msg.header, format="jpeg")
        out.data = array.array("B", self.garbage)
        self.camera_pub.publish(out)
        self.corrupt_frames += 1

    def set_corrupt(self, active: bool) -> None:
        """Start/stop corrupting the camera's frames."""
        self._corrupt_active = active

    # ---------------------------------------------------------------- the record
    def episode_record(self, scn: demo.DemoScenario, duration_s: float) -> core.EpisodeRecord:
        """What the analysis needs of the episode just run (empty if it never started)."""
        label = f"{scn.family} {scn.seed}"
        record = core.EpisodeRecord(label=label, duration_s=duration_s)
        with self.lock:
            if self.label != label:
                return record
            data = self.data
            record.statuses = [core.StatusSample(s[0], s[1], s[2], tuple(s[3]),
                                                 self.status_reasons.get(s[0], ""))
                               for s in sorted(data.statuses)]
            record.commands = sorted(self.commands)
            odometry = sorted(data.odometry)
            record.speeds = [(o[0], o[4]) for o in odometry]
            record.plan_speeds = dict(self.plan_speeds)
            record.diagnostics = list(self.diagnostics)
        add_route(record, scn.family, scn.seed, duration_s, odometry)
        return record


def add_route(record: core.EpisodeRecord, family: str, seed: int, duration_s: float,
              odometry: list[tuple[int, float, float, float, float]]) -> None:
    """Fill ``record``'s route positions and where the expert stands (resumed driving).

    ``odometry``: (stamp, x, y, heading, speed) samples of the episode; the expert is the
    data engine's, driving the same scenario in process.
    """
    from alpamayo_ros.data.scenarios import make_scenario
    from alpamayo_ros.eval import closed_loop as cl
    from alpamayo_ros.sim.ego import frenet_from_world

    road = make_scenario(family, seed, duration_s).world.road
    s_hint = None
    for stamp, x, y, _, _ in odometry:
        s_hint, _ = frenet_from_world(road, x, y, s_hint=s_hint)
        record.route_s.append((stamp, float(s_hint)))
    expert = cl.expert_trace(family, seed, cl.ClosedLoopConfig(
        families=(family,), seeds=(seed,), duration_s=duration_s))
    record.expert_stands_s = core.standing_positions(
        expert.s_m, [e[3] for e in expert.ego], core.SoakConfig.moving_speed_mps)


class FaultInjector:
    """Injects one episode's scheduled faults; ``run_episode`` calls it every 0.2 s."""

    def __init__(self, events: list[core.FaultEvent], listener: SoakListener,
                 label: str) -> None:
        self.pending = sorted(events, key=lambda e: e.start_s)
        self.listener = listener
        self.label = label
        self.faults: list[core.InjectedFault] = []
        self._threads: list[threading.Thread] = []
        self._stopped: set[int] = set()  # pids held by SIGSTOP
        self._restarts = 0

    def _now_ns(self) -> int:
        return self.listener.latest_odometry_ns() or 0

    def _wait_sim(self, start_ns: int, hold_s: float) -> None:
        """Until ``hold_s`` of sim time passed since ``start_ns`` (wall cap: 4x + 5 s)."""
        deadline = time.monotonic() + 4.0 * hold_s + 5.0
        while (self._now_ns() - start_ns < hold_s * NS_PER_S
               and time.monotonic() < deadline):
            time.sleep(0.02)

    def __call__(self, run: demo.EpisodeRun) -> None:
        """Start every fault whose time has come (``run.t_s``: the episode's sim time)."""
        while self.pending and run.t_s >= self.pending[0].start_s and self._now_ns():
            event = self.pending.pop(0)
            print(f"[soak] {self.label} t={run.t_s:5.1f} s: {event.kind} "
                  f"({event.duration_s:g} s)", flush=True)
            if event.kind == "policy_restart":
                self._restart(event, run)
                continue
            target = {"policy_freeze": self._freeze, "corrupt_frames": self._corrupt}.get(
                event.kind, self._plans)
            args = (event, run.procs[POLICY]) if event.kind == "policy_freeze" else (event,)
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    # ---------------------------------------------------------------- faults
    def _plans(self, event: core.FaultEvent) -> None:
        from alpamayo_ros.ros.conversions import trajectory_to_msg
        from alpamayo_ros.trajectory import Trajectory
        from alpamayo_ros.unicycle import NUM_WAYPOINTS

        n = NUM_WAYPOINTS
        accel, curvature = np.zeros(n), np.zeros(n)
        if event.kind == "nan_plan":
            accel[10] = np.nan
        elif event.kind == "jerk_plan":
            accel[20:] = 3.0  # 0 -> 3 m/s^2 in one 0.1 s step: 30 m/s^3
        start_ns, stamps = self._now_ns(), []
        count = max(int(round(event.duration_s / PLAN_PERIOD_S)), 1)
        for i in range(count):
            with self.listener.lock:
                odom = self.listener.data.odometry[-1] if self.listener.data.odometry else None
            if odom is None:
                break
            stamp = odom[0] - STAMP_OFFSET_NS
            if event.kind == "stale_plan":
                stamp -= int(STALE_PLAN_AGE_S * NS_PER_S)
            plan = Trajectory.from_controls(accel, curvature, float(odom[4]), stamp_ns=stamp,
                                            frame_id="base_link", model_id="soak_injector")
            self.listener.injected_plans.add(stamp)
            self.listener.plan_pub.publish(trajectory_to_msg(plan))
            stamps.append(stamp)
            if i + 1 < count:
                time.sleep(PLAN_PERIOD_S)
        self.faults.append(core.InjectedFault(event, start_ns, self._now_ns(),
                                              plan_stamps=tuple(stamps)))

    def _freeze(self, event: core.FaultEvent, proc: subprocess.Popen) -> None:
        start_ns, note = self._now_ns(), ""
        try:
            os.kill(proc.pid, signal.SIGSTOP)
            self._stopped.add(proc.pid)
            self._wait_sim(start_ns, event.duration_s)
        except ProcessLookupError:
            note = "the policy process was gone"
        finally:
            self._cont(proc.pid)
        self.faults.append(core.InjectedFault(event, start_ns, self._now_ns(), note=note))

    def _cont(self, pid: int) -> None:
        if pid in self._stopped:
            self._stopped.discard(pid)
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def _corrupt(self, event: core.FaultEvent) -> None:
        start_ns, before = self._now_ns(), self.listener.corrupt_frames
        self.listener.set_corrupt(True)
        try:
            self._wait_sim(start_ns, event.duration_s)
        finally:
            self.listener.set_corrupt(False)
        frames = self.listener.corrupt_frames - before
        self.faults.append(core.InjectedFault(
            event, start_ns, self._now_ns(), camera=self.listener.corrupt_camera,
            frames=frames, note="" if frames else "no frame of the camera arrived to corrupt"))

    def _restart(self, event: core.FaultEvent, run: demo.EpisodeRun) -> None:
        start_ns, old = self._now_ns(), run.procs[POLICY]
        old.send_signal(signal.SIGKILL)
        try:
            old.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            pass
        self._restarts += 1
        log = run.logs / f"{run.label.replace(' ', '_')}_{POLICY}_restart{self._restarts}.log"
        run.procs[POLICY] = demo._start(run.commands[POLICY], run.env, log)
        self.faults.append(core.InjectedFault(event, start_ns, self._now_ns(),
                                              note=f"exit code {old.returncode}; restarted"))

    def finish(self) -> None:
        """Wait for the faults in progress (every frozen process is continued)."""
        for thread in self._threads:
            thread.join(timeout=30.0)
        for pid in list(self._stopped):
            self._cont(pid)
        for event in self.pending:  # the episode ended first
            print(f"[soak] {self.label}: {event.kind} at {event.start_s:g} s not injected "
                  "(the episode ended)", flush=True)


# --------------------------------------------------------------------------- command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``alpamayo soak``."""
    parser.add_argument("--scenarios", nargs="+", default=None, metavar="FAMILY:SEED",
                        help="scenarios to drive (default: the demo's families on seeds "
                             "9000, 9001, ... until --sim-minutes)")
    parser.add_argument("--sim-minutes", type=float, default=10.0,
                        help="simulated driving of the default suite (minutes)")
    parser.add_argument("--seed", type=int, default=0, help="the fault schedule's seed")
    parser.add_argument("--faults-per-episode", type=int, default=2)
    parser.add_argument("--faults", nargs="+", default=list(core.FAULT_KINDS),
                        choices=core.FAULT_KINDS, metavar="KIND",
                        help=f"fault kinds to inject (default: all of {core.FAULT_KINDS})")
    parser.add_argument("--corrupt-camera", default="front_wide",
                        help="the camera whose frames corrupt_frames corrupts")
    demo.add_graph_arguments(parser)
    parser.add_argument("--out", default="out/soak", help="output directory")
    parser.add_argument("--bag", dest="bag", action="store_true",
                        help="record an MCAP bag per scenario")


def _suite(args: argparse.Namespace) -> tuple[list[tuple[demo.DemoScenario, float]], float]:
    """The scenarios with their durations, and the simulated seconds the soak asks for."""
    from alpamayo_ros.data.scenarios import DEFAULT_DURATION_S, FAMILY_DURATION_S

    def duration(family: str) -> float:
        return args.duration or FAMILY_DURATION_S.get(family, DEFAULT_DURATION_S)

    if args.scenarios:
        scenarios = demo._parse_scenarios(args.scenarios)
        out = [(s, duration(s.family)) for s in scenarios]
        return out, sum(d for _, d in out)
    families = [s.family for s in demo.DEFAULT_SUITE]
    titles = {s.family: s.title for s in demo.DEFAULT_SUITE}
    suite = core.default_suite(families, [duration(f) for f in families], args.sim_minutes)
    return ([(demo.DemoScenario(f, seed, titles[f]), d) for f, seed, d in suite],
            args.sim_minutes * 60.0)


def soak(args: argparse.Namespace) -> int:
    """Run the soak; 0 when every pass line holds, 1 otherwise, 2 on bad arguments."""
    from alpamayo_ros.data.cameras import make_rig

    try:
        suite, target_s = _suite(args)
        config = core.SoakConfig(seed=args.seed, faults_per_episode=args.faults_per_episode,
                                 kinds=tuple(args.faults))
        cameras = [c.name for c in make_rig("ar1").cameras]
        if args.corrupt_camera not in cameras:
            raise ValueError(f"--corrupt-camera must be one of {cameras}, "
                             f"got {args.corrupt_camera!r}")
    except ValueError as exc:
        print(f"alpamayo soak: {exc}", file=sys.stderr)
        return 2
    schedule = core.schedule_faults([d for _, d in suite], config)
    out, env = demo.prepare_run(args.out)
    print(f"[soak] {len(suite)} scenarios ({sum(d for _, d in suite) / 60:.1f} simulated "
          f"minutes), {sum(len(e) for e in schedule)} faults (seed {args.seed}); output in "
          f"{out}", flush=True)
    listener = SoakListener(args.corrupt_camera)
    records: list[core.EpisodeRecord] = []
    episodes: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for (scn, duration_s), events in zip(suite, schedule):
            label = f"{scn.family} {scn.seed}"
            injector = FaultInjector(events, listener, label)
            metrics, expert_collision, failures, error = {}, False, [], ""
            try:
                result = demo.run_episode(scn, args, env, listener, out, hook=injector)
                metrics, expert_collision = result.metrics, result.expert_collision
                failures = result.failures
                error = "; ".join(f for f in failures if "did not finish" in f)
            except RuntimeError as exc:
                error = str(exc)
            finally:
                injector.finish()
            record = listener.episode_record(scn, duration_s)
            record.faults = injector.faults
            record.at_fault_collision = bool(metrics.get("collision", False))
            record.expert_collision = expert_collision
            record.error = error
            records.append(record)
            (out / "records").mkdir(exist_ok=True)
            (out / "records" / f"{label.replace(' ', '_')}.json").write_text(
                json.dumps(core.record_summary(record), indent=1))
            episodes.append({"episode": label, "duration_s": duration_s,
                             "schedule": [vars(e) for e in events],
                             "collision": metrics.get("collision"),
                             "expert_collision": expert_collision,
                             "progress_m": metrics.get("progress_m"),
                             "pdm_score": metrics.get("pdm_score"),
                             "demo_failures": failures, "error": error})
            print(f"[soak] {label}: {len(injector.faults)} faults injected, "
                  f"{len(record.commands)} commands, collision "
                  f"{metrics.get('collision')}{', ERROR: ' + error if error else ''}",
                  flush=True)
    finally:
        listener.close()
    result = core.analyse(records, config, target_s)
    result["episode_summaries"] = episodes
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["weights"] = args.weights or "shipped weights/default"
    (out / "soak.json").write_text(json.dumps(result, indent=1, default=str))
    text = core.markdown(result)
    (out / "soak.md").write_text(text)
    print("\n" + text, flush=True)
    print(f"[soak] {out / 'soak.json'}, {out / 'soak.md'} ({result['wall_s']:.0f} s)",
          flush=True)
    print("soak PASSED" if result["passed"] else "soak FAILED", flush=True)
    return 0 if result["passed"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo soak``."""
    p = subparsers.add_parser("soak", help="the closed-loop graph over a scenario suite "
                                           "with faults injected at seeded random times",
                              description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=soak)
