"""Camera faults: pure-core cases, then injected into a running camera sync process.

Pure core (fast): frozen-camera detection, out-of-order frames, sets stalled by a
camera beyond slop, compressed-image integrity, frame digests, the new config fields.

Running process: one ``camera_sync`` node process (the policy process's first half,
built-in backend) fed by a probe that plays three 10 Hz cameras and 50 Hz odometry of
an ego at 8 m/s. Each fault is switched on, held, switched off; measured from the node's
``/diagnostics`` (5 Hz here, ``report_period_s`` 0.2 s) stamped on the node's clock:

- detection: fault injected -> first status naming the fault (the camera in the message,
  or the malformed counter of that camera risen);
- recovery: fault cleared -> first OK status with sets being emitted again.

A camera that stops or freezes, or a camera beyond slop, stops the sets (no set is ever
emitted with the fault: every emitted set's skew stays below slop; none is emitted from
frozen frames); the policy plans nothing from them (its ``stale_window`` skip) and the
controller falls back on its policy timeout (measured in test_faults_controller.py).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from alpamayo_ros.sync import CameraSync, SyncConfig
from alpamayo_ros.sync.config import CameraInputConfig
from alpamayo_ros.sync.frames import compressed_integrity_error, frame_digest
from test.helpers.faults import record
from test.helpers.ros_harness import Probe, domain_id, start_node_process, stop_process

MS = 1_000_000
S = 1_000_000_000
CAMS = ("cam_a", "cam_b", "cam_c")


# ---------------------------------------------------------------- pure core (fast)
def _sync(**overrides) -> CameraSync:
    params = dict(camera_names=CAMS, queue_size=5, slop_s=0.01, source_timeout_s=0.5,
                  frozen_camera_timeout_s=1.0, frozen_camera_min_speed_mps=0.5)
    params.update(overrides)
    return CameraSync(SyncConfig(**params))


def _tick(sync: CameraSync, k: int, digests: dict[str, int] | None = None,
          speed: float | None = 8.0, offsets_ms: dict[str, int] | None = None) -> list:
    out = []
    for cam in CAMS:
        stamp = k * 100 * MS + (offsets_ms or {}).get(cam, 0) * MS
        digest = (digests or {}).get(cam, hash((cam, k)))
        s = sync.add(cam, stamp, (cam, k), now_ns=k * 100 * MS + 20 * MS, digest=digest,
                     ego_speed_mps=speed)
        if s is not None:
            out.append(s)
    return out


def test_frozen_camera_is_refused_after_the_timeout_and_back_on_new_content() -> None:
    sync = _sync()
    for k in range(5):
        assert len(_tick(sync, k)) == 1
    frozen_at = 5
    sets_during = []
    for k in range(frozen_at, frozen_at + 15):  # cam_b repeats one buffer with new stamps
        sets_during += _tick(sync, k, {"cam_b": 42})
        report = sync.report(k * 100 * MS + 30 * MS)
        held_s = (k - frozen_at) * 0.1
        assert ("cam_b" in report.frozen_cameras) == (held_s >= 1.0), (k, report)
    # sets only while the repetition was younger than the timeout (10 frames: 0.0..0.9 s)
    assert len(sets_during) == 10
    report = sync.report((frozen_at + 15) * 100 * MS)
    assert not report.healthy and report.cameras[1].frames_frozen == 5
    assert report.cameras[1].staleness_s < 0.5  # it still delivers: frozen, not stale
    assert len(_tick(sync, frozen_at + 15)) == 1  # new content: synchronized at once
    assert sync.report((frozen_at + 15) * 100 * MS + 30 * MS).frozen_cameras == ()


def test_frozen_check_is_off_by_default_and_ungated_at_zero_speed() -> None:
    """Off by default (noiseless sources); at min speed 0 even without odometry."""
    off = _sync(frozen_camera_timeout_s=0.0)
    assert SyncConfig().frozen_camera_timeout_s == 0.0
    for k in range(30):
        assert len(_tick(off, k, {"cam_a": 7})) == 1
    ungated = _sync(frozen_camera_min_speed_mps=0.0)
    for k in range(11):
        _tick(ungated, k, {"cam_a": 7}, speed=None)
    assert ungated.report(11 * 100 * MS).frozen_cameras == ("cam_a",)


def test_identical_frames_of_a_standing_ego_are_not_frozen_with_a_speed_gate() -> None:
    """A noiseless camera repeats a static scene while the ego stands (min speed 0.5)."""
    sync = _sync()
    for k in range(30):
        assert len(_tick(sync, k, {"cam_a": 7}, speed=0.0 if k < 15 else None)) == 1
    assert sync.report(30 * 100 * MS).frozen_cameras == ()  # standing, then no odometry
    # starting to move: the repetition is timed from then on
    for k in range(30, 39):
        assert len(_tick(sync, k, {"cam_a": 7}, speed=2.0)) == 1
    assert len(_tick(sync, 41, {"cam_a": 7}, speed=2.0)) == 0  # 1.1 s of identical frames
    assert sync.report(41 * 100 * MS).frozen_cameras == ("cam_a",)


def test_out_of_order_frames_are_counted_and_every_set_is_within_slop() -> None:
    sync = _sync()
    sets = []
    for k in range(10):
        sets += _tick(sync, k)
    sets.append(sync.add("cam_a", 3 * 100 * MS + 2 * MS, "late", now_ns=S, digest=1))
    sets.append(sync.add("cam_b", 2 * 100 * MS, "late", now_ns=S, digest=2))
    report = sync.report(S)
    assert [c.frames_out_of_order for c in report.cameras] == [1, 1, 0]
    assert all(s.skew_s < 0.01 for s in sets if s is not None)


def test_malformed_frames_are_counted_and_named_for_the_source_timeout() -> None:
    sync = _sync()
    for k in range(3):
        _tick(sync, k)
    sync.reject("cam_c", now_ns=300 * MS)
    sync.reject(2, now_ns=310 * MS)
    report = sync.report(400 * MS)
    assert report.malformed_cameras == ("cam_c",) and not report.healthy
    assert [c.frames_malformed for c in report.cameras] == [0, 0, 2]
    assert sync.report(811 * MS).malformed_cameras == ()  # 0.5 s after the last one


def test_a_camera_beyond_slop_stalls_the_sets_and_is_named() -> None:
    sync = _sync()
    for k in range(5):
        assert len(_tick(sync, k)) == 1
    for k in range(5, 15):  # cam_c 30 ms late: never within 10 ms of the others
        assert _tick(sync, k, offsets_ms={"cam_c": 30}) == []
    report = sync.report(15 * 100 * MS)
    assert report.sets_stalled and report.set_silence_s > 0.5 and not report.healthy
    assert report.cameras_beyond_slop == ("cam_c",)
    assert report.stale_cameras == () and report.skew_max_s == 0.0
    for k in range(15, 17):
        _tick(sync, k)
    assert not sync.report(17 * 100 * MS).sets_stalled


def test_frame_digest_sees_noise_and_repeats() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (1208, 1920, 3), dtype=np.uint8)  # AR1 camera size
    noisy = np.clip(frame.astype(np.int16) + rng.integers(-2, 3, frame.shape), 0, 255)
    assert frame_digest(frame.tobytes()) == frame_digest(bytes(frame.tobytes()))
    assert frame_digest(frame.tobytes()) != frame_digest(noisy.astype(np.uint8).tobytes())
    assert frame_digest(b"ab") != frame_digest(b"abc")


def test_compressed_integrity_refuses_truncated_and_mislabelled_images() -> None:
    img = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    png = cv2.imencode(".png", img)[1].tobytes()
    assert compressed_integrity_error("rgb8; jpeg compressed bgr8", jpeg) is None
    assert compressed_integrity_error("png", png) is None
    assert compressed_integrity_error("jpeg", jpeg + bytes(16)) is None  # padded after EOI
    assert "truncated" in compressed_integrity_error("jpeg", jpeg[: len(jpeg) // 2])
    assert "truncated" in compressed_integrity_error("png", png[:-20])
    assert "SOI" in compressed_integrity_error("jpeg", png)
    assert "signature" in compressed_integrity_error("png", jpeg)
    assert "unsupported" in compressed_integrity_error("tiff", jpeg)
    assert "no data" in compressed_integrity_error("jpeg", b"")


@pytest.mark.parametrize("cls,field,value", [
    (SyncConfig, "frozen_camera_timeout_s", -1.0),
    (SyncConfig, "frozen_camera_timeout_s", math.inf),
    (SyncConfig, "frozen_camera_min_speed_mps", -1.0),
    (SyncConfig, "frozen_camera_min_speed_mps", True),
    (CameraInputConfig, "max_image_bytes", 0),
    (CameraInputConfig, "max_image_bytes", 1.5),
])
def test_new_config_fields_are_validated_naming_the_field(cls, field, value) -> None:
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


# ---------------------------------------------------------------- the running process
W, H = 64, 40
MAX_IMAGE_BYTES = 200_000
REPORT_PERIOD_S = 0.2
SOURCE_TIMEOUT_S = 0.5
FROZEN_TIMEOUT_S = 0.5


class Cameras:
    """Three 10 Hz cameras (noise images, one stamp per tick) and 50 Hz odometry."""

    def __init__(self, probe: Probe, compressed: bool) -> None:
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CompressedImage, Image

        from alpamayo_ros import topics
        from alpamayo_ros.ros.qos import sensor_qos

        self.probe, self.compressed = probe, compressed
        self.silenced: set[str] = set()
        self.frozen: dict[str, object] = {}  # camera -> the message data it repeats
        self.offset_ns: dict[str, int] = {}
        self.mangle: dict[str, object] = {}  # camera -> function(msg) -> msg
        self.late_copy_ns: dict[str, int] = {}  # camera -> also send a frame this much older
        self.sent_stamps: list[int] = []
        self._rng = np.random.default_rng(0)
        msg_type = CompressedImage if compressed else Image
        node = probe.node

        def build() -> None:
            self._pubs = {c: node.create_publisher(msg_type, topics.image_topic(c, compressed),
                                                   sensor_qos()) for c in CAMS}
            self._odom = node.create_publisher(Odometry, topics.ODOMETRY, sensor_qos())
            node.create_timer(0.1, self._tick)
            node.create_timer(0.02, self._tick_odometry)
        probe._on_spin_thread(build)

    def now_ns(self) -> int:
        return self.probe.node.get_clock().now().nanoseconds

    def reset(self) -> None:
        self.silenced, self.frozen, self.offset_ns, self.mangle = set(), {}, {}, {}
        self.late_copy_ns = {}

    def _tick(self) -> None:
        from std_msgs.msg import Header

        from alpamayo_ros.ros.conversions import time_from_ns
        from alpamayo_ros.ros.images import array_to_compressed, array_to_image

        stamp = self.now_ns()
        img = self._rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        for cam, pub in self._pubs.items():
            if cam in self.silenced:
                continue
            header = Header(stamp=time_from_ns(stamp + self.offset_ns.get(cam, 0)),
                            frame_id=cam)
            msg = (array_to_compressed(img, "jpeg", header) if self.compressed
                   else array_to_image(img, "rgb8", header))
            if cam in self.frozen:
                msg.data = self.frozen[cam]
            if cam in self.mangle:
                msg = self.mangle[cam](msg)
            pub.publish(msg)
            if cam in self.late_copy_ns:  # an older frame after the newest: out of order
                late = (array_to_compressed(img[::-1], "jpeg", header) if self.compressed
                        else array_to_image(np.ascontiguousarray(img[::-1]), "rgb8", header))
                late.header.stamp = time_from_ns(stamp - self.late_copy_ns[cam])
                pub.publish(late)
        self.sent_stamps.append(stamp)

    def _tick_odometry(self) -> None:
        from nav_msgs.msg import Odometry

        from alpamayo_ros.ros.conversions import time_from_ns

        msg = Odometry()
        stamp = self.now_ns()
        msg.header.stamp = time_from_ns(stamp)
        msg.header.frame_id, msg.child_frame_id = "map", "base_link"
        msg.pose.pose.position.x = 8.0 * stamp / 1e9 % 1000.0
        msg.pose.pose.orientation.w = 1.0
        msg.twist.twist.linear.x = 8.0
        self._odom.publish(msg)


def _start(ros_env, tmp_path_factory, compressed: bool):
    from diagnostic_msgs.msg import DiagnosticArray

    from alpamayo_ros import topics

    log = Path(tmp_path_factory.mktemp("sync")) / "sync.log"
    proc = start_node_process(
        "alpamayo_ros.nodes.camera_sync",
        ["-p", f"camera_names:=[{', '.join(CAMS)}]", "-p", "slop_s:=0.01",
         "-p", f"report_period_s:={REPORT_PERIOD_S}",
         "-p", f"source_timeout_s:={SOURCE_TIMEOUT_S}",
         "-p", f"frozen_camera_timeout_s:={FROZEN_TIMEOUT_S}",
         "-p", f"max_image_bytes:={MAX_IMAGE_BYTES}", "-p", "sync_backend:=builtin",
         "-p", f"compressed:={'true' if compressed else 'false'}"], ros_env, log)
    probe = Probe(domain_id(ros_env))
    probe.record(DiagnosticArray, topics.DIAGNOSTICS, 10)
    cams = Cameras(probe, compressed)
    return probe, cams, proc, log


def _ns(stamp) -> int:
    return stamp.sec * S + stamp.nanosec


def _sync_statuses(probe, since_ns: int) -> list[tuple[int, object, dict[str, str]]]:
    from alpamayo_ros import topics

    out = []
    for arr in probe.messages(topics.DIAGNOSTICS):
        if _ns(arr.header.stamp) < since_ns:
            continue
        for st in arr.status:
            if st.name.endswith(": camera sync"):
                out.append((_ns(arr.header.stamp), st, {kv.key: kv.value for kv in st.values}))
    return out


def _level(st) -> int:
    return st.level if isinstance(st.level, int) else st.level[0]


def _wait_healthy(probe, cams, proc, log, timeout_s: float = 15.0) -> tuple[int, int]:
    """Wait for two OK statuses in a row with sets rising; return (stamp, sets_emitted)."""
    start = cams.now_ns()

    def ok() -> bool:
        sts = _sync_statuses(probe, start)
        return len(sts) >= 2 and all(_level(s) == 0 for _, s, _ in sts[-2:]) and \
            int(sts[-1][2]["sets_emitted"]) > int(sts[-2][2]["sets_emitted"])
    assert probe.wait_for(ok, timeout_s, proc, log), \
        f"sync not healthy: {[(s.message) for _, s, _ in _sync_statuses(probe, start)[-3:]]}" \
        f"\n{log.read_text()[-2000:]}"
    stamp, _, values = _sync_statuses(probe, start)[-1]
    return stamp, int(values["sets_emitted"])


def _running_sync(env, tmp_path_factory, compressed: bool):
    """A healthy camera sync process and its probe, for a module-scoped fixture."""
    probe, cams, proc, log = _start(env, tmp_path_factory, compressed=compressed)
    try:
        _wait_healthy(probe, cams, proc, log, 40.0)
        yield probe, cams, proc, log
    finally:
        probe.close()
        stop_process(proc)


@pytest.fixture(scope="module")
def raw_sync(ros_env, tmp_path_factory):
    yield from _running_sync(ros_env, tmp_path_factory, compressed=False)


def run_sensor_fault(ctx, fault: str, behaviour: str, inject, detected, test: str,
                     hold_s: float = 1.2, require_no_sets: bool = True) -> dict:
    """Inject, wait for ``detected(status, values)``, hold, clear, wait for recovery."""
    probe, cams, proc, log = ctx
    cams.reset()
    _, sets_before = _wait_healthy(probe, cams, proc, log)
    t_inject = cams.now_ns()
    inject()
    assert probe.wait_for(lambda: any(detected(st, v) for _, st, v in
                                      _sync_statuses(probe, t_inject)), 5.0, proc, log), \
        f"{fault}: not detected: {[s.message for _, s, _ in _sync_statuses(probe, t_inject)]}"
    t_detect = next(t for t, st, v in _sync_statuses(probe, t_inject) if detected(st, v))
    time.sleep(hold_s)
    during = [(t, st, v) for t, st, v in _sync_statuses(probe, t_detect)]
    assert during and all(_level(st) > 0 for _, st, _ in during), \
        f"{fault}: OK during the fault: {[st.message for _, st, _ in during]}"
    if require_no_sets:  # no set emitted while the fault lasted (after its detection)
        assert len({v["sets_emitted"] for _, _, v in during}) == 1, \
            f"{fault}: sets emitted during the fault"
    assert all(float(v["skew_max_s"]) < 0.01 for _, _, v in during if v["skew_max_s"] != "nan")
    assert proc.poll() is None, f"{fault}: the node died\n{log.read_text()[-2000:]}"
    t_clear = cams.now_ns()
    cams.reset()
    t_ok, _ = _wait_healthy(probe, cams, proc, log)
    ok_first = next(t for t, st, _ in _sync_statuses(probe, t_clear) if _level(st) == 0)
    return record("sensors", fault, behaviour, test,
                  detection_ms=(t_detect - t_inject) / 1e6,
                  recovery_ms=(ok_first - t_clear) / 1e6, hold_ms=hold_s * 1e3,
                  report_period_ms=REPORT_PERIOD_S * 1e3)


@pytest.mark.ros
def test_one_camera_stops_and_returns(raw_sync) -> None:
    cams = raw_sync[1]
    row = run_sensor_fault(
        raw_sync, "one camera stops (silent)",
        f"camera named stale after source_timeout_s ({SOURCE_TIMEOUT_S} s): no set without "
        "it (policy plans nothing: controller minimal-risk stop on its policy timeout); "
        "sets on its first frame back",
        lambda: cams.silenced.add("cam_b"),
        lambda st, v: "stale cameras: cam_b" in st.message and v["cam_b/stale"] == "True",
        "test_faults_sensors.py::test_one_camera_stops_and_returns")
    assert row["detection_ms"] >= SOURCE_TIMEOUT_S * 1e3 - 100  # last frame <= 0.1 s before


@pytest.mark.ros
def test_a_camera_freezes_and_recovers(raw_sync) -> None:
    probe, cams, *_ = raw_sync
    from alpamayo_ros.ros.images import array_to_image

    still = array_to_image(np.full((H, W, 3), 128, np.uint8), "rgb8").data
    row = run_sensor_fault(
        raw_sync, "a camera freezes (same image, new stamps)",
        f"camera named frozen after frozen_camera_timeout_s ({FROZEN_TIMEOUT_S} s here; "
        "1.0 s in the vehicle bring-up, off by default) of identical bytes: its frames "
        "refused (counted), no set with them; synchronized again on the first changed image",
        lambda: cams.frozen.__setitem__("cam_c", still),
        lambda st, v: "frozen cameras: cam_c" in st.message and int(v["cam_c/frames_frozen"]) > 0,
        "test_faults_sensors.py::test_a_camera_freezes_and_recovers")
    assert row["detection_ms"] >= FROZEN_TIMEOUT_S * 1e3 - 100


@pytest.mark.ros
def test_a_camera_beyond_slop_stalls_sets(raw_sync) -> None:
    cams = raw_sync[1]
    run_sensor_fault(
        raw_sync, "large skew (one camera 40 ms late)",
        "no set emitted (all emitted sets' skew < slop_s), frames counted dropped; WARN after "
        f"source_timeout_s ({SOURCE_TIMEOUT_S} s) without a set, naming the camera beyond slop",
        lambda: cams.offset_ns.__setitem__("cam_a", 40 * MS),
        lambda st, v: "cameras beyond slop: cam_a" in st.message,
        "test_faults_sensors.py::test_a_camera_beyond_slop_stalls_sets")


@pytest.mark.ros
def test_out_of_order_frames_are_counted_and_sets_stay_valid(raw_sync) -> None:
    """Every cam_b frame is followed by one stamped 150 ms earlier (a reordering link)."""
    probe, cams, proc, log = raw_sync
    cams.reset()
    _, sets_before = _wait_healthy(probe, cams, proc, log)
    before = int(_sync_statuses(probe, 0)[-1][2]["cam_b/frames_out_of_order"])
    t_inject = cams.now_ns()
    cams.late_copy_ns["cam_b"] = 150 * MS

    def counted(v) -> bool:
        return int(v["cam_b/frames_out_of_order"]) > before
    try:
        assert probe.wait_for(lambda: any(counted(v) for _, _, v in
                                          _sync_statuses(probe, t_inject)), 5.0, proc, log)
        t_detect = next(t for t, _, v in _sync_statuses(probe, t_inject) if counted(v))
        time.sleep(1.0)
    finally:
        cams.reset()
    during = _sync_statuses(probe, t_detect)
    # counted only: the sets go on, every one within slop; the node keeps running
    assert int(during[-1][2]["sets_emitted"]) >= sets_before + 8
    assert float(during[-1][2]["skew_max_s"]) < 0.01
    assert int(during[-1][2]["cam_b/frames_out_of_order"]) >= before + 8
    assert proc.poll() is None
    record("sensors", "frames out of order (one camera, 150 ms back after each frame)",
           "counted per camera (<camera>/frames_out_of_order); sets go on, every set's skew "
           "< slop_s; stays OK",
           "test_faults_sensors.py::test_out_of_order_frames_are_counted_and_sets_stay_valid",
           detection_ms=(t_detect - t_inject) / 1e6, report_period_ms=REPORT_PERIOD_S * 1e3)


def _mangled(cams, fault: str):
    def make(msg):
        if fault == "truncated":
            msg.data = bytes(msg.data)[: len(msg.data) // 2]
        elif fault == "step":
            msg.step = msg.step - 3
        elif fault == "encoding":
            msg.encoding = "yuv422_yuy2"
        elif fault == "size":
            msg.height = msg.height * 2
        elif fault == "oversized":
            big = np.zeros((400, 400, 3), np.uint8)  # 480 kB > max_image_bytes 200 kB
            msg.height, msg.width, msg.step, msg.data = 400, 400, 1200, big.tobytes()
        return msg
    return make


RAW_FAULTS = [
    ("truncated", "raw image with truncated data"),
    ("step", "raw image with a wrong step"),
    ("encoding", "raw image with an unsupported encoding"),
    ("size", "raw image whose height does not match its data"),
    ("oversized", f"oversized image (480 kB > max_image_bytes {MAX_IMAGE_BYTES} B)"),
]


@pytest.mark.ros
@pytest.mark.parametrize("kind,fault", RAW_FAULTS, ids=[k for k, _ in RAW_FAULTS])
def test_malformed_raw_images_are_refused_and_counted(raw_sync, kind, fault) -> None:
    probe, cams, proc, log = raw_sync
    before = {}

    def inject() -> None:
        sts = _sync_statuses(probe, 0)
        before["n"] = int(sts[-1][2]["cam_b/malformed"])
        cams.mangle["cam_b"] = _mangled(cams, kind)
    run_sensor_fault(
        raw_sync, fault,
        "refused on arrival, counted in <camera>/malformed, WARN naming the camera; no set "
        "without it; node keeps running; sets on the first valid frame, OK source_timeout_s "
        f"({SOURCE_TIMEOUT_S} s) after the last malformed one",
        inject, lambda st, v: int(v["cam_b/malformed"]) > before["n"]
        and "malformed frames from: cam_b" in st.message,
        "test_faults_sensors.py::test_malformed_raw_images_are_refused_and_counted",
        hold_s=0.3)


@pytest.fixture(scope="module")
def compressed_sync(ros_env, tmp_path_factory):
    env = dict(ros_env, ROS_DOMAIN_ID=str(int(ros_env["ROS_DOMAIN_ID"]) + 101))
    yield from _running_sync(env, tmp_path_factory, compressed=True)


@pytest.mark.ros
def test_truncated_compressed_images_are_refused_and_counted(compressed_sync) -> None:
    probe, cams, *_ = compressed_sync
    before = {}

    def inject() -> None:
        before["n"] = int(_sync_statuses(probe, 0)[-1][2]["cam_a/malformed"])
        cams.mangle["cam_a"] = _mangled(cams, "truncated")
    run_sensor_fault(
        compressed_sync, "truncated compressed (jpeg) image",
        "refused on arrival (no jpeg EOI marker), counted in <camera>/malformed, WARN naming "
        "the camera; no set without it; node keeps running; sets on the first whole jpeg, "
        f"OK source_timeout_s ({SOURCE_TIMEOUT_S} s) after the last truncated one",
        inject, lambda st, v: int(v["cam_a/malformed"]) > before["n"]
        and "malformed frames from: cam_a" in st.message,
        "test_faults_sensors.py::test_truncated_compressed_images_are_refused_and_counted",
        hold_s=0.3)
