"""Bag replay and recording: pure helpers, then real player/recorder processes.

Replay: a bag from the data engine (``alpamayo generate``) is played with ``--clock`` and
every topic arrives in this process with the bag's stamps and contents, custom types
included, paced at the requested rate, with ``/clock`` carrying the bag time.
Record: messages published here are recorded by a recorder process, which is stopped
with SIGINT or SIGTERM, and the bag is read back with ``rosbags``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from alpamayo_ros.bags.config import (
    BagPlayerConfig,
    BagRecorderConfig,
    add_player_arguments,
    add_recorder_arguments,
    player_values,
    recorder_values,
)
from alpamayo_ros.bags.record import BagWriter, subscription_qos
from alpamayo_ros.bags.replay import (
    PlaybackClock,
    QosSpec,
    default_qos_kind,
    iter_messages,
    read_info,
    select_topics,
)
from alpamayo_ros.data.bag import make_typestore
from test.helpers.ros_harness import REPO_ROOT, Probe, domain_id, stop_process

CAMERA = "front_wide"


# --------------------------------------------------------------------------- pure helpers
def test_playback_clock_maps_bag_time_at_a_rate() -> None:
    clock = PlaybackClock(2.0)
    clock.start(wall_s=10.0, bag_ns=5_000_000_000)
    assert clock.wall_for(7_000_000_000) == pytest.approx(11.0)
    assert clock.bag_at(11.5) == 8_000_000_000
    with pytest.raises(ValueError, match="rate"):
        PlaybackClock(0.0)


def test_subscription_qos_follows_the_publishers() -> None:
    rel, be = QosSpec("reliable", "volatile", 5), QosSpec("best_effort", "volatile", 1)
    latched = QosSpec("reliable", "transient_local", 1)
    assert subscription_qos([rel]).reliability == "reliable"
    assert subscription_qos([rel, be]).reliability == "best_effort"
    assert subscription_qos([latched]).durability == "transient_local"
    assert subscription_qos([latched, rel]).durability == "volatile"
    assert subscription_qos([]) == QosSpec()
    assert default_qos_kind("/sensing/camera/a/camera_info") == "latched"
    assert default_qos_kind("/sensing/camera/a/image_raw") == "sensor"
    assert default_qos_kind("/perception/obstacles") == "plan"


def test_flags_map_onto_the_config_fields() -> None:
    p = argparse.ArgumentParser()
    add_player_arguments(p)
    values = player_values(p.parse_args(["b", "--rate", "2", "--clock", "--topics", "/a"]))
    assert values == {"bag": "b", "rate": 2.0, "clock": True, "topics": ["/a"]}
    assert BagPlayerConfig(**values).topics == ("/a",)
    r = argparse.ArgumentParser()
    add_recorder_arguments(r)
    values = recorder_values(r.parse_args(["--out", "x", "--all"]))
    assert BagRecorderConfig(**values).wants("/anything")
    assert not BagRecorderConfig(**values).wants("/rosout")
    assert not BagRecorderConfig(topics=("/a",)).wants("/b")
    with pytest.raises(ValueError, match="rate"):
        BagPlayerConfig(rate=0.0)
    with pytest.raises(ValueError, match="start_offset_s"):
        BagPlayerConfig(start_offset_s=-1.0)


def test_writer_round_trip_and_topic_selection(tmp_path: Path) -> None:
    store = make_typestore()
    t = store.types
    w = BagWriter(tmp_path / "bag")
    w.add_topic("/chatter", "std_msgs/msg/String", QosSpec("reliable", "transient_local", 1))
    raws = [store.serialize_cdr(t["std_msgs/msg/String"](data=f"m{i}"), "std_msgs/msg/String")
            for i in range(3)]
    for i, raw in enumerate(raws):
        assert w.write("/chatter", 100 + i, raw)
    w.close()
    assert not w.write("/chatter", 200, raws[0])  # after close: refused, not crashed
    info = read_info(tmp_path / "bag")
    assert info.topics["/chatter"].count == 3
    assert info.topics["/chatter"].qos == QosSpec("reliable", "transient_local", 1)
    got = list(iter_messages(info.path, ["/chatter"], start_ns=101))
    assert [m.raw for m in got] == raws[1:] and [m.log_ns for m in got] == [101, 102]
    with pytest.raises(ValueError, match="not in"):
        select_topics(info, ["/nope"])
    with pytest.raises(FileExistsError):
        BagWriter(tmp_path / "bag")
    with pytest.raises(LookupError, match="no message definition"):
        BagWriter(tmp_path / "bag2").add_topic("/x", "nope_msgs/msg/Nope")


def test_cli_rejects_bad_input_before_starting_ros(tmp_path: Path) -> None:
    from alpamayo_ros.cli import main

    with pytest.raises(SystemExit, match="metadata.yaml"):
        main(["replay", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="--topics"):
        main(["record", "--out", str(tmp_path / "x")])


# --------------------------------------------------------------------------- processes
@pytest.fixture(scope="module")
def generated_bag(tmp_path_factory) -> Path:
    from alpamayo_ros.cli import main

    out = tmp_path_factory.mktemp("bags")
    # 7.5 s: long enough for reference trajectories (6.4 s of future) to be in the bag.
    assert main(["generate", "--out", str(out), "--families", "cruise", "--duration-s", "7.5",
                 "--rig", "tiny"]) == 0
    return out / "cruise_00000"


@pytest.fixture
def probe(ros_env, monkeypatch):
    for name, value in ros_env.items():
        monkeypatch.setenv(name, value)
    p = Probe(domain_id(ros_env), "alpamayo_bag_test_probe")
    yield p
    p.close()


def cli_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "alpamayo_ros.cli", *args], env=env,
                            stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


@pytest.mark.ros
def test_replay_publishes_the_bag_with_its_stamps_and_clock(generated_bag, probe, ros_env,
                                                            tmp_path) -> None:
    from nav_msgs.msg import Odometry
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, CompressedImage

    from alpamayo_ros.msg import ObstacleArray, Trajectory
    from alpamayo_ros.ros.qos import clock_qos, latched_qos, plan_qos, sensor_qos

    image_topic = f"/sensing/camera/{CAMERA}/image_raw/compressed"  # topics.image_topic
    info_topic = f"/sensing/camera/{CAMERA}/camera_info"
    traj_topic = "/planning/reference_trajectory"
    wanted = {"/localization/kinematic_state": (Odometry, sensor_qos()),
              "/perception/obstacles": (ObstacleArray, plan_qos()),
              image_topic: (CompressedImage, sensor_qos()),
              traj_topic: (Trajectory, plan_qos())}
    # What the bag holds, decoded with rosbags.
    store = make_typestore()
    expected: dict[str, list] = {t: [] for t in wanted}
    with Reader(generated_bag) as reader:
        for conn, log_ns, raw in reader.messages():
            if conn.topic in expected:
                expected[conn.topic].append((log_ns, store.deserialize_cdr(raw, conn.msgtype)))
        start_ns, end_ns = reader.start_time, reader.end_time - 1
    assert len(expected[traj_topic]) >= 5 and all(expected.values())
    for topic, (cls, qos) in wanted.items():
        probe.record(cls, topic, qos)
    probe.record(CameraInfo, info_topic, latched_qos())
    probe.record(Clock, "/clock", clock_qos())

    rate = 2.5
    log = tmp_path / "replay.log"
    proc = cli_process(["replay", str(generated_bag), "--clock", "--rate", str(rate),
                        "--topics", *wanted, info_topic, "--wait-for-subscribers-s", "20"],
                       ros_env, log)
    try:
        proc.wait(timeout=40)
    finally:
        code = stop_process(proc)
    assert code == 0, log.read_text()
    time.sleep(0.3)

    for topic, items in expected.items():
        got = probe.messages(topic)
        assert [stamp_ns(m.header) for m in got] == [stamp_ns(m.header) for _, m in items], topic
    # Custom types arrive intact (compared field by field with the rosbags decoding).
    for got, (_, want) in zip(probe.messages("/perception/obstacles"),
                              expected["/perception/obstacles"]):
        assert [o.id for o in got.obstacles] == [o.id for o in want.obstacles]
        assert [o.pose.position.x for o in got.obstacles] == pytest.approx(
            [o.pose.position.x for o in want.obstacles])
    for got, (_, want) in zip(probe.messages(traj_topic), expected[traj_topic]):
        assert len(got.points) == 64 and got.model_id == want.model_id
        np.testing.assert_allclose([p.x for p in got.points], [p.x for p in want.points])
    img = probe.messages(image_topic)[0]
    assert bytes(img.data) == bytes(expected[image_topic][0][1].data)
    assert probe.messages(info_topic)  # latched camera_info
    # Paced at the rate: arrivals span the bag's duration / rate.
    arrivals = probe.arrivals("/localization/kinematic_state")
    want_span = (expected["/localization/kinematic_state"][-1][0] - start_ns) / 1e9 / rate
    assert arrivals[-1] - arrivals[0] == pytest.approx(want_span, rel=0.2)
    # /clock: bag time, monotonic, from the first to the last message, >= 50 Hz.
    clocks = [m.clock.sec * 1_000_000_000 + m.clock.nanosec for m in probe.messages("/clock")]
    assert clocks and all(np.diff(clocks) >= 0)
    assert start_ns <= clocks[0] <= start_ns + 200_000_000 and clocks[-1] == end_ns
    assert len(clocks) >= 50 * want_span


@pytest.mark.ros
@pytest.mark.parametrize("sig, select", [(signal.SIGINT, "topics"), (signal.SIGTERM, "all")],
                         ids=["sigint-topics", "sigterm-all"])
def test_record_live_topics_and_read_the_bag_back(probe, ros_env, tmp_path, sig,
                                                  select) -> None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import String

    from alpamayo_ros.msg import Obstacle, ObstacleArray
    from alpamayo_ros.ros.qos import latched_qos

    node = probe.node
    # A deep publisher history: reliable delivery can then resend to a recorder that
    # stalls under load (plan_qos keeps only 5).
    deep = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    chatter = node.create_publisher(String, "/test/chatter", deep)
    obstacles = node.create_publisher(ObstacleArray, "/test/obstacles", deep)
    info = node.create_publisher(CameraInfo, "/test/camera_info", latched_qos())
    info.publish(CameraInfo(width=448, height=280))  # before the recorder exists
    out = tmp_path / "recorded"
    log = tmp_path / "record.log"
    which = (["--topics", "/test/chatter", "/test/obstacles", "/test/camera_info"]
             if select == "topics" else ["--all"])
    proc = cli_process(["record", "--out", str(out), *which], ros_env, log)
    try:
        assert probe.wait_for(lambda: chatter.get_subscription_count() > 0
                              and obstacles.get_subscription_count() > 0
                              and info.get_subscription_count() > 0, 30.0, proc, log)
        time.sleep(0.3)
        t0 = time.time_ns()
        n = 20
        for i in range(n):
            chatter.publish(String(data=f"message {i}"))
            arr = ObstacleArray(obstacles=[Obstacle(id=f"o{i}", classification=1)])
            arr.header.stamp.sec = i
            obstacles.publish(arr)
            time.sleep(0.02)
        t1 = time.time_ns()
        time.sleep(0.5)
        proc.send_signal(sig)
        proc.wait(timeout=15)
    finally:
        code = stop_process(proc)
    assert code == 0, log.read_text()
    assert (out / "metadata.yaml").is_file() and "wrote" in log.read_text()
    store = make_typestore()
    got: dict[str, list] = {}
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["version"] == 9
    with Reader(out) as reader:
        for conn, log_ns, raw in reader.messages():
            got.setdefault(conn.topic, []).append(
                (log_ns, store.deserialize_cdr(raw, conn.msgtype)))
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert {"/test/chatter", "/test/obstacles", "/test/camera_info"} <= set(got)
    assert "/rosout" not in got and "/parameter_events" not in got  # excluded from --all
    assert [m.data for _, m in got["/test/chatter"]] == [f"message {i}" for i in range(n)]
    assert [m.obstacles[0].id for _, m in got["/test/obstacles"]] == [f"o{i}" for i in range(n)]
    assert [m.header.stamp.sec for _, m in got["/test/obstacles"]] == list(range(n))
    # The latched message sent before recording started is there, QoS kept.
    assert [m.width for _, m in got["/test/camera_info"]] == [448]
    assert qos["/test/camera_info"][0].durability.name == "TRANSIENT_LOCAL"
    # Log time = receive time on the recorder's (system) clock.
    log_times = [t for t, _ in got["/test/chatter"]]
    assert log_times == sorted(log_times) and t0 <= log_times[0] and log_times[-1] <= t1 + 2e9
