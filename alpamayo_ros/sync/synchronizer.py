"""Approximate-time synchronizer with the semantics of ROS 2 message_filters, ROS-free.

This reproduces ``message_filters.ApproximateTimeSynchronizer(fs, queue_size, slop)``
(Python implementation, ``allow_headerless=False``) on plain ``(input_index, stamp_ns,
item)`` calls, so the rclpy node only converts header stamps to nanoseconds:

1. The item is stored in its input's queue, a dict keyed by stamp: a second item with
   the same stamp on the same input replaces the first. While the queue holds more than
   ``queue_size`` items, the one with the smallest stamp is removed (also when that is
   the item just added).
2. In every *other* queue, the candidates are the stamps within ``slop`` of the new
   stamp (``|s - stamp| <= slop``), sorted by that distance (ties: queue order).
   When some queue has no candidate, nothing happens.
3. Combinations are tried in ``itertools.product`` order over the candidate lists (in
   input order), the new stamp inserted at its own index; the first combination whose
   spread ``max - min`` is strictly below ``slop`` and whose stamps are all still queued
   is emitted, and exactly those items are removed from their queues. Older items stay
   queued until evicted: they are never dropped for being older than an emitted set.

Differences, all outside the matching: the search prunes partial combinations whose
spread already reaches ``slop`` (extending them cannot lower it, so the first match is
the same); callbacks run after the lock is released (a callback may call :meth:`add`);
every item leaving a queue without being emitted is reported to drop callbacks. ``slop``
is converted like ``rclpy.duration.Duration(seconds=slop)``: ``int(slop * 1e9)`` ns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

S_TO_NS = 1_000_000_000
DROP_EVICTED = "evicted"  # pushed out of a full queue by newer items
DROP_REPLACED = "replaced"  # same input, same stamp: overwritten by the newer item


@dataclass(frozen=True)
class SyncedSet:
    """One emitted set: an item and its stamp per input, in input order."""

    stamps_ns: tuple[int, ...]
    items: tuple[Any, ...]

    @property
    def stamp_ns(self) -> int:
        """Reference stamp of the set: the newest of its stamps (ns)."""
        return max(self.stamps_ns)

    @property
    def oldest_stamp_ns(self) -> int:
        """Oldest stamp of the set (ns)."""
        return min(self.stamps_ns)

    @property
    def skew_s(self) -> float:
        """Inter-input skew: newest minus oldest stamp (s)."""
        return (self.stamp_ns - self.oldest_stamp_ns) / S_TO_NS


SetCallback = Callable[[SyncedSet], None]
DropCallback = Callable[[int, int, Any, str], None]  # (input_index, stamp_ns, item, reason)


class Synchronizer(Protocol):
    """A synchronizer backend as :class:`~alpamayo_ros.sync.pipeline.CameraSync` uses it.

    This module's class, or the camera sync node's adapter around message_filters'.
    """

    def add(self, input_index: int, stamp_ns: int, item: Any) -> SyncedSet | None:
        """Offer one item; return the set it completed (also sent to callbacks) or None."""

    def register_callback(self, callback: SetCallback) -> None:
        """Call ``callback(synced_set)`` for every emitted set."""


class ApproximateTimeSynchronizer:
    """message_filters' approximate-time policy over ``num_inputs`` inputs."""

    def __init__(self, num_inputs: int, queue_size: int, slop_s: float) -> None:
        if isinstance(num_inputs, bool) or not isinstance(num_inputs, int) or num_inputs < 1:
            raise ValueError(f"num_inputs must be an integer >= 1, got {num_inputs!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        if not slop_s > 0:
            raise ValueError(f"slop_s must be > 0 s (a zero slop never matches), got {slop_s!r}")
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self.slop_s = float(slop_s)
        self.slop_ns = int(slop_s * S_TO_NS)
        self._queues: list[dict[int, Any]] = [{} for _ in range(num_inputs)]
        self._set_callbacks: list[SetCallback] = []
        self._drop_callbacks: list[DropCallback] = []
        self._lock = threading.Lock()

    def register_callback(self, callback: SetCallback) -> None:
        """Call ``callback(synced_set)`` for every emitted set."""
        self._set_callbacks.append(callback)

    def register_drop_callback(self, callback: DropCallback) -> None:
        """Call ``callback(input_index, stamp_ns, item, reason)`` for each dropped item."""
        self._drop_callbacks.append(callback)

    def pending_stamps(self, input_index: int) -> list[int]:
        """Stamps queued on one input, in queue order."""
        with self._lock:
            return list(self._queues[input_index])

    def clear(self) -> None:
        """Forget every queued item (not reported as dropped)."""
        with self._lock:
            for queue in self._queues:
                queue.clear()

    def add(self, input_index: int, stamp_ns: int, item: Any) -> SyncedSet | None:
        """Add one item; return the set it completed (also sent to callbacks) or None."""
        if not 0 <= input_index < self.num_inputs:
            raise IndexError(f"input_index {input_index} outside 0..{self.num_inputs - 1}")
        stamp = int(stamp_ns)
        drops: list[tuple[int, int, Any, str]] = []
        emitted: SyncedSet | None = None
        with self._lock:
            queue = self._queues[input_index]
            if stamp in queue:
                drops.append((input_index, stamp, queue[stamp], DROP_REPLACED))
            queue[stamp] = item
            while len(queue) > self.queue_size:
                oldest = min(queue)
                drops.append((input_index, oldest, queue.pop(oldest), DROP_EVICTED))
            if stamp in queue:
                chosen = self._search(input_index, stamp)
                if chosen is not None:
                    items = tuple(self._queues[i].pop(s) for i, s in enumerate(chosen))
                    emitted = SyncedSet(tuple(chosen), items)
        for drop in drops:
            for callback in self._drop_callbacks:
                callback(*drop)
        if emitted is not None:
            for set_callback in self._set_callbacks:
                set_callback(emitted)
        return emitted

    def _search(self, my_index: int, stamp: int) -> list[int] | None:
        """First combination in message_filters' order with spread < slop, or None."""
        candidates: list[list[int]] = []
        for i, queue in enumerate(self._queues):
            if i == my_index:
                continue
            near = [(abs(s - stamp), s) for s in queue if abs(s - stamp) <= self.slop_ns]
            if not near:
                return None
            near.sort(key=lambda pair: pair[0])  # stable: ties keep queue order
            candidates.append([s for _, s in near])

        def first(depth: int, low: int, high: int, picked: list[int]) -> list[int] | None:
            if depth == len(candidates):
                return picked
            for s in candidates[depth]:
                lo, hi = min(low, s), max(high, s)
                if hi - lo >= self.slop_ns:
                    continue  # every completion of this prefix spreads at least as far
                found = first(depth + 1, lo, hi, picked + [s])
                if found is not None:
                    return found
            return None

        others = first(0, stamp, stamp, [])
        if others is None:
            return None
        return others[:my_index] + [stamp] + others[my_index:]
