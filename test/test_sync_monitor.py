"""SyncMonitor, FrameHistory, CameraSync and SyncConfig: drops, skew, stopped cameras.

The CameraSync tests run with both grouping backends: the built-in synchronizer and
message_filters' (through the camera sync node's adapter; skipped where message_filters
is not importable). The accounting must come out the same.
"""

import importlib.util
import math
import random

import pytest

from alpamayo_ros.sync import (
    ApproximateTimeSynchronizer,
    CameraSync,
    FrameHistory,
    SyncConfig,
    SyncedSet,
    SyncMonitor,
)

MS = 1_000_000
S = 1_000_000_000
CAMS = ("cross_left", "front_wide", "cross_right", "front_tele")
HAVE_MESSAGE_FILTERS = importlib.util.find_spec("message_filters") is not None
BACKENDS = [
    "builtin",
    pytest.param("message_filters", marks=pytest.mark.skipif(
        not HAVE_MESSAGE_FILTERS, reason="message_filters is not importable (ROS 2 package "
        "absent from the pip wheels; see ../shared/ros2-upstream)")),
]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def synchronizer_for(backend: str, config: SyncConfig):
    if backend == "builtin":
        return ApproximateTimeSynchronizer(len(config.camera_names), config.queue_size,
                                           config.slop_s)
    from alpamayo_ros.nodes.camera_sync import MessageFiltersSynchronizer

    return MessageFiltersSynchronizer(len(config.camera_names), config.queue_size,
                                      config.slop_s)


@pytest.fixture()
def make(backend):
    def build(**overrides) -> CameraSync:
        params = dict(camera_names=CAMS, queue_size=5, slop_s=0.01, source_timeout_s=0.5)
        params.update(overrides)
        config = SyncConfig(**params)
        return CameraSync(config, synchronizer_for(backend, config))

    return build


def feed(sync: CameraSync, k: int, period_ms: int = 100, skip=(), jitter=None,
         latency_ms: int = 20) -> list:
    """Deliver capture instant ``k`` of every camera not in ``skip``; return emitted sets."""
    out = []
    base = k * period_ms * MS
    for i, cam in enumerate(CAMS):
        if cam in skip:
            continue
        stamp = base + (jitter[i] if jitter else 0)
        s = sync.add(cam, stamp, (cam, k), now_ns=base + latency_ms * MS)
        if s is not None:
            out.append(s)
    return out


def test_clean_streams_report_no_drops_and_zero_skew(make) -> None:
    sync = make()
    for k in range(20):
        assert len(feed(sync, k)) == 1
    rep = sync.report(now_ns=19 * 100 * MS + 30 * MS)
    assert rep.sets_emitted == 20 and rep.dropped_sets == 0 and rep.drop_ratio == 0.0
    assert rep.skew_max_s == 0.0 and rep.healthy
    assert all(c.frames_received == 20 for c in rep.cameras)
    assert rep.cameras[0].staleness_s == pytest.approx(0.03)


def test_skew_statistics_follow_the_emitted_sets(make) -> None:
    sync = make()
    jitters = [[0, 2 * MS, 5 * MS, 1 * MS], [0, 0, 0, 8 * MS], [3 * MS, 0, 0, 0]]
    for k, jit in enumerate(jitters):
        feed(sync, k, jitter=jit)
    rep = sync.report(now_ns=300 * MS)
    assert rep.sets_emitted == 3
    assert rep.skew_last_s == pytest.approx(0.003)
    assert rep.skew_max_s == pytest.approx(0.008)
    assert rep.skew_mean_s == pytest.approx((0.005 + 0.008 + 0.003) / 3)


def test_frames_that_never_sync_are_counted_as_dropped_sets(make) -> None:
    sync = make(queue_size=3)
    for k in range(10):
        # front_tele lags by 30 ms from frame 4 on: beyond the 10 ms slop
        jit = [0, 0, 0, 30 * MS if k >= 4 else 0]
        feed(sync, k, jitter=jit)
    rep = sync.report(now_ns=1000 * MS)
    assert rep.sets_emitted == 4
    # 6 unsynced instants; the first 3 per camera already left the 3-deep queues
    per_cam = {c.name: c.frames_dropped for c in rep.cameras}
    assert per_cam == {name: 3 for name in CAMS}
    assert rep.dropped_sets == 3
    assert rep.drop_ratio == pytest.approx(3 / 7)


def test_a_lossy_camera_drops_only_its_own_frames(make) -> None:
    rng = random.Random(1)
    sync = make(queue_size=4)
    lost = 0
    for k in range(100):
        skip = ()
        if rng.random() < 0.2:
            skip = ("front_tele",)
            lost += 1
        feed(sync, k, skip=skip)
    rep = sync.report(now_ns=100 * 100 * MS)
    assert rep.sets_emitted == 100 - lost
    dropped = {c.name: c.frames_dropped for c in rep.cameras}
    assert dropped["front_tele"] == 0
    # the other cameras' orphaned frames are dropped once evicted (4 may still be queued)
    assert lost - 4 <= dropped["front_wide"] <= lost
    assert rep.dropped_sets == dropped["front_wide"]


