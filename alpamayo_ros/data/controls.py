"""Unicycle controls of reference plans, fitted from poses the way AR1 builds its targets.

The expert's plan is a sequence of future poses. Its controls (acceleration, curvature
per 0.1 s step) come from :func:`alpamayo_ros.unicycle.fit_controls` (Tikhonov-regularised
least squares over the poses, started from the known current speed), not from finite
differences. The fit integrates with reverse allowed, so around a stop its speed rings
a few cm/s below zero and back; the policy and the controller integrate with the car
halting at zero speed instead, where that ringing would turn into creeping forward. So
the fitted speed is clipped at zero and the accelerations re-derived from it: integrating
the result with :func:`alpamayo_ros.unicycle.integrate` (default, no reverse) gives the
fitted speed profile exactly.

Public API: :func:`plan_controls` (batched futures) and :func:`episode_plan_controls`
(every step of an episode that has a full future).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alpamayo_ros.data.coc import ego_future
from alpamayo_ros.data.scenarios import Episode
from alpamayo_ros.unicycle import DT_S, NUM_WAYPOINTS, fit_controls, integrate

FIT_CHUNK = 32  # futures per fit_controls call: its Jacobian work grows with the batch


@dataclass(frozen=True)
class PlanControls:
    """Controls of plans ``(..., T)`` and how well they reproduce the poses."""

    acceleration_mps2: np.ndarray  # (..., T)
    curvature_per_m: np.ndarray  # (..., T)
    velocity_mps: np.ndarray  # (..., T) speed after each step
    max_position_error_m: np.ndarray  # (...) integrated controls vs the poses


def plan_controls(future_xyh: np.ndarray, v0_mps: np.ndarray | float,
                  chunk: int = FIT_CHUNK) -> PlanControls:
    """Fit controls to futures ``(..., T, 3)`` (x, y, heading at 0.1 .. T*0.1 s, ego frame).

    ``v0_mps`` is the speed at the origin pose (broadcast to the batch).
    """
    fut = np.asarray(future_xyh, dtype=np.float64)
    if fut.ndim < 2 or fut.shape[-1] != 3 or fut.shape[-2] < 2:
        raise ValueError(f"future_xyh must be (..., T>=2, 3), got shape {fut.shape}")
    if not np.all(np.isfinite(fut)):
        raise ValueError("future_xyh contains NaN or inf")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    batch, steps = fut.shape[:-2], fut.shape[-2]
    flat = fut.reshape(-1, steps, 3)
    v0 = np.broadcast_to(np.asarray(v0_mps, dtype=np.float64), batch).reshape(-1)
    if np.any(v0 < 0.0) or not np.all(np.isfinite(v0)):
        raise ValueError("v0_mps must be finite and >= 0")
    curv = np.empty((len(flat), steps))
    speed = np.empty((len(flat), steps))
    for lo in range(0, len(flat), chunk):
        part = slice(lo, lo + chunk)
        fit = fit_controls(flat[part, :, 0], flat[part, :, 1], flat[part, :, 2],
                           v0_mps=v0[part])
        curv[part] = fit.curvature_per_m
        speed[part] = fit.states.velocity_mps
    speed = np.maximum(speed, 0.0)  # a car halts; it does not back up
    acc = np.diff(np.concatenate([v0[:, None], speed], axis=1), axis=1) / DT_S
    states = integrate(acc, curv, v0)
    err = np.hypot(states.x_m - flat[..., 0], states.y_m - flat[..., 1]).max(axis=1)
    return PlanControls(acc.reshape(*batch, steps), curv.reshape(*batch, steps),
                        states.velocity_mps.reshape(*batch, steps), err.reshape(batch))


def episode_plan_controls(episode: Episode, steps: int = NUM_WAYPOINTS,
                          indices: np.ndarray | None = None
                          ) -> tuple[np.ndarray, PlanControls]:
    """Controls of the expert's plan at ``indices`` of an episode.

    ``indices`` defaults to every step that has ``steps`` of future.
    """
    poses = episode.ego_xyhv()
    if indices is None:
        indices = np.arange(max(0, len(poses) - steps))
    indices = np.asarray(indices, dtype=int)
    if len(indices) == 0:
        empty = np.zeros((0, steps))
        return indices, PlanControls(empty, empty, empty, np.zeros(0))
    futures = np.stack([ego_future(episode, int(i), steps) for i in indices])
    return indices, plan_controls(futures, poses[indices, 3])
