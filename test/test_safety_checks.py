"""Pure safety checks and the SafetyMonitor report: each limit is hit from both sides."""

import math

import numpy as np
import pytest

from alpamayo_ros.safety import Obstacle, SafetyLimits, SafetyMonitor
from alpamayo_ros.safety import checks as C
from alpamayo_ros.trajectory import Trajectory
from alpamayo_ros.unicycle import jerk_from_controls

S = 1_000_000_000
T = 64


def plan(a=0.0, k=0.0, v0=10.0, stamp_ns=10 * S) -> Trajectory:
    a = np.broadcast_to(np.asarray(a, float), (T,)).copy()
    k = np.broadcast_to(np.asarray(k, float), (T,)).copy()
    return Trajectory.from_controls(a, k, v0, stamp_ns=stamp_ns)


def with_field(traj: Trajectory, **arrays) -> Trajectory:
    fields = {f: getattr(traj, f) for f in C._FIELDS}
    fields.update(arrays)
    return Trajectory(stamp_ns=traj.stamp_ns, **fields)


LIMITS = SafetyLimits()
MON = SafetyMonitor(LIMITS)
NOW = 10 * S + S // 5  # 0.2 s after the plan's camera stamp


def test_a_gentle_plan_passes_every_check() -> None:
    traj = plan(a=np.linspace(0.5, -0.5, T), k=0.01, v0=8.0)
    rep = MON.check(traj, NOW)
    assert rep.passed and rep.failed_checks == () and rep.failed_advisories == ()
    assert len({c.name for c in rep.checks}) == len(rep.checks)
    assert rep["max_plan_age_s"].value == pytest.approx(0.2)
    assert rep["min_time_to_collision_s"].value == math.inf


def test_longitudinal_jerk_spike_is_measured_and_rejected() -> None:
    a = np.zeros(T)
    a[20] = 1.0  # 0 -> 1 -> 0 m/s^2 in one step: 10 m/s^3 both ways
    traj = plan(a=a)
    value, passed = C.check_longitudinal_jerk(traj, 4.13)
    assert value == pytest.approx(np.max(np.abs(jerk_from_controls(a)))) == pytest.approx(10.0)
    assert not passed
    rep = MON.check(traj, NOW)
    assert set(rep.failed_checks) == {"max_jerk_mps3", "max_longitudinal_jerk_mps3"}
    # 0.4 m/s^2 per step is 4.0 m/s^3: passes the 4.13 limit
    a[20] = 0.4
    assert C.check_longitudinal_jerk(plan(a=a), 4.13) == (pytest.approx(4.0), True)


def test_jerk_first_step_only_counted_with_an_initial_acceleration() -> None:
    traj = plan(a=np.full(T, -2.0))  # constant braking: no jerk inside the plan
    assert C.check_longitudinal_jerk(traj, 4.13) == (0.0, True)
    value, passed = C.check_longitudinal_jerk(traj, 4.13, initial_accel_mps2=0.0)
    assert value == pytest.approx(20.0) and not passed
    assert C.check_jerk(traj, 8.37, initial_accel_mps2=-1.5)[0] == pytest.approx(5.0)


def test_total_jerk_of_a_constant_speed_circle_is_v_cubed_kappa_squared() -> None:
    traj = plan(k=0.04, v0=10.0)  # lateral accel 4 m/s^2, the vector turns at v kappa
    value, passed = C.check_jerk(traj, 8.37)
    assert value == pytest.approx(10.0**3 * 0.04**2, rel=1e-3) and passed
    assert C.check_longitudinal_jerk(traj, 4.13)[0] == 0.0
    assert C.check_lateral_jerk(traj, 7.0)[0] == pytest.approx(0.0, abs=1e-9)


def test_lateral_jerk_from_a_curvature_step() -> None:
    k = np.zeros(T)
    k[30:] = 0.05  # 10 m/s: lateral accel 0 -> 5 m/s^2 in 0.1 s = 50 m/s^3
    value, passed = C.check_lateral_jerk(plan(k=k), 7.0)
    assert value == pytest.approx(50.0) and not passed
    k = np.clip(np.arange(T) * 0.0005, 0, 0.03)  # ramp: 10^2 * 0.0005 / 0.1 = 0.5 m/s^3
    assert C.check_lateral_jerk(plan(k=k), 7.0) == (pytest.approx(0.5), True)


