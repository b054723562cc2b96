"""Processes killed with SIGKILL: the bag recorder mid-write, the policy in a running graph.

Recorder: the pure core first (:class:`BagWriter` flushes, :func:`recover_bag` on files
cut the way a killed writer leaves them), then a real recorder process that is SIGKILLed
while a probe publishes numbered odometry at 50 Hz. The bag is recovered with the
documented command (``alpamayo recover``) and must hold every message from the first one
recorded up to at most ``flush_period_s`` (+ delivery slack) before the kill, without a
gap; what was lost is measured and recorded (docs/RELIABILITY.md).

Policy: a policy process (the shipped weights, trajectory only) and a controller process
run on synthetic cameras and odometry from the probe; the policy process is SIGKILLed and
started again. The controller must go to the jerk-limited minimal-risk stop after
``policy_timeout_s``, never stop publishing commands, and return to OK with the restarted
policy's first valid plan.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from alpamayo_ros.bags.record import BagWriter
from alpamayo_ros.bags.recover import RecoveryError, find_mcap, recover_bag
from alpamayo_ros.bags.replay import QosSpec, iter_messages, read_info
from alpamayo_ros.data.bag import make_typestore
from test.helpers.faults import record
from test.helpers.ros_harness import REPO_ROOT, Probe, domain_id, stop_process

STRING = "std_msgs/msg/String"


def _raw(store, text: str) -> bytes:
    return bytes(store.serialize_cdr(store.types[STRING](data=text), STRING))


def _snapshot(bag: Path, dest: Path, cut_bytes: int = 0) -> Path:
    """What a killed writer leaves: the .mcap as it is on disk now (no metadata.yaml)."""
    dest.mkdir()
    src = find_mcap(bag)
    data = src.read_bytes()
    (dest / src.name).write_bytes(data[: len(data) - cut_bytes] if cut_bytes else data)
    return dest


def _texts(bag: Path, topic: str) -> list[str]:
    store = make_typestore()
    return [store.deserialize_cdr(m.raw, m.msgtype).data
            for m in iter_messages(bag, [topic])]


# ------------------------------------------------------------------ pure core (fast)
def test_flushed_chunks_survive_a_kill_and_the_open_one_is_lost(tmp_path: Path) -> None:
    store = make_typestore()
    w = BagWriter(tmp_path / "bag")
    w.add_topic("/chatter", STRING, QosSpec("reliable", "transient_local", 1))
    for i in range(10):
        w.write("/chatter", 1_000 + i, _raw(store, f"m{i}"))
    assert w.flush() and not w.flush()  # nothing new: no empty chunk
    for i in range(10, 15):
        w.write("/chatter", 1_000 + i, _raw(store, f"m{i}"))  # in the open chunk only
    killed = _snapshot(tmp_path / "bag", tmp_path / "killed")
    with pytest.raises(FileNotFoundError, match="alpamayo recover"):
        read_info(killed)  # unreadable as it is, and the error says what to do
    report = recover_bag(killed)
    assert report.out_dir == tmp_path / "killed_recovered"
    assert not report.footer and report.chunks == 1 and report.dropped_bytes == 0
    assert report.messages == {"/chatter": 10} and (report.start_ns, report.end_ns) == (1000, 1009)
    assert _texts(report.out_dir, "/chatter") == [f"m{i}" for i in range(10)]
    info = read_info(report.out_dir)  # a normal bag again: QoS as recorded
    assert info.topics["/chatter"].qos == QosSpec("reliable", "transient_local", 1)
    w.close()
    assert not w.flush()
    with pytest.raises(FileExistsError):
        recover_bag(killed)  # never overwrites


def test_a_chunk_cut_in_the_middle_is_dropped_whole(tmp_path: Path) -> None:
    store = make_typestore()
    w = BagWriter(tmp_path / "bag")
    w.add_topic("/chatter", STRING)
    w.add_topic("/obstacles", "alpamayo_ros/msg/ObstacleArray")  # the package's own type
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                      frame_id="map")
    obstacles = t["alpamayo_ros/msg/ObstacleArray"](header=header, obstacles=[])
    for block in range(3):
        for i in range(5):
            w.write("/chatter", 10 * block + i, _raw(store, f"b{block}m{i}"))
        w.write("/obstacles", 10 * block + 5,
                bytes(store.serialize_cdr(obstacles, "alpamayo_ros/msg/ObstacleArray")))
        w.flush()
    report = recover_bag(_snapshot(tmp_path / "bag", tmp_path / "whole"))
    assert report.chunks == 3 and report.message_count == 18
    # cut 7 bytes off the last chunk's message index: the chunk itself is complete
    report = recover_bag(_snapshot(tmp_path / "bag", tmp_path / "cut_index", cut_bytes=7))
    assert report.chunks == 3 and report.message_count == 18 and report.dropped_bytes > 0
    # cut into the last chunk: it goes whole, the two before stay
    mcap = find_mcap(tmp_path / "bag")
    size_two = mcap.stat().st_size - 200
    cut = tmp_path / "cut_chunk"
    cut.mkdir()
    (cut / mcap.name).write_bytes(mcap.read_bytes()[:size_two])
    report = recover_bag(cut, tmp_path / "out")
    assert report.chunks == 2 and report.messages == {"/chatter": 10, "/obstacles": 2}
    assert report.stopped_by and report.dropped_bytes > 0
    assert _texts(tmp_path / "out", "/chatter") == [f"b{b}m{i}" for b in (0, 1)
                                                    for i in range(5)]
    assert "trailing bytes dropped" in report.summary()
    w.close()
    report = recover_bag(tmp_path / "bag", tmp_path / "closed")  # a finished bag: all of it
    assert report.footer and report.message_count == 18 and "complete" in report.summary()


def test_a_type_the_package_does_not_know_comes_from_the_bag(tmp_path: Path) -> None:
    """A bag from another recorder: the type definition stored in the bag is used."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    w = Writer(tmp_path / "foreign", version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    conn = w.add_connection("/thing", "other_msgs/msg/Thing", msgdef="int32 x\nstring name\n",
                            rihs01="RIHS01_" + "0" * 64)
    # a known type recorded with another definition: the bag's definition is kept
    other = w.add_connection("/chatter", STRING, msgdef="string data\nint32 extra\n",
                             rihs01="RIHS01_" + "1" * 64)
    for i in range(4):
        w.write(conn, i, b"\x00\x01\x00\x00" + i.to_bytes(4, "little") + b"\x02\x00\x00\x00a\x00")
    w.write(other, 5, b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00\x00\x00\x07\x00\x00\x00")
    w.storage.close_chunk()
    w.storage.bio.flush()
    report = recover_bag(_snapshot(tmp_path / "foreign", tmp_path / "killed"))
    w.close()
    assert report.messages == {"/thing": 4, "/chatter": 1}
    assert read_info(report.out_dir).topics["/thing"].msgtype == "other_msgs/msg/Thing"
    from rosbags.rosbag2 import Reader

    with Reader(report.out_dir) as reader:
        defs = {c.topic: c.msgdef.data for c in reader.connections}
    assert "int32 extra" in defs["/chatter"] and "string name" in defs["/thing"]


def test_recovery_rejects_what_is_not_a_bag(tmp_path: Path) -> None:
    with pytest.raises(RecoveryError, match="does not exist"):
        recover_bag(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecoveryError, match="expected one .mcap file"):
        recover_bag(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "junk.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(RecoveryError, match="not an MCAP file"):
        recover_bag(tmp_path / "junk")
    (tmp_path / "junk" / "junk.mcap").write_bytes(b"")
    with pytest.raises(RecoveryError, match="is empty"):
        recover_bag(tmp_path / "junk")


# ------------------------------------------------------------------ real recorder process
RECORD_RATE_HZ = 50.0
FLUSH_PERIOD_S = 1.0


@pytest.mark.ros
def test_recorder_killed_mid_write_is_recovered_up_to_the_flush_period(ros_env,
                                                                       tmp_path) -> None:
    from nav_msgs.msg import Odometry
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    probe = Probe(domain_id(ros_env), "alpamayo_test_recorder_probe")
    out, log = tmp_path / "killed", tmp_path / "record.log"
    handle = open(log, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "alpamayo_ros.cli", "record", "--out", str(out), "--topics",
         "/test/odom", "--flush-period-s", str(FLUSH_PERIOD_S)],
        env=ros_env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    published: list[float] = []  # monotonic publish time of message i
    try:
        pub = probe._on_spin_thread(lambda: probe.node.create_publisher(
            Odometry, "/test/odom", QoSProfile(depth=100,
                                               reliability=ReliabilityPolicy.RELIABLE)))

        def tick() -> None:
            msg = Odometry()
            msg.child_frame_id = str(len(published))
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            pub.publish(msg)
            published.append(time.monotonic())
        probe._on_spin_thread(lambda: probe.node.create_timer(1 / RECORD_RATE_HZ, tick))
        assert probe.wait_for(lambda: pub.get_subscription_count() > 0, 60.0, proc, log), \
            log.read_text()
        time.sleep(3.3)  # > 3 flush periods
        proc.kill()  # SIGKILL mid-write
        t_kill = time.monotonic()
        proc.wait(timeout=10)
    finally:
        probe.close()
        stop_process(proc)
        handle.close()
    n_before_kill = sum(1 for t in published if t < t_kill)
    assert proc.returncode == -9 and not (out / "metadata.yaml").exists()
    cli = subprocess.run([sys.executable, "-m", "alpamayo_ros.cli", "recover", str(out)],
                         env=ros_env, capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120)
    assert cli.returncode == 0, cli.stderr + cli.stdout
    recovered = Path(f"{out}_recovered")
    assert "recovered" in cli.stdout and str(recovered) in cli.stdout
    meta = yaml.safe_load((recovered / "metadata.yaml").read_text())
    assert meta["rosbag2_bagfile_information"]["storage_identifier"] == "mcap"
    store = make_typestore()
    seqs = [int(store.deserialize_cdr(m.raw, m.msgtype).child_frame_id)
            for m in iter_messages(recovered, ["/test/odom"])]
    assert seqs, cli.stdout
    # readable up to the crash: every message from the first recorded one on, no gap
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    lost = n_before_kill - 1 - seqs[-1]  # published before the kill, not in the bag
    lost_s = lost / RECORD_RATE_HZ
    # bounded: the open chunk (<= one flush period) plus delivery/scheduling slack
    assert 0 <= lost_s <= FLUSH_PERIOD_S + 0.5, (lost, n_before_kill, seqs[-1])
    record("files", "bag recorder killed with SIGKILL mid-write",
           f"bag without footer/metadata.yaml; `alpamayo recover` restores every message up "
           f"to the last flush (flush_period_s {FLUSH_PERIOD_S:g} s); "
           f"lost {lost} of {n_before_kill} published ({lost_s * 1e3:.0f} ms at "
           f"{RECORD_RATE_HZ:g} Hz)",
           "test_faults_sigkill.py::test_recorder_killed_mid_write_is_recovered_up_to_the_flush_period",
           lost_messages=lost, lost_ms=lost_s * 1e3, published=n_before_kill,
           recovered=len(seqs))
    shutil.rmtree(recovered, ignore_errors=True)


# ------------------------------------------------------------------ real policy process
POLICY_TIMEOUT_S = 1.0
POLICY_RATE_HZ = 2.0
MODEL_CAMERAS = ["cross_left", "front_wide", "cross_right", "front_tele"]
OK, FALLBACK, MRM = 0, 2, 2
CONTROL_PERIOD_MS = 20.0
MRM_JERK_MPS3 = 1.5  # config/safety.yaml


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _start_policy(ros_env, weights: Path, log: Path) -> subprocess.Popen:
    from test.helpers.ros_harness import start_node_process

    return start_node_process("alpamayo_ros.nodes.policy_node", [
        "--params-file", "config/sync.yaml", "--params-file", "config/policy.yaml",
        "-p", f"weights_dir:={weights}", "-p", "device:=cpu", "-p", "reasoning:=false",
        "-p", f"rate_hz:={POLICY_RATE_HZ}", "-p", "torch_threads:=1",
        "-p", f"camera_names:=[{', '.join(MODEL_CAMERAS)}]", "-p", "camera_extrinsics:=rig"],
        ros_env, log)


@pytest.mark.ros
def test_policy_process_killed_and_restarted(ros_env, tmp_path) -> None:
    """SIGKILL the policy in a running policy + controller graph, then start it again."""
    from alpamayo_ros import topics
    from alpamayo_ros.msg import ControlCommand, SafetyStatus, Trajectory
    from alpamayo_ros.paths import default_weights_dir
    from alpamayo_ros.ros.qos import plan_qos
    from test.helpers.ros_harness import SyntheticSensors, start_node_process

    weights = default_weights_dir()
    if not (weights / "model.safetensors").is_file():
        pytest.skip(f"no shipped weights in {weights} (plans from random weights fail the "
                    "safety checks, so the controller would never be OK)")
    probe = Probe(domain_id(ros_env), "alpamayo_test_crash_probe")
    plans: list[tuple[int, Trajectory]] = []  # (arrival, system clock ns)

    def on_plan(msg: Trajectory) -> None:
        plans.append((time.time_ns(), msg))
    probe.record(ControlCommand, topics.CONTROL_COMMAND, plan_qos())
    probe.record(SafetyStatus, topics.SAFETY_STATUS, plan_qos())
    probe.subscribe(Trajectory, topics.TRAJECTORY, on_plan, plan_qos())
    probe._on_spin_thread(lambda: SyntheticSensors(probe, MODEL_CAMERAS))
    ctl_log, pol_log, pol2_log = (tmp_path / n for n in ("ctl.log", "policy.log",
                                                         "policy2.log"))
    ctl = start_node_process("alpamayo_ros.nodes.controller_node", [
        "--params-file", "config/safety.yaml", "-p", f"policy_timeout_s:={POLICY_TIMEOUT_S}"],
        ros_env, ctl_log)
    policy = _start_policy(ros_env, weights, pol_log)
    restarted = None

    def statuses(since_ns: int) -> list:
        return [s for s in probe.messages(topics.SAFETY_STATUS)
                if _ns(s.header.stamp) >= since_ns]
    try:
        def steady_ok() -> bool:
            sts = probe.messages(topics.SAFETY_STATUS)
            return len(sts) > 10 and all(s.state == OK for s in sts[-10:])
        assert probe.wait_for(steady_ok, 120.0, policy, pol_log), \
            f"controller never OK: {[(s.state, s.reason) for s in statuses(0)[-3:]]}"
        time.sleep(1.0)
        t_kill = time.time_ns()
        policy.kill()  # SIGKILL: no shutdown code runs
        policy.wait(timeout=10)

        def silent_fallback(s) -> bool:
            return s.state == FALLBACK and "policy silent" in s.reason
        assert probe.wait_for(lambda: any(silent_fallback(s) for s in statuses(t_kill)),
                              10.0, ctl, ctl_log), \
            f"no minimal-risk stop: {[(s.state, s.reason) for s in statuses(t_kill)[-3:]]}"
        detected = next(s for s in statuses(t_kill) if silent_fallback(s))
        detection_ms = (_ns(detected.header.stamp) - t_kill) / 1e6
        # the controller times the silence from the last plan's arrival, not from the kill:
        # on a loaded machine the policy can fall behind its rate before it is killed
        last_plan_ns = max(t for t, _ in plans if t <= t_kill)
        silence_ms = (_ns(detected.header.stamp) - last_plan_ns) / 1e6
        t_restart = time.time_ns()
        restarted = _start_policy(ros_env, weights, pol2_log)

        def first_ok():  # the first OK status after the restart, once its plan has arrived
            ok = next((s for s in statuses(t_restart) if s.state == OK), None)
            new = {_ns(m.header.stamp) for t, m in plans if t > t_restart}
            return ok if ok is not None and _ns(ok.active_plan_stamp) in new else None
        assert probe.wait_for(lambda: first_ok() is not None, 120.0, restarted, pol2_log), \
            f"no recovery: {[(s.state, s.reason) for s in statuses(t_restart)[-3:]]}, " \
            f"{sum(t > t_restart for t, _ in plans)} plans from the restarted policy"
        recovered = first_ok()
        new_plans = sorted(_ns(m.header.stamp) for t, m in plans if t > t_restart)
        window_end = _ns(recovered.header.stamp) + 5 * 10**8
        assert probe.wait_for(lambda: any(_ns(m.header.stamp) >= window_end for m in
                                          probe.messages(topics.CONTROL_COMMAND)), 10.0)
    finally:
        probe.close()
        for proc in (restarted, policy, ctl):
            if proc is not None:
                stop_process(proc)
    # from the detection to the recovery: never OK, and the stop is the minimal-risk one
    between = [s for s in statuses(_ns(detected.header.stamp))
               if _ns(s.header.stamp) < _ns(recovered.header.stamp)]
    assert between and all(s.state == FALLBACK for s in between), \
        {(s.state, s.reason) for s in between}
    assert POLICY_TIMEOUT_S * 1e3 - 50 <= silence_ms <= POLICY_TIMEOUT_S * 1e3 + 150, \
        f"stop {silence_ms:.0f} ms after the last plan ({detection_ms:.0f} ms after the kill)"
    assert 0 < detection_ms <= POLICY_TIMEOUT_S * 1e3 + 150, detection_ms
    commands = [m for m in probe.messages(topics.CONTROL_COMMAND)
                if t_kill - 5 * 10**8 <= _ns(m.header.stamp) <= window_end]
    stamps = [_ns(c.header.stamp) for c in commands]
    gap_stamp_ms = max(b - a for a, b in zip(stamps, stamps[1:])) / 1e6
    with probe._lock:
        received = list(probe.received[topics.CONTROL_COMMAND])
    arrivals = [t for t, m in received if t_kill - 5 * 10**8 <= _ns(m.header.stamp) <= window_end]
    gap_arrival_ms = max(b - a for a, b in zip(arrivals, arrivals[1:])) * 1e3
    # jerk-limited: the acceleration changes by at most mrm_jerk * dt per cycle in the stop
    in_stop = [(a, b) for a, b in zip(commands, commands[1:])
               if _ns(detected.header.stamp) <= _ns(b.header.stamp)
               < _ns(recovered.header.stamp) - 10**8]
    assert in_stop and all(b.source == MRM for _, b in in_stop)
    jerks = [abs(b.acceleration - a.acceleration) / ((_ns(b.header.stamp) - _ns(a.header.stamp))
                                                     / 1e9) for a, b in in_stop]
    assert max(jerks) <= MRM_JERK_MPS3 + 1e-6, max(jerks)
    recovery_ms = (_ns(recovered.header.stamp) - t_restart) / 1e6  # restart -> OK
    plan_to_ok_ms = (_ns(recovered.header.stamp) - _ns(recovered.active_plan_stamp)) / 1e6
    first_accepted = _ns(recovered.active_plan_stamp) == new_plans[0]
    assert gap_stamp_ms <= 2 * CONTROL_PERIOD_MS + 1e-6, \
        f"command gap {gap_stamp_ms} ms (stamps), {gap_arrival_ms:.0f} ms (arrival); " \
        f"detection {detection_ms:.0f} ms, recovery {recovery_ms:.0f} ms"
    record("policy", "policy process killed (SIGKILL) and started again",
           f"minimal-risk stop after policy_timeout_s ({POLICY_TIMEOUT_S:g} s), jerk <= "
           f"{MRM_JERK_MPS3:g} m/s^3 (max {max(jerks):.2f}); FALLBACK until the restarted "
           f"process's first valid plan ({'its first' if first_accepted else 'not its first'}"
           f" plan, OK {plan_to_ok_ms:.0f} ms after that plan's camera stamp), then OK; "
           f"recovery = restart -> OK (weights loaded again)",
           "test_faults_sigkill.py::test_policy_process_killed_and_restarted",
           detection_ms=detection_ms, silence_at_stop_ms=silence_ms, gap_stamp_ms=gap_stamp_ms,
           gap_arrival_ms=gap_arrival_ms, recovery_ms=recovery_ms,
           plan_to_ok_ms=plan_to_ok_ms, first_plan_accepted=first_accepted)
