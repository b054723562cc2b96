"""Fixed-rate cycle deadlines for the control loop, robust to late or coarse timers.

ROS timers fire late under CPU load, and on simulated time (``/clock``) they fire only
when a clock message crosses their deadline, so a 50 Hz timer can skip cycles. The
controller's timer callback runs one cycle per deadline that has passed since the last
call: :meth:`FixedRateSchedule.due` returns those deadlines (catching up a few missed
ones, each stamped at its own deadline) and resynchronizes after a longer stall
(counted in ``overruns``) instead of bursting.
"""

from __future__ import annotations


class FixedRateSchedule:
    """Deadlines ``t0 + k * period`` that have passed since the last call."""

    def __init__(self, period_ns: int, max_catch_up: int = 5) -> None:
        if period_ns <= 0:
            raise ValueError(f"period_ns must be > 0, got {period_ns}")
        if max_catch_up < 1:
            raise ValueError(f"max_catch_up must be >= 1, got {max_catch_up}")
        self.period_ns = int(period_ns)
        self.max_catch_up = int(max_catch_up)
        self._next_ns: int | None = None
        self.overruns = 0

    def due(self, now_ns: int) -> list[int]:
        """The deadlines at or before ``now_ns`` not returned yet (oldest first)."""
        now_ns = int(now_ns)
        if self._next_ns is None or now_ns < self._next_ns - self.period_ns:
            # first call, or time went backwards (bag loop, sim restart): start over
            self._next_ns = now_ns
        if now_ns < self._next_ns:
            return []
        missed = (now_ns - self._next_ns) // self.period_ns + 1
        if missed > self.max_catch_up:
            self.overruns += 1
            self._next_ns = now_ns + self.period_ns
            return [now_ns]
        out = [self._next_ns + k * self.period_ns for k in range(missed)]
        self._next_ns = out[-1] + self.period_ns
        return out


def describe_overrun(node_gap_s: float, wall_gap_s: float) -> str:
    """Why the control loop skipped cycles, from the time between two timer callbacks.

    ``node_gap_s``: node (simulated or ROS) time between them; ``wall_gap_s``: wall-clock
    time. The process itself was held up (CPU starved, blocked in a call, stopped) when
    the wall clock saw about as long a gap; when the wall gap is much shorter, the node's
    clock jumped ahead: ``/clock`` messages arrived late or its source jumped.
    """
    where = ("this process was held up" if wall_gap_s >= 0.5 * node_gap_s
             else "the clock jumped ahead (/clock arrived late or its source jumped)")
    return (f"control cycles skipped: {node_gap_s:.3f} s of node time and {wall_gap_s:.3f} s "
            f"of wall time between two timer callbacks: {where}")
