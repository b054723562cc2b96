"""Core Trajectory: integration layout, time/distance sampling, validation."""

import numpy as np
import pytest

from alpamayo_ros.control import ControllerConfig, TrajectoryTracker
from alpamayo_ros.trajectory import Trajectory
from alpamayo_ros.unicycle import integrate


def test_from_controls_matches_integrate_and_the_ar1_layout() -> None:
    rng = np.random.default_rng(0)
    a, k = rng.uniform(-1, 1, 64), rng.uniform(-0.02, 0.02, 64)
    traj = Trajectory.from_controls(a, k, 7.0, stamp_ns=123, model_id="m")
    states = integrate(a, k, 7.0)
    assert len(traj) == 64 and traj.horizon_s == pytest.approx(6.4)
    assert np.allclose(traj.time_s, 0.1 * np.arange(1, 65))
    assert np.array_equal(traj.x_m, states.x_m) and np.array_equal(traj.velocity_mps,
                                                                    states.velocity_mps)
    assert traj.stamp_ns == 123 and traj.model_id == "m"
    assert traj.start_velocity_mps == pytest.approx(7.0)
    with pytest.raises(ValueError):
        traj.x_m[0] = 1.0  # read-only


def test_velocity_is_exact_within_a_constant_acceleration_step() -> None:
    a = np.array([1.0, -2.0, 0.5])
    traj = Trajectory.from_controls(a, np.zeros(3), 4.0)
    assert traj.velocity_at(0.05) == pytest.approx(4.05)
    assert traj.velocity_at(0.15) == pytest.approx(4.1 - 0.1)
    assert traj.velocity_at(10.0) == pytest.approx(traj.velocity_mps[-1])
    assert traj.controls_at(0.0) == (1.0, 0.0)
    assert traj.controls_at(0.1) == (1.0, 0.0)  # the step ending at 0.1 s
    assert traj.controls_at(0.1000001) == (-2.0, 0.0)


def test_distance_and_curvature_along_the_path() -> None:
    k = np.zeros(30)
    k[10:] = 0.01
    traj = Trajectory.from_controls(np.zeros(30), k, 10.0)
    assert np.allclose(traj.arc_length_m(), 1.0 * np.arange(1, 31), atol=1e-9)
    assert traj.distance_at(0.55) == pytest.approx(5.5)
    assert traj.curvature_at_distance(9.9) == 0.0
    assert traj.curvature_at_distance(10.01) == 0.01
    assert traj.curvature_at_distance(1e6) == 0.01  # beyond the end: last step


def test_shapes_are_validated_but_values_are_not() -> None:
    z = np.zeros(5)
    with pytest.raises(ValueError, match="x_m"):
        Trajectory(0, z, np.zeros(4), z, z, z, z, z)
    with pytest.raises(ValueError, match="at least one point"):
        Trajectory(0, np.zeros(0), *(np.zeros(0),) * 6)
    with pytest.raises(TypeError, match="stamp_ns"):
        Trajectory(1.5, z, z, z, z, z, z, z)
    nan = np.full(5, np.nan)
    assert np.isnan(Trajectory(0, z, nan, z, z, z, z, z).x_m).all()  # for the monitor to reject


def test_tracker_without_a_speed_measurement_is_feed_forward_only() -> None:
    traj = Trajectory.from_controls(np.full(64, 0.5), np.zeros(64), 5.0)
    tgt = TrajectoryTracker(ControllerConfig()).track(traj, 250_000_000, float("nan"))
    assert tgt.acceleration_mps2 == 0.5
