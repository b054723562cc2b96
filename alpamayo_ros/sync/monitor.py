"""Health of camera synchronization: drops, skew, staleness, stopped and frozen cameras.

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

- a camera is *frozen* when it delivers byte-identical frames (equal
  :func:`~alpamayo_ros.sync.frames.frame_digest`) for ``frozen_timeout_s`` of header
  stamps (:meth:`SyncMonitor.accept_content`; inf: never): its frames are then
  refused (counted) until the content changes;
- a frame refused before synchronization (inconsistent size/step/encoding, truncated,
  oversized: :meth:`SyncMonitor.on_malformed`) is counted; the camera is reported
  *malformed* for ``source_timeout_s`` after the last one;
- a frame older than its camera's newest is counted *out of order* (it is still
  offered: a set must be within ``slop`` whatever the arrival order);
- *set silence* is ``now`` minus the last emission of a set (node clock); sets *stall*
  when it exceeds ``source_timeout_s`` while every camera delivers (skew beyond slop);
  a camera's *offset* (the lower median over the other cameras of the distance from its
  newest stamp to their nearest unmatched or newest stamp) names the cameras out of slop.

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
    frozen: bool = False  # byte-identical frames for frozen_timeout_s: frames refused
    frames_frozen: int = 0  # frames refused as frozen
    frames_out_of_order: int = 0  # frames older than the camera's newest
    offset_s: float = math.nan  # see the module docstring; NaN without data
    frames_malformed: int = 0  # frames refused before synchronization
    malformed: bool = False  # a malformed frame within the last source_timeout_s


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
    set_silence_s: float = math.nan  # now - last set emitted (or first frame); NaN before
    sets_stalled: bool = False  # no set for source_timeout_s while no camera is stale
    slop_s: float = math.nan

    @property
    def stale_cameras(self) -> tuple[str, ...]:
        """Names of the cameras that stopped (or never started)."""
        return tuple(c.name for c in self.cameras if c.stale)

    @property
    def frozen_cameras(self) -> tuple[str, ...]:
        """Names of the cameras whose frames are refused as frozen."""
        return tuple(c.name for c in self.cameras if c.frozen)

    @property
    def malformed_cameras(self) -> tuple[str, ...]:
        """Names of the cameras that delivered a malformed frame lately."""
        return tuple(c.name for c in self.cameras if c.malformed)

    @property
    def cameras_beyond_slop(self) -> tuple[str, ...]:
        """Cameras whose newest frame is at least ``slop_s`` from the others' (see module)."""
        return tuple(c.name for c in self.cameras
                     if math.isfinite(c.offset_s) and c.offset_s >= self.slop_s)

    @property
    def healthy(self) -> bool:
        """True when every camera is fresh and live and sets are being emitted."""
        return not (self.stale_cameras or self.frozen_cameras or self.malformed_cameras
                    or self.sets_stalled)


