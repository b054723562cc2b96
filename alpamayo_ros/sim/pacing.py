"""Pacing of simulated time against the wall clock (real-time factor, lag handling).

:class:`Pacer` says how long to wait before publishing the state at a given sim time so
that sim time advances ``real_time_factor`` times as fast as wall time. When the work
per step takes longer than its share (rendering on a loaded machine), the sim does not
burst to catch up: once it is more than ``max_lag_s`` behind, it re-anchors, i.e. sim
time slows down and the slip is counted. A factor of 0 means unpaced (as fast as the
work allows). Pure: the caller passes the wall time in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PacerStats:
    """What the pacer did so far."""

    slips: int = 0  # re-anchors
    slipped_s: float = 0.0  # wall time lost to them
    last_lag_s: float = 0.0  # how late the last step was (0 when on time)


class Pacer:
    """Maps sim time to wall-clock deadlines."""

    def __init__(self, real_time_factor: float, max_lag_s: float = 0.5) -> None:
        if real_time_factor < 0:
            raise ValueError(f"real_time_factor must be >= 0, got {real_time_factor}")
        if max_lag_s <= 0:
            raise ValueError(f"max_lag_s must be > 0, got {max_lag_s}")
        self.real_time_factor = real_time_factor
        self.max_lag_s = max_lag_s
        self.stats = PacerStats()
        self._anchor: tuple[float, float] | None = None  # (wall s, sim s)

    def start(self, wall_s: float, sim_s: float) -> None:
        """Anchor: ``sim_s`` is due at ``wall_s``."""
        self._anchor = (wall_s, sim_s)

    def delay_s(self, sim_s: float, wall_s: float) -> float:
        """Seconds to wait from ``wall_s`` until the state at ``sim_s`` is due (>= 0)."""
        if self._anchor is None:
            self.start(wall_s, sim_s)
        if self.real_time_factor == 0:
            return 0.0
        wall0, sim0 = self._anchor  # type: ignore[misc]
        due = wall0 + (sim_s - sim0) / self.real_time_factor
        lag = wall_s - due
        self.stats.last_lag_s = max(lag, 0.0)
        if lag > self.max_lag_s:
            self.stats.slips += 1
            self.stats.slipped_s += lag
            self._anchor = (wall_s, sim_s)
            return 0.0
        return max(due - wall_s, 0.0)