def test_a_stopped_camera_is_detected_within_the_source_timeout(make) -> None:
    sync = make(source_timeout_s=0.5)
    for k in range(10):
        feed(sync, k, skip=("cross_right",) if k >= 5 else ())
    last_right = 4 * 100 * MS
    just_before = sync.report(now_ns=last_right + 500 * MS)
    assert just_before.healthy  # exactly the timeout: not yet stale
    after = sync.report(now_ns=last_right + 501 * MS)
    assert after.stale_cameras == ("cross_right",)
    right = after.cameras[2]
    assert right.staleness_s == pytest.approx(0.501) and right.last_stamp_ns == last_right
    assert after.cameras[1].staleness_s == pytest.approx(0.501 - 0.5)
    assert not after.cameras[1].stale


def test_a_camera_that_never_starts_goes_stale_after_the_timeout(make) -> None:
    sync = make(source_timeout_s=0.5)
    for k in range(6):
        feed(sync, k, skip=("front_tele",), latency_ms=0)  # the clock starts at 0
    assert sync.report(now_ns=500 * MS).healthy
    rep = sync.report(now_ns=501 * MS)
    assert rep.stale_cameras == ("front_tele",)
    assert math.isinf(rep.cameras[3].staleness_s) and rep.cameras[3].last_stamp_ns is None


def test_history_picks_sets_at_the_stride_from_30hz_cameras(make) -> None:
    sync = make(history_frames=4, history_stride_s=0.1, history_tolerance_s=0.03)
    for k in range(12):  # 30 Hz: stamps every 33.3 ms
        stamp = round(k * 1e9 / 30)
        for cam in CAMS:
            sync.add(cam, stamp + (1 * MS if cam == "front_tele" else 0), k, now_ns=stamp)
    win = sync.window()
    assert win is not None and win.complete
    assert [s.items[0] for s in win.sets] == [2, 5, 8, 11]
    assert win.stamp_ns == round(11 * 1e9 / 30) + 1 * MS
    assert list(win.target_stamps_ns) == [win.stamp_ns - j * 100 * MS for j in (3, 2, 1, 0)]


def test_incomplete_history_is_skipped_or_padded(make) -> None:
    for policy in ("skip", "pad"):
        sync = make(history_incomplete=policy)
        feed(sync, 0)
        feed(sync, 1)
        win = sync.window()
        if policy == "skip":
            assert win is None
        else:
            assert win.padded_slots == (0, 1) and not win.complete
            assert [s.items[0][1] for s in win.sets] == [0, 0, 0, 1]
        feed(sync, 2)
        feed(sync, 3)
        win = sync.window()
        assert win.complete and [s.items[0][1] for s in win.sets] == [0, 1, 2, 3]
        # set 5 is lost (one camera missing): slot for t=5 is empty once 6 arrives
        feed(sync, 4)
        feed(sync, 5, skip=("front_wide",))
        feed(sync, 6)
        win = sync.window()
        if policy == "skip":
            assert win is None
        else:
            assert win.padded_slots == (2,)
            assert [s.items[0][1] for s in win.sets] == [3, 4, 4, 6]
        feed(sync, 7)
        feed(sync, 8)
        assert (sync.window() is None) if policy == "skip" else sync.window().padded_slots == (0,)
        feed(sync, 9)
        assert sync.window().complete


def test_history_accepts_out_of_order_sets_and_bounds_its_memory() -> None:
    hist = FrameHistory(frames=3, stride_s=0.1, tolerance_s=0.02)

    def mk(t_ms: int) -> SyncedSet:
        return SyncedSet((t_ms * MS,), (t_ms,))

    hist.push(mk(200))
    hist.push(mk(0))  # older, arrives late
    hist.push(mk(100))
    assert [s.items[0] for s in hist.window().sets] == [0, 100, 200]
    for t in range(300, 3000, 100):
        hist.push(mk(t))
    assert len(hist) == 3
    hist.push(mk(100))  # far too old for the window: ignored
    assert len(hist) == 3 and hist.window().stamp_ns == 2900 * MS
    hist.push(mk(2840))  # nearer to no target than the tolerance: kept but unused
    assert [s.items[0] for s in hist.window().sets] == [2700, 2800, 2900]


