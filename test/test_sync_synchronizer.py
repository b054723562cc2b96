"""ApproximateTimeSynchronizer: message_filters semantics on direct add() calls.

Written the way message_filters tests its own synchronizer (direct calls, no ROS graph),
plus a differential test against a literal transcription of message_filters'
``ApproximateTimeSynchronizer.add`` (full ``itertools.product``, no pruning) and, where
the real package is importable, against message_filters itself.
"""

import itertools
import random

import pytest

from alpamayo_ros.sync import ApproximateTimeSynchronizer, SyncedSet

MS = 1_000_000
S = 1_000_000_000


def collect(sync: ApproximateTimeSynchronizer) -> tuple[list, list]:
    sets, drops = [], []
    sync.register_callback(sets.append)
    sync.register_drop_callback(lambda i, s, item, reason: drops.append((i, s, item, reason)))
    return sets, drops


class ReferenceApproxSync:
    """message_filters' ApproximateTimeSynchronizer.add, transcribed onto int stamps."""

    def __init__(self, n: int, queue_size: int, slop_s: float) -> None:
        self.queues = [{} for _ in range(n)]
        self.queue_size = queue_size
        self.slop = int(slop_s * 1e9)  # rclpy Duration(seconds=slop)
        self.out = []

    def add(self, msg, stamp: int, my_queue_index: int) -> None:
        my_queue = self.queues[my_queue_index]
        my_queue[stamp] = msg
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]
        search_queues = self.queues[:my_queue_index] + self.queues[my_queue_index + 1:]
        stamps = []
        for queue in search_queues:
            topic_stamps = []
            for s in queue:
                delta = abs(s - stamp)
                if delta > self.slop:
                    continue
                topic_stamps.append((s, delta))
            if not topic_stamps:
                return
            topic_stamps = sorted(topic_stamps, key=lambda x: x[1])
            stamps.append(topic_stamps)
        for vv in itertools.product(*[list(zip(*s))[0] for s in stamps]):
            vv = list(vv)
            vv.insert(my_queue_index, stamp)
            qt = list(zip(self.queues, vv))
            if (max(vv) - min(vv)) < self.slop and all(t in q for q, t in qt):
                self.out.append(tuple(q[t] for q, t in qt))
                for q, t in qt:
                    del q[t]
                break


def test_pairs_in_order_emit_on_the_second_message() -> None:
    sync = ApproximateTimeSynchronizer(2, 1, 0.1)
    sets, _ = collect(sync)
    for t in range(10):
        assert sync.add(0, t * S, ("a", t)) is None
        assert sets == [] if t == 0 else len(sets) == t
        out = sync.add(1, t * S, ("b", t))
        assert out == SyncedSet((t * S, t * S), (("a", t), ("b", t)))
        assert sets[-1] == out


@pytest.mark.parametrize("n", range(1, 10))
def test_scrambled_sequences_recombine(n: int) -> None:
    rng = random.Random(n)
    sync = ApproximateTimeSynchronizer(2, n, 0.1)
    sets, drops = collect(sync)
    seq0 = [(t * S, ("a", t)) for t in range(n)]
    seq1 = [(t * S, ("b", t)) for t in range(n)]
    for stamp, item in rng.sample(seq0, n):
        sync.add(0, stamp, item)
    assert sets == []
    for stamp, item in rng.sample(seq1, n):
        sync.add(1, stamp, item)
    assert {s.items for s in sets} == {(a, b) for (_, a), (_, b) in zip(seq0, seq1)}
    assert drops == []


def test_out_of_order_arrival_within_one_input() -> None:
    sync = ApproximateTimeSynchronizer(2, 5, 0.01)
    sets, _ = collect(sync)
    for stamp in (300 * MS, 100 * MS, 200 * MS):
        sync.add(0, stamp, stamp)
    sync.add(1, 202 * MS, "b200")
    sync.add(1, 98 * MS, "b100")
    assert [s.stamps_ns for s in sets] == [(200 * MS, 202 * MS), (100 * MS, 98 * MS)]
    assert sync.pending_stamps(0) == [300 * MS]