def test_nan_and_inf_plans_fail_without_raising() -> None:
    base = plan()
    x = base.x_m.copy()
    x[10] = np.nan
    a = base.acceleration_mps2.copy()
    a[5] = np.inf
    for bad in (with_field(base, x_m=x), with_field(base, acceleration_mps2=a)):
        value, passed = C.check_finite(bad)
        assert value == 1.0 and not passed
        rep = MON.check(bad, NOW, [Obstacle(60, 0, 0, 4, 2)])
        assert not rep.passed and "nonfinite_values" in rep.failed_checks
    # NaN positions cannot be collision-checked: NaN value, failed
    assert MON.check(with_field(base, x_m=x), NOW)["min_time_to_collision_s"].passed is False


def test_time_axis_must_increase() -> None:
    base = plan()
    t = base.time_s.copy()
    t[7] = t[6]
    assert C.check_time_axis(with_field(base, time_s=t)) == (0.0, False)
    assert C.check_time_axis(base)[1]


def test_plan_age_and_future_stamps() -> None:
    traj = plan(stamp_ns=10 * S)
    assert C.check_plan_age(traj, 11 * S, 1.0) == (1.0, True)
    assert C.check_plan_age(traj, 11 * S + 1, 1.0)[1] is False
    assert C.check_future_stamp(traj, 10 * S - S // 20, 0.1) == (pytest.approx(0.05), True)
    assert C.check_future_stamp(traj, 10 * S - S // 5, 0.1)[1] is False
    rep = MON.check(traj, 12 * S)
    assert rep.failed_checks == ("max_plan_age_s",)


def test_hard_braking_is_accepted_and_reported_as_uncomfortable() -> None:
    a = np.concatenate([np.linspace(-0.4, -6.0, 15), np.full(T - 15, -6.0)])
    traj = plan(a=a, v0=25.0)  # build-up at 4.0 m/s^3, then -6 m/s^2 (AEB-like)
    rep = MON.check(traj, NOW)
    assert rep.passed, rep.summary()
    assert rep.failed_advisories == ("comfort_min_accel_mps2",)
    assert rep["min_accel_mps2"].value == pytest.approx(-6.0)
    assert not MON.check(plan(a=np.full(T, -9.9)), NOW).passed  # beyond 9.8 m/s^2
    too_fast = MON.check(plan(a=np.full(T, 3.0), v0=0.0), NOW)
    assert too_fast.passed and too_fast.failed_advisories == ("comfort_max_accel_mps2",)


@pytest.mark.parametrize(
    ("v0", "kappa", "fails"),
    [
        (10.0, 0.045, ()),  # 4.5 m/s^2, 0.45 rad/s
        (10.0, 0.05, ("max_lateral_accel_mps2",)),  # 5.0 m/s^2
        (4.5, 0.2, ()),  # 4.05 m/s^2, 0.9 rad/s
        (4.5, 0.21, ("max_curvature_per_m",)),  # 0.945 rad/s, 4.25 m/s^2
        (5.0, 0.195, ("max_yaw_rate_radps",)),  # 0.975 rad/s, 4.875 m/s^2
    ],
)
def test_lateral_accel_curvature_and_yaw_rate(v0: float, kappa: float, fails: tuple) -> None:
    traj = plan(k=kappa, v0=v0)
    rep = MON.check(traj, NOW)
    assert set(rep.failed_checks) == set(fails), rep.summary()


def test_curvature_and_yaw_rate_values() -> None:
    traj = plan(k=-0.1, v0=6.0)
    assert C.check_curvature(traj, 0.2) == (pytest.approx(0.1), True)
    assert C.check_yaw_rate(traj, 0.5) == (pytest.approx(0.6), False)
    assert C.check_lateral_accel(traj, 4.89) == (pytest.approx(3.6), True)
    # speeding up: the worst speed of the last step counts
    acc = plan(a=1.0, k=0.01, v0=0.0)
    assert C.check_lateral_accel(acc, 100)[0] == pytest.approx(6.4**2 * 0.01)


def test_limits_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="max_jerk_mps3"):
        SafetyLimits(max_jerk_mps3=0.0)
    with pytest.raises(ValueError, match="min_accel_mps2"):
        SafetyLimits(min_accel_mps2=1.0)
    with pytest.raises(ValueError, match="max_plan_age_s"):
        SafetyLimits(max_plan_age_s=math.nan)
    with pytest.raises(ValueError, match="ego_width_m"):
        SafetyLimits(ego_width_m="2")


def test_report_limits_follow_the_configuration() -> None:
    mon = SafetyMonitor(SafetyLimits(max_longitudinal_jerk_mps3=12.0, max_jerk_mps3=12.0))
    a = np.zeros(T)
    a[20] = 1.0
    rep = mon.check(plan(a=a), NOW)
    assert rep.passed and rep["max_longitudinal_jerk_mps3"].limit == 12.0
