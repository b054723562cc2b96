"""Unicycle dynamics and the regularized control fit, with the issue's figures."""

import numpy as np
import pytest

from alpamayo_ros import unicycle as uni

T = uni.NUM_WAYPOINTS
TIME_S = uni.DT_S * np.arange(T)


def smooth_plans() -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Representative smooth plans (controls, v0): cruise, S-curve, start, brake, turn."""
    return [
        (np.zeros(T), np.zeros(T), 10.0),
        (1.5 * np.sin(TIME_S / 1.3) - 0.5, 0.05 * np.sin(TIME_S / 2.0), 8.0),
        (np.full(T, 1.0), 0.15 / (1 + np.exp(-(TIME_S - 2.0) * 3)), 0.0),
        (-1.2 / (1 + np.exp(-(TIME_S - 1.0) * 3)), np.full(T, 0.01), 9.0),
        (0.3 * np.ones(T), -0.02 * np.ones(T), 20.0),
    ]


def test_integrate_straight_constant_acceleration_is_exact() -> None:
    st = uni.integrate(np.full(T, 2.0), np.zeros(T), 5.0)
    t = TIME_S + uni.DT_S
    np.testing.assert_allclose(st.x_m, 5.0 * t + 0.5 * 2.0 * t**2, atol=1e-9)
    np.testing.assert_allclose(st.velocity_mps, 5.0 + 2.0 * t, atol=1e-12)
    assert np.all(st.y_m == 0) and np.all(st.heading_rad == 0)


def test_integrate_constant_curvature_stays_on_circle() -> None:
    radius = 20.0
    st = uni.integrate(np.zeros(T), np.full(T, 1 / radius), 10.0)
    # Circle centred at (0, R): every point is at distance R from the centre.
    np.testing.assert_allclose(np.hypot(st.x_m, st.y_m - radius), radius, atol=1e-9)
    np.testing.assert_allclose(st.heading_rad, 10.0 * (TIME_S + uni.DT_S) / radius, atol=1e-9)


def test_braking_stops_without_reversing_unless_allowed() -> None:
    stopped = uni.integrate(np.full(T, -3.0), np.zeros(T), 6.0)
    assert stopped.velocity_mps.min() == 0.0
    np.testing.assert_allclose(stopped.x_m[-1], 6.0**2 / (2 * 3.0), atol=1e-9)
    assert np.all(np.diff(stopped.x_m) >= 0)
    reversing = uni.integrate(np.full(T, -3.0), np.zeros(T), 6.0, allow_reverse=True)
    assert reversing.velocity_mps[-1] < 0 and reversing.x_m[-1] < stopped.x_m[-1]


def test_integrate_batches_and_rejects_mismatched_shapes() -> None:
    a = np.stack([p[0] for p in smooth_plans()])
    k = np.stack([p[1] for p in smooth_plans()])
    v0 = np.array([p[2] for p in smooth_plans()])
    batched = uni.integrate(a, k, v0)
    single = uni.integrate(a[1], k[1], v0[1])
    np.testing.assert_allclose(batched.x_m[1], single.x_m)
    with pytest.raises(ValueError, match="shape"):
        uni.integrate(np.zeros(T), np.zeros(T - 1), 1.0)


@pytest.mark.parametrize("plan", range(5))
def test_clean_trajectory_round_trips_below_1cm(plan: int) -> None:
    a, k, v0 = smooth_plans()[plan]
    truth = uni.integrate(a, k, v0)
    fit = uni.fit_controls(truth.x_m, truth.y_m)
    replay = uni.integrate(fit.acceleration_mps2, fit.curvature_per_m, fit.v0_mps)
    error = np.hypot(replay.x_m - truth.x_m, replay.y_m - truth.y_m)
    assert error.max() < 0.01, f"max round-trip error {error.max():.4f} m"


def test_noisy_poses_fit_within_15cm_with_far_lower_jerk() -> None:
    rng = np.random.default_rng(0)
    worst_error, fitted_jerks, noisy_jerks = 0.0, [], []
    for a, k, v0 in smooth_plans():
        truth = uni.integrate(a, k, v0)
        for _ in range(4):
            nx = truth.x_m + rng.normal(0, 0.05, T)
            ny = truth.y_m + rng.normal(0, 0.05, T)
            fit = uni.fit_controls(nx, ny)
            clean_fit = uni.integrate(fit.acceleration_mps2, fit.curvature_per_m, fit.v0_mps,
                                      allow_reverse=True)
            err = np.hypot(clean_fit.x_m - truth.x_m, clean_fit.y_m - truth.y_m).max()
            worst_error = max(worst_error, err)
            fitted_jerks.append(np.abs(uni.jerk_from_controls(fit.acceleration_mps2)).max())
            noisy_jerks.append(np.median(uni.jerk_from_positions(nx, ny)))
    assert worst_error < 0.15, f"worst fitted-vs-clean error {worst_error:.3f} m"
    # The fit's worst jerk stays an order of magnitude below the *typical* jerk of finite
    # differences of the noisy poses.
    assert max(fitted_jerks) * 10 < min(noisy_jerks), (max(fitted_jerks), min(noisy_jerks))


def test_fit_uses_known_initial_speed_and_batches() -> None:
    a, k, v0 = smooth_plans()[1]
    truth = uni.integrate(a, k, v0)
    xs = np.stack([truth.x_m, truth.x_m])
    ys = np.stack([truth.y_m, truth.y_m])
    fit = uni.fit_controls(xs, ys, v0_mps=v0)
    assert fit.acceleration_mps2.shape == (2, T)
    np.testing.assert_allclose(fit.v0_mps, v0)
    assert np.all(fit.rms_position_error_m < 0.01)


def test_fit_rejects_nan_poses() -> None:
    x = np.linspace(0, 10, T)
    x[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        uni.fit_controls(x, np.zeros(T))


def test_clip_controls_to_release_bounds() -> None:
    a, k = uni.clip_controls(np.array([-20.0, 3.0, 15.0]), np.array([0.5, -0.1, -1.0]))
    np.testing.assert_array_equal(a, [-9.8, 3.0, 9.8])
    np.testing.assert_array_equal(k, [0.2, -0.1, -0.2])
