"""Core planned trajectory: the ROS-free twin of ``msg/Trajectory.msg``.

A :class:`Trajectory` holds one plan as parallel 1-D arrays, one entry per
``TrajectoryPoint`` (``time_s`` is ``time_from_start``), plus the camera stamp it was
computed from (``stamp_ns`` = ``header.stamp``; the plan is expressed in the ego frame at
that time). Semantics of the controls follow :func:`alpamayo_ros.unicycle.integrate`:
point ``i`` is the state at the *end* of control step ``i``, and its
``acceleration_mps2`` / ``curvature_per_m`` are the controls held constant over the step
that ends at it (zero-order hold). Values are not validated here (a plan with NaN must be
representable so the safety monitor can reject it); shapes are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from alpamayo_ros.unicycle import DT_S, integrate

_ARRAY_FIELDS = (
    "time_s", "x_m", "y_m", "heading_rad", "velocity_mps", "acceleration_mps2",
    "curvature_per_m",
)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One plan; arrays of shape ``(T,)``, ``T >= 1``, in the ego frame at ``stamp_ns``."""

    stamp_ns: int
    time_s: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    heading_rad: np.ndarray
    velocity_mps: np.ndarray
    acceleration_mps2: np.ndarray
    curvature_per_m: np.ndarray
    frame_id: str = ""
    model_id: str = ""
    model_version: str = ""
    inference_time_s: float = math.nan
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.stamp_ns, (int, np.integer)) or isinstance(self.stamp_ns, bool):
            raise TypeError(f"stamp_ns must be an int of nanoseconds, got {self.stamp_ns!r}")
        object.__setattr__(self, "stamp_ns", int(self.stamp_ns))
        length = None
        for name in _ARRAY_FIELDS:
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
            if length is None:
                length = arr.shape[0]
            elif arr.shape[0] != length:
                raise ValueError(f"{name} has {arr.shape[0]} points, time_s has {length}")
            arr = arr.copy()
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if not length:
            raise ValueError("time_s must hold at least one point")

    def __len__(self) -> int:
        return int(self.time_s.shape[0])

    @classmethod
    def from_controls(
        cls,
        acceleration_mps2: np.ndarray,
        curvature_per_m: np.ndarray,
        v0_mps: float,
        stamp_ns: int = 0,
        dt_s: float = DT_S,
        **metadata: object,
    ) -> Trajectory:
        """Integrate unicycle controls ``(T,)`` from the origin at speed ``v0_mps``.

        Point ``i`` lies at ``time_s = (i + 1) dt_s`` (the AR1 layout: 64 points,
        0.1 ... 6.4 s). Extra keyword arguments (``frame_id``, ``model_id``, ...) are
        stored as they are.
        """
        a = np.asarray(acceleration_mps2, dtype=np.float64)
        k = np.asarray(curvature_per_m, dtype=np.float64)
        if a.ndim != 1 or k.shape != a.shape:
            raise ValueError(f"controls must be 1-D and equal: {a.shape} vs {k.shape}")
        states = integrate(a, k, float(v0_mps), dt_s)
        return cls(
            stamp_ns=stamp_ns,
            time_s=dt_s * np.arange(1, a.shape[0] + 1),
            x_m=states.x_m,
            y_m=states.y_m,
            heading_rad=states.heading_rad,
            velocity_mps=states.velocity_mps,
            acceleration_mps2=a,
            curvature_per_m=k,
            **metadata,
        )

    @property
    def horizon_s(self) -> float:
        """Time from the stamp to the last point (s)."""
        return float(self.time_s[-1])

    @property
    def start_velocity_mps(self) -> float:
        """Speed at ``t = 0`` implied by the first point and its control (>= 0)."""
        return max(0.0, float(self.velocity_mps[0] - self.acceleration_mps2[0] * self.time_s[0]))

    def _with_origin(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times, speeds and positions with the implicit origin (t=0) prepended."""
        if "origin" not in self._cache:
            if self.time_s[0] > 0.0:
                t = np.concatenate([[0.0], self.time_s])
                v = np.concatenate([[self.start_velocity_mps], self.velocity_mps])
                x = np.concatenate([[0.0], self.x_m])
                y = np.concatenate([[0.0], self.y_m])
            else:
                t, v, x, y = self.time_s, self.velocity_mps, self.x_m, self.y_m
            self._cache["origin"] = (t, v, np.stack([x, y]))
        return self._cache["origin"]

    def velocity_at(self, t_s: float | np.ndarray) -> np.ndarray | float:
        """Planned speed (m/s) at ``t_s`` after the stamp, linear between points.

        Linear is exact for the unicycle's constant acceleration within a step. Before
        the origin it is the start speed, after the last point the last point's speed.
        """
        t, v, _ = self._with_origin()
        return np.interp(t_s, t, v)

    def control_index(self, t_s: float | np.ndarray) -> np.ndarray | int:
        """Index of the control step active at ``t_s`` (first point with ``time_s >= t_s``)."""
        idx = np.searchsorted(self.time_s, t_s, side="left")
        return np.minimum(idx, len(self) - 1)

    def controls_at(self, t_s: float) -> tuple[float, float]:
        """Planned ``(acceleration_mps2, curvature_per_m)`` held at ``t_s`` (zero-order)."""
        i = int(self.control_index(t_s))
        return float(self.acceleration_mps2[i]), float(self.curvature_per_m[i])

    def arc_length_m(self) -> np.ndarray:
        """Distance travelled along the path at each point, shape ``(T,)``, from the origin."""
        if "arc" not in self._cache:
            _, _, xy = self._with_origin()
            seg = np.hypot(np.diff(xy[0]), np.diff(xy[1]))
            arc = np.cumsum(seg)
            if self.time_s[0] <= 0.0:
                arc = np.concatenate([[0.0], arc])
            self._cache["arc"] = arc
        return self._cache["arc"]

    def distance_at(self, t_s: float) -> float:
        """Path distance (m) reached at ``t_s`` after the stamp, linear between points."""
        t, _, _ = self._with_origin()
        arc = self.arc_length_m()
        if t.shape[0] != arc.shape[0]:
            arc = np.concatenate([[0.0], arc])
        return float(np.interp(t_s, t, arc))

    def curvature_at_distance(self, s_m: float) -> float:
        """Curvature (1/m) of the path at arc length ``s_m``: the step containing it."""
        arc = self.arc_length_m()
        i = min(int(np.searchsorted(arc, s_m, side="left")), len(self) - 1)
        return float(self.curvature_per_m[i])