def test_slop_boundary_candidate_inclusive_spread_strict() -> None:
    slop_s = 0.05
    slop_ns = int(slop_s * 1e9)
    # |delta| == slop: a candidate, but the spread must be strictly below slop.
    sync = ApproximateTimeSynchronizer(2, 10, slop_s)
    sync.add(0, 0, "a")
    assert sync.add(1, slop_ns, "b") is None
    assert sync.pending_stamps(0) == [0] and sync.pending_stamps(1) == [slop_ns]
    # one nanosecond less: emitted
    sync = ApproximateTimeSynchronizer(2, 10, slop_s)
    sync.add(0, 0, "a")
    out = sync.add(1, slop_ns - 1, "b")
    assert out is not None and out.skew_s == pytest.approx((slop_ns - 1) / 1e9)
    # three inputs pairwise within slop of the new stamp but spread >= slop: no set
    sync = ApproximateTimeSynchronizer(3, 10, slop_s)
    sync.add(0, -30 * MS, "a")
    sync.add(1, 30 * MS, "b")
    assert sync.add(2, 0, "c") is None  # |±30| <= 50 but the spread is 60 ms
    assert sync.add(2, 10 * MS, "c2") is None  # a and b alone already spread 60 ms
    out = sync.add(0, 20 * MS, "a2")  # 20, 30 and the closer of c (0) / c2 (10)
    assert out.items == ("a2", "b", "c2")
    assert sync.pending_stamps(0) == [-30 * MS] and sync.pending_stamps(2) == [0]


def test_new_message_pairs_with_the_closest_candidate_and_leaves_older_ones() -> None:
    sync = ApproximateTimeSynchronizer(2, 10, 0.02)
    for stamp in (0, 30 * MS, 40 * MS, 55 * MS):
        sync.add(0, stamp, stamp)
    out = sync.add(1, 44 * MS, "b")
    assert out.stamps_ns == (40 * MS, 44 * MS)
    # exactly the emitted items leave; older unmatched frames stay queued
    assert sync.pending_stamps(0) == [0, 30 * MS, 55 * MS]
    assert sync.pending_stamps(1) == []


def test_queue_size_evicts_the_oldest_and_reports_it() -> None:
    sync = ApproximateTimeSynchronizer(2, 2, 0.01)
    sets, drops = collect(sync)
    for t in (1, 2, 3):
        sync.add(0, t * S, f"a{t}")
    assert drops == [(0, 1 * S, "a1", "evicted")]
    assert sync.pending_stamps(0) == [2 * S, 3 * S]
    assert sync.add(1, 1 * S, "b1") is None  # its partner was evicted
    # a frame older than a full queue is evicted on arrival and never matches
    sync.add(1, 5 * S, "b5")
    sync.add(1, 0, "b0")  # queue {1, 5} + 0 -> evicts 0 itself
    assert drops[-1] == (1, 0, "b0", "evicted")
    assert sync.pending_stamps(1) == [1 * S, 5 * S]
    assert sets == []


def test_same_stamp_replaces_and_reports_the_replaced_item() -> None:
    sync = ApproximateTimeSynchronizer(2, 5, 0.01)
    sets, drops = collect(sync)
    sync.add(0, S, "first")
    sync.add(0, S, "second")
    assert drops == [(0, S, "first", "replaced")]
    assert sync.add(1, S, "b").items == ("second", "b")


def test_four_cameras_with_jitter_and_arbitrary_arrival_order() -> None:
    rng = random.Random(7)
    sync = ApproximateTimeSynchronizer(4, 10, 0.01)
    sets, drops = collect(sync)
    frames = []
    for k in range(50):
        base = k * 100 * MS
        for cam in range(4):
            frames.append((cam, base + rng.randint(-4 * MS, 4 * MS), (cam, k)))
    # arrival: per frame index, cameras in random order (transport reorders cameras)
    for k in range(50):
        chunk = frames[4 * k: 4 * k + 4]
        rng.shuffle(chunk)
        for cam, stamp, item in chunk:
            sync.add(cam, stamp, item)
    assert len(sets) == 50 and drops == []
    for s in sets:
        ks = {item[1] for item in s.items}
        assert len(ks) == 1, s  # never mixes capture instants
        assert [item[0] for item in s.items] == [0, 1, 2, 3]
        assert s.skew_s < 0.01


def test_single_input_emits_every_message() -> None:
    sync = ApproximateTimeSynchronizer(1, 3, 0.01)
    assert sync.add(0, 5, "x").items == ("x",)