class SyncMonitor:
    """Counts frames, drops and sets; measures skew and per-camera staleness."""

    def __init__(self, camera_names: Sequence[str], source_timeout_s: float,
                 skew_window: int = 100, queue_size: int = 10, slop_s: float = math.nan,
                 frozen_timeout_s: float = math.inf, frozen_min_speed_mps: float = 0.0
                 ) -> None:
        if not camera_names:
            raise ValueError("camera_names must name at least one camera")
        if not source_timeout_s > 0:
            raise ValueError(f"source_timeout_s must be > 0, got {source_timeout_s!r}")
        if skew_window < 1:
            raise ValueError(f"skew_window must be >= 1, got {skew_window!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        if not frozen_timeout_s > 0:
            raise ValueError(f"frozen_timeout_s must be > 0, got {frozen_timeout_s!r}")
        self.camera_names = tuple(camera_names)
        self.slop_s = float(slop_s)
        self.frozen_timeout_ns = (math.inf if math.isinf(frozen_timeout_s)
                                  else int(frozen_timeout_s * S_TO_NS))
        self.frozen_min_speed_mps = float(frozen_min_speed_mps)
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
        self._out_of_order = [0] * n
        self._digest: list[int | None] = [None] * n
        self._same_since_ns: list[int | None] = [None] * n  # stamp the repetition began
        self._frozen = [False] * n
        self._frozen_frames = [0] * n
        self._last_frame_now_ns: int | None = None
        self._malformed = [0] * n
        self._malformed_now_ns: list[int | None] = [None] * n
        self._last_set_now_ns: int | None = None

    def _see_clock(self, now_ns: int) -> None:
        if self._start_ns is None:
            self._start_ns = int(now_ns)

    def _drop(self, input_index: int, stamp_ns: int) -> None:
        self._dropped[input_index] += 1
        self._recent_drops[input_index].append(stamp_ns)

    def on_frame(self, input_index: int, stamp_ns: int, now_ns: int) -> None:
        """Record a frame offered to the synchronizer (call before the synchronizer sees it)."""
        self._see_clock(now_ns)
        self._last_frame_now_ns = int(now_ns)
        stamp = int(stamp_ns)
        self._received[input_index] += 1
        last = self._last_stamp[input_index]
        if last is None or stamp > last:
            self._last_stamp[input_index] = stamp
        elif stamp < last:
            self._out_of_order[input_index] += 1
        queued = self._queued[input_index]
        if stamp in queued:
            self._drop(input_index, stamp)  # the queued frame is replaced by this one
        queued.add(stamp)
        while len(queued) > self.queue_size:
            oldest = min(queued)
            queued.discard(oldest)
            self._drop(input_index, oldest)

    def accept_content(self, input_index: int, stamp_ns: int, digest: int, now_ns: int,
                       ego_speed_mps: float | None = None) -> bool:
        """Frozen-camera check of one frame; False: frozen, refuse it (counted).

        Call before :meth:`on_frame`. Identical digests count toward ``frozen_timeout_s``
        (by header stamps); with ``frozen_min_speed_mps`` > 0 only while ``ego_speed_mps``
        is known and at least that (a noiseless source repeating a static scene). A frame
        with new content clears the camera at once.
        """
        self._see_clock(now_ns)
        i, stamp = input_index, int(stamp_ns)
        if digest != self._digest[i] or self._same_since_ns[i] is None:
            self._digest[i], self._same_since_ns[i], self._frozen[i] = digest, stamp, False
            return True
        moving = self.frozen_min_speed_mps <= 0 or (
            ego_speed_mps is not None and abs(ego_speed_mps) >= self.frozen_min_speed_mps)
        if not moving and not self._frozen[i]:
            self._same_since_ns[i] = stamp  # a static scene may repeat: restart the timing
        elif stamp - self._same_since_ns[i] >= self.frozen_timeout_ns:
            self._frozen[i] = True
        if self._frozen[i]:
            self._frozen_frames[i] += 1
            self._received[i] += 1
            if self._last_stamp[i] is None or stamp > self._last_stamp[i]:
                self._last_stamp[i] = stamp  # it still delivers: frozen, not stale
            return False
        return True

    def on_malformed(self, input_index: int, now_ns: int) -> None:
        """Record a frame of ``input_index`` refused as malformed before synchronization."""
        self._see_clock(now_ns)
        self._malformed[input_index] += 1
        self._malformed_now_ns[input_index] = int(now_ns)

    def on_set(self, synced: SyncedSet) -> None:
        """Synchronizer set callback: record the emitted set and its skew."""
        self._last_set_now_ns = self._last_frame_now_ns
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
                staleness_s=staleness, stale=stale, frozen=self._frozen[i],
                frames_frozen=self._frozen_frames[i],
                frames_out_of_order=self._out_of_order[i], offset_s=self._offset_s(i),
                frames_malformed=self._malformed[i],
                malformed=self._malformed_now_ns[i] is not None and
                (now_ns - self._malformed_now_ns[i]) / S_TO_NS <= self.source_timeout_s))
        since = self._last_set_now_ns if self._last_set_now_ns is not None else self._start_ns
        silence = (now_ns - since) / S_TO_NS
        stalled = (silence > self.source_timeout_s and self._last_frame_now_ns is not None
                   and not any(c.stale for c in cameras))
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
            set_silence_s=silence,
            sets_stalled=stalled,
            slop_s=self.slop_s,
        )

    def _offset_s(self, i: int) -> float:
        """Lower median over the other cameras of the distance to their nearest stamp."""
        newest = self._last_stamp[i]
        if newest is None:
            return math.nan
        distances = []
        for j, queued in enumerate(self._queued):
            if j == i or self._last_stamp[j] is None:
                continue
            stamps = queued | {self._last_stamp[j]}
            distances.append(min(abs(s - newest) for s in stamps))
        if not distances:
            return math.nan
        return sorted(distances)[(len(distances) - 1) // 2] / S_TO_NS  # the lower median