def test_history_slot_outside_the_tolerance_is_empty() -> None:
    hist = FrameHistory(frames=2, stride_s=0.1, tolerance_s=0.01, incomplete="skip")
    hist.push(SyncedSet((0,), ("a",)))
    hist.push(SyncedSet((115 * MS,), ("b",)))  # 15 ms from the target at 15 ms
    assert hist.window() is None
    hist.push(SyncedSet((10 * MS,), ("c",)))  # 5 ms from the target
    assert [s.items[0] for s in hist.window().sets] == ["c", "b"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("camera_names", ()),
        ("camera_names", ("a", "a")),
        ("camera_names", "front"),
        ("queue_size", 0),
        ("slop_s", 0.0),
        ("slop_s", math.nan),
        ("source_timeout_s", -1.0),
        ("history_frames", 0),
        ("history_stride_s", 0.0),
        ("history_tolerance_s", 0.05),
        ("history_incomplete", "guess"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        SyncConfig(**{field: value})


def test_config_accepts_ros_lists_and_unknown_cameras_are_refused() -> None:
    cfg = SyncConfig(camera_names=["a", "b"])
    assert cfg.camera_names == ("a", "b")
    sync = CameraSync(cfg)
    with pytest.raises(KeyError, match="unknown camera"):
        sync.add("c", 0, None, now_ns=0)


def test_monitor_drops_are_exactly_the_synchronizers_own_drops() -> None:
    """The monitor's drops are the built-in synchronizer's own, per camera.

    The monitor sees only frames offered and sets emitted (its queue mirror); the
    synchronizer reports each drop from inside its queues.
    """
    checked = 0
    for seed in range(30):
        rng = random.Random(seed)
        n = rng.choice([2, 3, 4])
        queue_size = rng.choice([1, 2, 3, 5])
        slop_s = rng.choice([0.005, 0.01, 0.03])
        sync = ApproximateTimeSynchronizer(n, queue_size, slop_s)
        monitor = SyncMonitor([f"c{i}" for i in range(n)], 1.0, queue_size=queue_size)
        sync.register_callback(monitor.on_set)
        drops: list[int] = []
        sync.register_drop_callback(lambda i, *_, out=drops: out.append(i))
        jitter_ms = max(1, round(slop_s * 1000 * 0.8))
        events = []
        for k in range(60):
            for cam in range(n):
                if rng.random() < 0.15:
                    continue
                stamp = S + k * 33 * MS + rng.randint(-jitter_ms, jitter_ms) * MS
                if rng.random() < 0.05 and events:
                    stamp = events[-1][1]  # same stamp again: a replacement
                events.append((cam, stamp))
        order = sorted(range(len(events)), key=lambda e: e + rng.uniform(0, 3 * n))
        for e in order:
            cam, stamp = events[e]
            monitor.on_frame(cam, stamp, now_ns=stamp)
            sync.add(cam, stamp, e)
        report = monitor.report(now_ns=S)
        true_drops = [drops.count(i) for i in range(n)]
        assert [c.frames_dropped for c in report.cameras] == true_drops, f"seed {seed}"
        assert [monitor.queued_stamps(i) for i in range(n)] == [
            sorted(sync.pending_stamps(i)) for i in range(n)], f"seed {seed}"
        checked += sum(true_drops)
    assert checked > 300  # drops (evictions and replacements) are exercised


def test_a_set_with_a_stamp_already_counted_dropped_takes_the_drop_back() -> None:
    """A stamp the mirror evicted but the synchronizer still emits is not a drop.

    (Only possible with frames offered from two threads at once.)
    """
    monitor = SyncMonitor(["a", "b"], 1.0, queue_size=1)
    monitor.on_frame(0, 1 * S, now_ns=0)
    monitor.on_frame(0, 2 * S, now_ns=0)  # mirror evicts a@1 s
    assert monitor.report(now_ns=0).cameras[0].frames_dropped == 1
    monitor.on_frame(1, 1 * S, now_ns=0)
    monitor.on_set(SyncedSet((1 * S, 1 * S), ("a1", "b1")))  # ...but a@1 s was emitted
    report = monitor.report(now_ns=0)
    assert [c.frames_dropped for c in report.cameras] == [0, 0]
    assert monitor.queued_stamps(0) == [2 * S] and monitor.queued_stamps(1) == []


def test_sync_backend_is_validated_and_resolved(monkeypatch) -> None:
    from alpamayo_ros.nodes import camera_sync
    from alpamayo_ros.sync.config import CameraInputConfig

    with pytest.raises(ValueError, match="sync_backend"):
        CameraInputConfig(sync_backend="fastest")
    assert camera_sync.resolve_backend("builtin") == "builtin"
    expected = "message_filters" if HAVE_MESSAGE_FILTERS else "builtin"
    assert camera_sync.resolve_backend("auto") == expected
    monkeypatch.setattr(camera_sync, "message_filters", None)  # as on a pip-only machine
    assert camera_sync.resolve_backend("auto") == "builtin"
    with pytest.raises(ValueError, match="'sync_backend' is 'message_filters'.*not importable"):
        camera_sync.resolve_backend("message_filters")
