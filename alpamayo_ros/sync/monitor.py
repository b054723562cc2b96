"""Health of camera synchronization: drops, inter-camera skew, staleness, stopped cameras.

:class:`SyncMonitor` sees every frame offered to the synchronizer (:meth:`on_frame`,
called *before* the synchronizer's ``add``) and every set it emits (:meth:`on_set`);
:meth:`report` gives a :class:`SyncReport` at a given time. It needs nothing else from
the synchronizer, so the accounting is the same whichever backend groups the frames
(``message_filters.ApproximateTimeSynchronizer``, which discards frames silently, or
:class:`~alpamayo_ros.sync.synchronizer.ApproximateTimeSynchronizer`): it keeps a mirror
of each input's queue, i.e. the stamps received and not yet emitted, with the queue rules
both backends share (message_filters' ``queue_size``: a stamp already queued on that input
is replaced; above ``queue_size`` stamps the smallest leaves). Definitions:

- a *dropped frame* is one that left its queue without ever being part of an emitted set
  (evicted by ``queue_size`` or replaced by a frame with the same stamp);
- ``dropped_sets`` is the largest dropped-frame count over the cameras: each dropped
  frame is one capture instant the model never saw with that camera, so at least that
  many sets were lost (openpilot reports the same kind of drop ratio);
- *skew* of a set is its newest minus its oldest stamp;
- *staleness* of a camera is ``now`` minus the newest stamp it delivered; a camera is
  *stale* (stopped) when that exceeds ``source_timeout_s``, or when it never delivered
  anything for ``source_timeout_s`` since the monitor first saw the clock.

A set containing a stamp the mirror had already counted as dropped (possible only when
frames of one input are offered from several threads at once) takes that drop back.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alpamayo_ros.sync.synchronizer import S_TO_NS, SyncedSet


@dataclass(frozen=True)
class CameraHealth:
    """Counters and freshness of one camera."""

    name: str
    frames_received: int
    frames_dropped: int
    last_stamp_ns: int | None  # newest stamp delivered; None before the first frame
    staleness_s: float  # now - last_stamp; inf before the first frame
    stale: bool


@dataclass(frozen=True)
class SyncReport:
    """Synchronization health at ``now_ns``."""

    now_ns: int
    cameras: tuple[CameraHealth, ...]
    sets_emitted: int
    dropped_sets: int
    drop_ratio: float  # dropped_sets / (sets_emitted + dropped_sets); 0 with no data
    skew_last_s: float  # NaN before the first set
    skew_mean_s: float  # over the last `skew_window` sets; NaN before the first set
    skew_p95_s: float
    skew_max_s: float  # over the monitor's lifetime; NaN before the first set

    @property
    def stale_cameras(self) -> tuple[str, ...]:
        """Names of the cameras that stopped (or never started)."""
        return tuple(c.name for c in self.cameras if c.stale)

    @property
    def healthy(self) -> bool:
        """True when every camera is fresh."""
        return not self.stale_cameras


class SyncMonitor:
    """Counts frames, drops and sets; measures skew and per-camera staleness."""

    def __init__(self, camera_names: Sequence[str], source_timeout_s: float,
                 skew_window: int = 100, queue_size: int = 10) -> None:
        if not camera_names:
            raise ValueError("camera_names must name at least one camera")
        if not source_timeout_s > 0:
            raise ValueError(f"source_timeout_s must be > 0, got {source_timeout_s!r}")
        if skew_window < 1:
            raise ValueError(f"skew_window must be >= 1, got {skew_window!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        self.camera_names = tuple(camera_names)
        self.source_timeout_s = float(source_timeout_s)
        self.queue_size = queue_size
        n = len(self.camera_names)
        self._received = [0] * n
        self._dropped = [0] * n
        self._last_stamp: list[int | None] = [None] * n
        # Mirror of each input's queue: stamps received and not yet emitted or dropped.
        self._queued: list[set[int]] = [set() for _ in range(n)]
        # Stamps most recently counted as dropped (bounded): see the module docstring.
        self._recent_drops: list[deque[int]] = [deque(maxlen=queue_size) for _ in range(n)]
        self._sets = 0
        self._skews: deque[float] = deque(maxlen=skew_window)
        self._skew_max = math.nan
        self._start_ns: int | None = None

    def _see_clock(self, now_ns: int) -> None:
        if self._start_ns is None:
            self._start_ns = int(now_ns)

    def _drop(self, input_index: int, stamp_ns: int) -> None:
        self._dropped[input_index] += 1
        self._recent_drops[input_index].append(stamp_ns)

    def on_frame(self, input_index: int, stamp_ns: int, now_ns: int) -> None:
        """Record a frame offered to the synchronizer (call before the synchronizer sees it)."""
        self._see_clock(now_ns)
        stamp = int(stamp_ns)
        self._received[input_index] += 1
        last = self._last_stamp[input_index]
        if last is None or stamp > last:
            self._last_stamp[input_index] = stamp
        queued = self._queued[input_index]
        if stamp in queued:
            self._drop(input_index, stamp)  # the queued frame is replaced by this one
        queued.add(stamp)
        while len(queued) > self.queue_size:
            oldest = min(queued)
            queued.discard(oldest)
            self._drop(input_index, oldest)

    def on_set(self, synced: SyncedSet) -> None:
        """Synchronizer set callback: record the emitted set and its skew."""
        for index, stamp in enumerate(synced.stamps_ns):
            if stamp in self._queued[index]:
                self._queued[index].discard(stamp)
            elif stamp in self._recent_drops[index]:  # emitted after all: not dropped
                self._recent_drops[index].remove(stamp)
                self._dropped[index] -= 1
        self._sets += 1
        skew = synced.skew_s
        self._skews.append(skew)
        self._skew_max = skew if math.isnan(self._skew_max) else max(self._skew_max, skew)

    def queued_stamps(self, input_index: int) -> list[int]:
        """Stamps of one input received and neither emitted nor dropped, oldest first."""
        return sorted(self._queued[input_index])

    def report(self, now_ns: int) -> SyncReport:
        """Snapshot of the counters and freshness at ``now_ns``."""
        self._see_clock(now_ns)
        cameras = []
        for i, name in enumerate(self.camera_names):
            last = self._last_stamp[i]
            if last is None:
                staleness = math.inf
                waited_s = (now_ns - self._start_ns) / S_TO_NS
                stale = waited_s > self.source_timeout_s
            else:
                staleness = (now_ns - last) / S_TO_NS
                stale = staleness > self.source_timeout_s
            cameras.append(CameraHealth(
                name=name, frames_received=self._received[i],
                frames_dropped=self._dropped[i], last_stamp_ns=last,
                staleness_s=staleness, stale=stale))
        dropped_sets = max(self._dropped)
        total = self._sets + dropped_sets
        skews = np.asarray(self._skews)
        return SyncReport(
            now_ns=int(now_ns),
            cameras=tuple(cameras),
            sets_emitted=self._sets,
            dropped_sets=dropped_sets,
            drop_ratio=dropped_sets / total if total else 0.0,
            skew_last_s=float(skews[-1]) if skews.size else math.nan,
            skew_mean_s=float(skews.mean()) if skews.size else math.nan,
            skew_p95_s=float(np.percentile(skews, 95)) if skews.size else math.nan,
            skew_max_s=self._skew_max,
        )
