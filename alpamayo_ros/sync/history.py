"""Multi-frame history for the model: the last N synced sets at a fixed stride.

The model (AR1 release: 4 frames at 0.1 s) wants, per camera, frames at ``t0 - k *
stride`` for ``k = N-1 .. 0`` where ``t0`` is the newest set's stamp. Cameras may run
faster than the stride (every 3rd set at 30 Hz) and sets may be lost, so
:class:`FrameHistory` keeps every set inside the window, sorted by stamp, and fills each
slot with the stored set nearest its target time when it lies within
``tolerance_s``.

Incomplete history (start-up, a dropped set): with ``incomplete="skip"``
:meth:`FrameHistory.window` returns None, so the caller skips inference (like
alpamayo-autoware's ``skip_on_bad_history``); with ``"pad"`` an empty slot is filled
with the nearest older filled slot's set, or, for slots older than anything stored,
the oldest filled slot's set, and :attr:`HistoryWindow.padded_slots` lists them. The
newest slot is always filled (it is the newest set).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from alpamayo_ros.sync.config import INCOMPLETE_POLICIES
from alpamayo_ros.sync.synchronizer import S_TO_NS, SyncedSet


@dataclass(frozen=True)
class HistoryWindow:
    """The model's frame history, oldest slot first."""

    sets: tuple[SyncedSet, ...]  # one per slot
    target_stamps_ns: tuple[int, ...]  # the time each slot asked for
    padded_slots: tuple[int, ...]  # slots filled by repetition (empty when complete)

    @property
    def complete(self) -> bool:
        """True when every slot holds a set near its target time."""
        return not self.padded_slots

    @property
    def stamp_ns(self) -> int:
        """Stamp of the newest slot (the plan's camera stamp)."""
        return self.sets[-1].stamp_ns


class FrameHistory:
    """Ring of emitted sets covering ``(frames - 1) * stride_s`` plus tolerance."""

    def __init__(
        self, frames: int, stride_s: float, tolerance_s: float, incomplete: str = "skip"
    ) -> None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames!r}")
        if not stride_s > 0:
            raise ValueError(f"stride_s must be > 0, got {stride_s!r}")
        if not 0 <= tolerance_s or (frames > 1 and not tolerance_s < stride_s / 2):
            raise ValueError(f"tolerance_s must be in [0, stride_s / 2), got {tolerance_s!r}")
        if incomplete not in INCOMPLETE_POLICIES:
            raise ValueError(f"incomplete must be one of {INCOMPLETE_POLICIES}, got {incomplete!r}")
        self.frames = frames
        self.stride_ns = int(round(stride_s * S_TO_NS))
        self.tolerance_ns = int(round(tolerance_s * S_TO_NS))
        self.incomplete = incomplete
        self._stamps: list[int] = []
        self._sets: list[SyncedSet] = []

    def __len__(self) -> int:
        return len(self._sets)

    def clear(self) -> None:
        """Forget every stored set."""
        self._stamps.clear()
        self._sets.clear()

    def _oldest_kept_ns(self) -> int:
        return self._stamps[-1] - (self.frames - 1) * self.stride_ns - self.tolerance_ns

    def push(self, synced: SyncedSet) -> None:
        """Store a set (sets may arrive out of order) and forget those out of the window."""
        stamp = synced.stamp_ns
        if self._stamps and stamp < self._oldest_kept_ns():
            return  # older than anything the window can use
        at = bisect.bisect_right(self._stamps, stamp)
        self._stamps.insert(at, stamp)
        self._sets.insert(at, synced)
        cut = bisect.bisect_left(self._stamps, self._oldest_kept_ns())
        del self._stamps[:cut]
        del self._sets[:cut]

    def window(self) -> HistoryWindow | None:
        """The current history (see the module docstring), or None."""
        if not self._sets:
            return None
        newest = self._stamps[-1]
        targets = [newest - k * self.stride_ns for k in range(self.frames - 1, -1, -1)]
        slots: list[SyncedSet | None] = []
        for target in targets:
            at = bisect.bisect_left(self._stamps, target)
            best = None
            for j in (at - 1, at):
                if 0 <= j < len(self._stamps):
                    err = abs(self._stamps[j] - target)
                    if err <= self.tolerance_ns and (best is None or err < best[0]):
                        best = (err, j)
            slots.append(None if best is None else self._sets[best[1]])
        padded = tuple(k for k, s in enumerate(slots) if s is None)
        if padded and self.incomplete == "skip":
            return None
        filled = list(slots)
        first = next(k for k, s in enumerate(slots) if s is not None)
        for k in range(len(filled)):
            if filled[k] is None:
                filled[k] = filled[k - 1] if k > first else slots[first]
        return HistoryWindow(tuple(filled), tuple(targets), padded)
