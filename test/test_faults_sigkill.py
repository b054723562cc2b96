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
    for i in range(4):
        w.write(conn, i, b"\x00\x01\x00\x00" + i.to_bytes(4, "little") + b"\x02\x00\x00\x00a\x00")
    w.storage.close_chunk()
    w.storage.bio.flush()
    report = recover_bag(_snapshot(tmp_path / "foreign", tmp_path / "killed"))
    w.close()
    assert report.messages == {"/thing": 4}
    assert read_info(report.out_dir).topics["/thing"].msgtype == "other_msgs/msg/Thing"


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
