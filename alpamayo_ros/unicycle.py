"""Unicycle dynamics: the AR1 action space.

A plan is a sequence of controls (longitudinal acceleration ``a`` in m/s^2, curvature
``kappa`` in 1/m), one per ``DT_S`` step. :func:`integrate` turns controls into states
(x, y, heading, speed) and :func:`fit_controls` goes the other way: it recovers smooth
controls from logged (noisy) poses by regularized (Tikhonov) nonlinear least squares,
the way AR1 builds its training targets. Pure numpy; every function takes a leading
batch shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# AR1: 64 waypoints at 10 Hz = 6.4 s (arXiv 2511.00088, "Output").
DT_S = 0.1
NUM_WAYPOINTS = 64
# Control bounds of NVIDIA's Alpamayo-R1 release: |a| <= 9.8 m/s^2, |kappa| <= 0.2 1/m.
MAX_ABS_ACCELERATION_MPS2 = 9.8
MAX_ABS_CURVATURE_PER_M = 0.2


@dataclass(frozen=True)
class UnicycleStates:
    """States after each control step; arrays of shape ``(..., T)``."""

    x_m: np.ndarray
    y_m: np.ndarray
    heading_rad: np.ndarray
    velocity_mps: np.ndarray


def integrate(
    acceleration_mps2: np.ndarray,
    curvature_per_m: np.ndarray,
    v0_mps: np.ndarray | float,
    dt_s: float = DT_S,
    allow_reverse: bool = False,
) -> UnicycleStates:
    """Integrate controls of shape ``(..., T)`` from the origin of the ego frame.

    Within a step the acceleration and curvature are constant: the arc length is
    ``v dt + a dt^2 / 2`` and the position advances by the chord of that arc at the mean
    heading, which is exact for a circular (constant-curvature) step. Without
    ``allow_reverse`` the speed stops at zero instead of going negative (a braking car
    halts; it does not back up).
    """
    a = np.asarray(acceleration_mps2, dtype=np.float64)
    k = np.asarray(curvature_per_m, dtype=np.float64)
    if a.shape != k.shape:
        raise ValueError(f"acceleration shape {a.shape} != curvature shape {k.shape}")
    batch_shape, steps = a.shape[:-1], a.shape[-1]
    v = np.broadcast_to(np.asarray(v0_mps, dtype=np.float64), batch_shape).copy()
    x = np.zeros(batch_shape)
    y = np.zeros(batch_shape)
    theta = np.zeros(batch_shape)
    out = np.empty((4, *batch_shape, steps))
    for i in range(steps):
        ai, ki = a[..., i], k[..., i]
        v_next = v + ai * dt_s
        arc = v * dt_s + 0.5 * ai * dt_s**2
        if not allow_reverse:
            stopping = v_next < 0.0
            if np.any(stopping):
                # Braking to a halt inside the step: travel v^2 / (2|a|), end at rest.
                safe_a = np.where(stopping, np.minimum(ai, -1e-9), 1.0)
                arc = np.where(stopping, np.maximum(v, 0.0) ** 2 / (-2.0 * safe_a), arc)
                v_next = np.where(stopping, 0.0, v_next)
        dtheta = ki * arc
        mid = theta + 0.5 * dtheta
        chord = arc * np.sinc(dtheta / (2.0 * np.pi))  # 2 R sin(dtheta / 2) for R = 1 / kappa
        x = x + chord * np.cos(mid)
        y = y + chord * np.sin(mid)
        theta = theta + dtheta
        v = v_next
        out[0, ..., i], out[1, ..., i], out[2, ..., i], out[3, ..., i] = x, y, theta, v
    return UnicycleStates(out[0], out[1], out[2], out[3])


@dataclass(frozen=True)
class FitResult:
    """Controls recovered by :func:`fit_controls` and how well they explain the poses."""

    acceleration_mps2: np.ndarray  # (..., T)
    curvature_per_m: np.ndarray  # (..., T)
    v0_mps: np.ndarray  # (...)
    states: UnicycleStates
    rms_position_error_m: np.ndarray  # (...)
    iterations: int


@dataclass(frozen=True)
class FitWeights:
    """Tikhonov weights of :func:`fit_controls` (position residuals are in metres).

    The smoothness terms penalise the change of each control between steps, i.e. jerk
    (m/s^3 x dt) and curvature rate; the magnitude terms keep an ill-posed problem (a
    car at rest has no observable curvature) well conditioned.
    """

    position_sigma_m: float = 0.05
    heading_sigma_rad: float = 0.05
    acceleration_rate: float = 3.0
    curvature_rate: float = 300.0
    acceleration: float = 1e-3
    curvature: float = 1e-2


def fit_controls(
    x_m: np.ndarray,
    y_m: np.ndarray,
    heading_rad: np.ndarray | None = None,
    v0_mps: np.ndarray | float | None = None,
    dt_s: float = DT_S,
    weights: FitWeights = FitWeights(),
    iterations: int = 30,
) -> FitResult:
    """Fit controls ``(a, kappa)`` to future poses ``(..., T)`` in the ego frame.

    The poses are the ego positions (and optionally headings) at ``dt_s, 2 dt_s, ...``
    relative to the current pose at the origin. Solves the regularized nonlinear least
    squares problem with damped Gauss-Newton; the Jacobian is taken by forward
    differences, batched over all parameters at once. ``v0_mps`` is estimated with the
    controls when not given.
    """
    px = np.asarray(x_m, dtype=np.float64)
    py = np.asarray(y_m, dtype=np.float64)
    if px.shape != py.shape or px.ndim < 1:
        raise ValueError(f"x shape {px.shape} and y shape {py.shape} must match, (..., T)")
    if not (np.all(np.isfinite(px)) and np.all(np.isfinite(py))):
        raise ValueError("poses contain NaN or inf")
    ph = None if heading_rad is None else np.asarray(heading_rad, dtype=np.float64)
    batch_shape, steps = px.shape[:-1], px.shape[-1]
    flat_x, flat_y = px.reshape(-1, steps), py.reshape(-1, steps)
    flat_h = None if ph is None else ph.reshape(-1, steps)
    n = flat_x.shape[0]
    estimate_v0 = v0_mps is None

    # Initial guess from the poses smoothed by a short moving average: speed from the
    # displacements (v0 from a quadratic x(t) = v0 t + a t^2 / 2 over the first 0.5 s),
    # heading of each displacement held while the car barely moves, controls clipped
    # to their bounds. Gauss-Newton refines it.
    sm_x, sm_y = _moving_average(flat_x), _moving_average(flat_y)
    seg_x = np.diff(sm_x, axis=-1, prepend=0.0)
    seg_y = np.diff(sm_y, axis=-1, prepend=0.0)
    seg_len = np.hypot(seg_x, seg_y)
    speed_guess = seg_len / dt_s
    seg_heading = np.arctan2(seg_y, seg_x)
    moving = seg_len > 0.3 * dt_s  # faster than 0.3 m/s
    heading_guess = np.zeros_like(seg_heading)
    previous = np.zeros(n)
    for i in range(steps):
        previous = np.where(moving[:, i], seg_heading[:, i], previous)
        heading_guess[:, i] = previous
    heading_guess = np.unwrap(heading_guess, axis=-1)
    if estimate_v0:
        head = min(steps, 5)
        times = dt_s * np.arange(1, head + 1)
        basis = np.stack([times, 0.5 * times**2], axis=1)
        coef = np.linalg.lstsq(basis, flat_x[:, :head].T, rcond=None)[0]
        v0 = np.maximum(coef[0], 0.0)
    else:
        v0 = np.broadcast_to(np.asarray(v0_mps, dtype=np.float64), batch_shape).reshape(-1)
    acc0 = np.clip(np.diff(speed_guess, axis=-1, append=speed_guess[:, -1:]) / dt_s,
                   -MAX_ABS_ACCELERATION_MPS2, MAX_ABS_ACCELERATION_MPS2)
    turn = np.diff(heading_guess, axis=-1, prepend=0.0)
    curv0 = np.clip(turn / np.maximum(seg_len, 0.3 * dt_s),
                    -MAX_ABS_CURVATURE_PER_M, MAX_ABS_CURVATURE_PER_M)
    params = np.concatenate([acc0, curv0, v0[:, None]], axis=1)
    num_params = params.shape[1]

    def residuals(p: np.ndarray) -> np.ndarray:
        """Stacked weighted residuals for parameter sets ``(..., n, 2T+1)``."""
        acc, curv, speed0 = p[..., :steps], p[..., steps : 2 * steps], p[..., -1]
        st = integrate(acc, curv, speed0, dt_s, allow_reverse=True)
        parts = [
            (st.x_m - flat_x) / weights.position_sigma_m,
            (st.y_m - flat_y) / weights.position_sigma_m,
        ]
        if flat_h is not None:
            dh = np.angle(np.exp(1j * (st.heading_rad - flat_h)))
            parts.append(dh / weights.heading_sigma_rad)
        parts += [
            np.sqrt(weights.acceleration_rate) * np.diff(acc, axis=-1),
            np.sqrt(weights.curvature_rate) * np.diff(curv, axis=-1),
            np.sqrt(weights.acceleration) * acc,
            np.sqrt(weights.curvature) * curv,
        ]
        return np.concatenate(parts, axis=-1)

    eps = 1e-6
    damping = np.full(n, 1e-4)  # Levenberg-Marquardt, scaled by diag(J^T J)
    cost = np.sum(residuals(params) ** 2, axis=-1)
    used = 0
    for iteration in range(1, iterations + 1):
        used = iteration
        r0 = residuals(params)
        perturbed = params[None] + eps * np.eye(num_params)[:, None, :]
        if not estimate_v0:
            perturbed = perturbed[:-1]
        jac = (residuals(perturbed) - r0[None]) / eps  # (P, n, R)
        jac = np.transpose(jac, (1, 2, 0))  # (n, R, P)
        jtj = jac.transpose(0, 2, 1) @ jac
        jtr = jac.transpose(0, 2, 1) @ r0[..., None]
        diag = np.diagonal(jtj, axis1=1, axis2=2)
        scaled = (damping[:, None] * (diag + 1e-9))[..., None] * np.eye(diag.shape[-1])[None]
        step = -np.linalg.solve(jtj + scaled, jtr)[..., 0]
        if not estimate_v0:
            step = np.concatenate([step, np.zeros((n, 1))], axis=1)
        candidate = params + step
        new_cost = np.sum(residuals(candidate) ** 2, axis=-1)
        better = new_cost < cost
        params = np.where(better[:, None], candidate, params)
        damping = np.where(better, damping * 0.2, damping * 10.0)
        converged = np.abs(cost - new_cost) <= 1e-10 * np.maximum(cost, 1.0)
        cost = np.where(better, new_cost, cost)
        if np.all(converged):
            break

    acc, curv, speed0 = params[:, :steps], params[:, steps : 2 * steps], params[:, -1]
    states = integrate(acc, curv, speed0, dt_s, allow_reverse=True)
    rms = np.sqrt(np.mean((states.x_m - flat_x) ** 2 + (states.y_m - flat_y) ** 2, axis=-1))

    def unflatten(arr: np.ndarray) -> np.ndarray:
        return arr.reshape(tuple(batch_shape) + arr.shape[1:])

    return FitResult(
        acceleration_mps2=unflatten(acc),
        curvature_per_m=unflatten(curv),
        v0_mps=unflatten(speed0),
        states=UnicycleStates(*(unflatten(s) for s in (
            states.x_m, states.y_m, states.heading_rad, states.velocity_mps))),
        rms_position_error_m=unflatten(rms),
        iterations=used,
    )


def _moving_average(values: np.ndarray, half_width: int = 2) -> np.ndarray:
    """Centred moving average along the last axis, window shrinking at the ends."""
    padded = np.concatenate([np.zeros(values.shape[:-1] + (1,)), values], axis=-1)
    cumsum = np.cumsum(np.pad(padded, [(0, 0)] * (values.ndim - 1) + [(1, 0)]), axis=-1)
    idx = np.arange(1, padded.shape[-1])
    lo = np.maximum(idx - half_width, 0)
    hi = np.minimum(idx + half_width + 1, padded.shape[-1])
    return (cumsum[..., hi] - cumsum[..., lo]) / (hi - lo)


def jerk_from_controls(acceleration_mps2: np.ndarray, dt_s: float = DT_S) -> np.ndarray:
    """Longitudinal jerk (m/s^3) between consecutive control steps, shape ``(..., T-1)``."""
    return np.diff(np.asarray(acceleration_mps2, dtype=np.float64), axis=-1) / dt_s


def jerk_from_positions(x_m: np.ndarray, y_m: np.ndarray, dt_s: float = DT_S) -> np.ndarray:
    """Magnitude of the third finite difference of positions (m/s^3), ``(..., T-3)``."""
    jx = np.diff(np.asarray(x_m, dtype=np.float64), n=3, axis=-1) / dt_s**3
    jy = np.diff(np.asarray(y_m, dtype=np.float64), n=3, axis=-1) / dt_s**3
    return np.hypot(jx, jy)


def clip_controls(
    acceleration_mps2: np.ndarray, curvature_per_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Clip controls to the AR1 release bounds (|a| <= 9.8 m/s^2, |kappa| <= 0.2 1/m)."""
    return (
        np.clip(acceleration_mps2, -MAX_ABS_ACCELERATION_MPS2, MAX_ABS_ACCELERATION_MPS2),
        np.clip(curvature_per_m, -MAX_ABS_CURVATURE_PER_M, MAX_ABS_CURVATURE_PER_M),
    )
