"""Non-learnt baselines of the open-loop evaluation: kinematic extrapolation and the expert.

- :func:`constant_velocity_controls`: keep the current speed and drive straight
  (acceleration 0, curvature 0).
- :func:`constant_yaw_rate_controls`: keep the current speed and the yaw rate of the
  last ``window_s`` of ego history (constant turn rate and velocity, CTRV): curvature
  ``yaw_rate / speed``, clipped to the AR1 action bound.
- :func:`expert_plan`: the logged future (the data engine's expert), i.e. the truth.
- :func:`plan_from_controls`: unicycle integration to ``(T, 3)`` x, y, heading.

The majority-class decision baseline is :func:`alpamayo_ros.eval.metrics.majority_decisions`.
"""

from __future__ import annotations

import numpy as np

from alpamayo_ros.sample import DrivingSample
from alpamayo_ros.unicycle import DT_S, MAX_ABS_CURVATURE_PER_M, NUM_WAYPOINTS, integrate

MIN_TURN_SPEED_MPS = 0.5  # below this the heading change of the history is noise


def plan_from_controls(controls: np.ndarray, v0_mps: float) -> np.ndarray:
    """Unicycle integration of controls ``(..., T, 2)`` from ``v0_mps``: ``(..., T, 3)``."""
    c = np.asarray(controls, dtype=np.float64)
    if c.ndim < 2 or c.shape[-1] != 2:
        raise ValueError(f"controls must be (..., T, 2), got shape {c.shape}")
    st = integrate(c[..., 0], c[..., 1], v0_mps)
    return np.stack([st.x_m, st.y_m, st.heading_rad], axis=-1)


def constant_velocity_controls(sample: DrivingSample, steps: int = NUM_WAYPOINTS) -> np.ndarray:
    """Controls ``(steps, 2)`` of the constant-velocity baseline: straight at the current speed."""
    del sample  # the plan only depends on the speed, applied at integration
    return np.zeros((steps, 2))


def history_yaw_rate(ego_history: np.ndarray, window_s: float = 0.5) -> float:
    """Mean yaw rate (rad/s) over the last ``window_s`` of an ego history ``(N, >=3)``."""
    hist = np.asarray(ego_history, dtype=np.float64)
    if hist.ndim != 2 or hist.shape[1] < 3 or hist.shape[0] < 2:
        raise ValueError(f"ego_history must be (N>=2, >=3), got shape {hist.shape}")
    n = int(min(hist.shape[0] - 1, max(1, round(window_s / DT_S))))
    heading = np.unwrap(hist[-n - 1:, 2])
    return float((heading[-1] - heading[0]) / (n * DT_S))


def constant_yaw_rate_controls(sample: DrivingSample, steps: int = NUM_WAYPOINTS,
                               window_s: float = 0.5) -> np.ndarray:
    """Controls ``(steps, 2)`` of the CTRV baseline: current speed and history yaw rate."""
    v = float(sample.speed_mps)
    kappa = 0.0
    if v >= MIN_TURN_SPEED_MPS:
        kappa = float(np.clip(history_yaw_rate(sample.ego_history, window_s) / v,
                              -MAX_ABS_CURVATURE_PER_M, MAX_ABS_CURVATURE_PER_M))
    out = np.zeros((steps, 2))
    out[:, 1] = kappa
    return out


def expert_plan(sample: DrivingSample) -> tuple[np.ndarray, np.ndarray]:
    """The expert's own future: ``(future_xyh (T, 3), future_controls (T, 2))`` as float64."""
    return (np.asarray(sample.future_xyh, dtype=np.float64),
            np.asarray(sample.future_controls, dtype=np.float64))