def test_matches_a_literal_transcription_of_message_filters() -> None:
    emitted = dropped = 0
    for seed in range(40):
        rng = random.Random(seed)
        n = rng.choice([2, 3, 4])
        queue_size = rng.choice([1, 2, 3, 5, 10])
        slop_s = rng.choice([0.005, 0.01, 0.03])
        ours = ApproximateTimeSynchronizer(n, queue_size, slop_s)
        ref = ReferenceApproxSync(n, queue_size, slop_s)
        sets, drops = collect(ours)
        jitter_ms = max(1, round(slop_s * 1000 * 0.8))  # near-misses and ties both happen
        events = []
        for k in range(60):
            for cam in range(n):
                if rng.random() < 0.15:
                    continue  # lost frame
                stamp = k * 33 * MS + rng.randint(-jitter_ms, jitter_ms) * MS
                if rng.random() < 0.05 and events:
                    stamp = events[-1][1]  # duplicate stamp
                events.append((cam, stamp, (cam, k, len(events))))
        # delayed delivery: each frame arrives up to 3 slots late
        order = sorted(range(len(events)), key=lambda e: e + rng.uniform(0, 3 * n))
        for e in order:
            cam, stamp, item = events[e]
            ours.add(cam, stamp, item)
            ref.add(item, stamp, cam)
        assert [s.items for s in sets] == ref.out, f"seed {seed}"
        emitted += len(sets)
        dropped += len(drops)
    assert emitted > 300 and dropped > 300  # both paths are exercised


def test_rejects_bad_construction_and_indexes() -> None:
    with pytest.raises(ValueError, match="slop_s"):
        ApproximateTimeSynchronizer(2, 1, 0.0)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSynchronizer(2, 0, 0.1)
    with pytest.raises(ValueError, match="num_inputs"):
        ApproximateTimeSynchronizer(0, 1, 0.1)
    with pytest.raises(IndexError):
        ApproximateTimeSynchronizer(2, 1, 0.1).add(2, 0, "x")


def test_equivalent_to_ros2_message_filters() -> None:
    message_filters = pytest.importorskip(
        "message_filters", reason="message_filters is not importable (ROS 2 package absent "
        "from the pip wheels; see ../shared/ros2-upstream)")
    from rclpy.time import Time

    class Header:
        pass

    class Msg:
        def __init__(self, stamp_ns: int, data) -> None:
            self.header = Header()
            self.header.stamp = Time(nanoseconds=stamp_ns)
            self.data = data

    emitted = 0
    for seed in range(20):
        rng = random.Random(seed)
        n = rng.choice([2, 3, 4])
        queue_size = rng.choice([1, 2, 4, 10])
        slop_s = rng.choice([0.005, 0.01, 0.03])
        filters = [message_filters.SimpleFilter() for _ in range(n)]
        theirs = message_filters.ApproximateTimeSynchronizer(filters, queue_size, slop_s)
        got_theirs = []
        theirs.registerCallback(lambda *msgs, out=got_theirs: out.append(
            tuple(m.data for m in msgs)))
        ours = ApproximateTimeSynchronizer(n, queue_size, slop_s)
        sets, _ = collect(ours)
        for k in range(200):
            cam = rng.randrange(n)
            # rclpy refuses negative stamps: every stamp starts 1 s after the epoch
            stamp = S + (k // n) * 33 * MS + rng.randint(-12, 12) * MS
            data = (cam, k)
            filters[cam].signalMessage(Msg(stamp, data))
            ours.add(cam, stamp, data)
        assert [s.items for s in sets] == got_theirs, f"seed {seed}"
        emitted += len(got_theirs)
    assert emitted > 300  # 353 sets over these seeds


def test_the_nodes_message_filters_adapter_emits_the_same_sets() -> None:
    pytest.importorskip(
        "message_filters", reason="message_filters is not importable (ROS 2 package absent "
        "from the pip wheels; see ../shared/ros2-upstream)")
    from alpamayo_ros.nodes.camera_sync import MessageFiltersSynchronizer

    for seed in range(10):
        rng = random.Random(seed)
        n, queue_size, slop_s = rng.choice([2, 3, 4]), rng.choice([1, 3, 10]), 0.01
        ours = ApproximateTimeSynchronizer(n, queue_size, slop_s)
        adapter = MessageFiltersSynchronizer(n, queue_size, slop_s)
        ours_sets, _ = collect(ours)
        adapter_sets: list[SyncedSet] = []
        adapter.register_callback(adapter_sets.append)
        for k in range(150):
            cam = rng.randrange(n)
            stamp = S + (k // n) * 33 * MS + rng.randint(-8, 8) * MS
            item = {"cam": cam, "k": k}  # any object travels through unchanged
            assert ours.add(cam, stamp, item) == adapter.add(cam, stamp, item)
        assert adapter_sets == ours_sets and ours_sets, f"seed {seed}"
    with pytest.raises(IndexError):
        adapter.add(n, S, "x")
