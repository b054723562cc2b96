"""When the policy starts an inference: on a new frame set, at most ``rate_hz`` (pure).

With a free-running timer, a frame set waits for the next tick: half a period on average
(48 ms of the 121 ms median at 10 Hz, ``alpamayo bench latency``, docs/RESULTS.md). The
frame trigger starts the inference when the camera sync node completes a set instead,
and keeps the rate by camera time: a set is due when it is at least one period (less
:data:`STAMP_JITTER_S`) newer than the last set that was submitted. Camera stamps, not
arrival times, so replayed bags and simulated time trigger exactly like live sensors.
"""

from __future__ import annotations

TRIGGERS = ("frames", "timer")
# Real cameras' stamps jitter by a few ms around their period; without this allowance a
# 10 Hz policy on 10 Hz cameras would skip every other set whose stamp came 1 ms early.
STAMP_JITTER_S = 0.02
NS_PER_S = 1_000_000_000


class FrameTrigger:
    """Decides which completed frame sets start an inference (camera time, ns)."""

    def __init__(self, period_s: float) -> None:
        if not period_s > 0.0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.min_gap_ns = max(0, int(round((period_s - STAMP_JITTER_S) * NS_PER_S)))
        self.last_submitted_ns: int | None = None

    def due(self, stamp_ns: int) -> bool:
        """Whether the set stamped ``stamp_ns`` should start an inference.

        A stamp older than the last submitted one (a bag loop, a simulator restart) is due:
        the timeline was reset.
        """
        last = self.last_submitted_ns
        return last is None or stamp_ns < last or stamp_ns - last >= self.min_gap_ns

    def submitted(self, stamp_ns: int) -> None:
        """Record that the set stamped ``stamp_ns`` started an inference."""
        self.last_submitted_ns = stamp_ns

    def reset(self) -> None:
        """Forget the last submission (on deactivate)."""
        self.last_submitted_ns = None
