"""ControllerCore, tracker and fallback: bad plans never run, stops are jerk-limited.

A closed loop at 50 Hz with a perfect longitudinal actuator (the ego speed integrates
the commanded acceleration, floored at 0) stands in for the vehicle.
"""

import math
import random

import numpy as np
import pytest

from alpamayo_ros.control import (
    CommandSource,
    ControllerConfig,
    ControllerCore,
    SafetyState,
    TrajectoryTracker,
)
from alpamayo_ros.safety import Obstacle, SafetyLimits
from alpamayo_ros.trajectory import Trajectory

S = 1_000_000_000
MS = 1_000_000
T = 64
PERIOD_NS = 20 * MS  # 50 Hz


def plan(stamp_ns: int, v0: float = 10.0, a=0.0, k=0.0) -> Trajectory:
    a = np.broadcast_to(np.asarray(a, float), (T,)).copy()
    k = np.broadcast_to(np.asarray(k, float), (T,)).copy()
    return Trajectory.from_controls(a, k, v0, stamp_ns=stamp_ns)


def spike_plan(stamp_ns: int, v0: float = 10.0) -> Trajectory:
    a = np.zeros(T)
    a[10] = 2.0  # 20 m/s^3 in and out
    return plan(stamp_ns, v0, a=a)


def nan_plan(stamp_ns: int, v0: float = 10.0) -> Trajectory:
    good = plan(stamp_ns, v0)
    y = good.y_m.copy()
    y[30] = np.nan
    return Trajectory(stamp_ns, good.time_s, good.x_m, y, good.heading_rad, good.velocity_mps,
                      good.acceleration_mps2, good.curvature_per_m)


class Loop:
    """Steps the controller at 50 Hz and integrates the ego speed."""

    def __init__(self, core: ControllerCore, speed: float, now_ns: int = 0) -> None:
        self.core, self.speed, self.now = core, speed, now_ns
        self.log = []

    def run(self, seconds: float, on_tick=None) -> list:
        out = []
        for _ in range(int(round(seconds * S / PERIOD_NS))):
            self.now += PERIOD_NS
            if on_tick is not None:
                on_tick(self.now)
            cmd, status = self.core.step(self.now, self.speed)
            self.speed = max(self.speed + cmd.acceleration_mps2 * PERIOD_NS / S, 0.0)
            out.append((self.now, cmd, status, self.speed))
        self.log += out
        return out


def test_tracker_samples_the_plan_by_its_stamp_with_bounded_feedback() -> None:
    cfg = ControllerConfig(speed_gain_per_s=0.5, max_feedback_accel_mps2=1.0)
    tracker = TrajectoryTracker(cfg)
    a = np.linspace(-1.0, 1.0, T)
    k = np.linspace(0.0, 0.02, T)
    traj = plan(5 * S, v0=8.0, a=a, k=k)
    now = 5 * S + 350 * MS  # 0.35 s into the plan: control step 3 (0.3 .. 0.4 s)
    v_plan = float(traj.velocity_at(0.35))
    tgt = tracker.track(traj, now, ego_speed_mps=v_plan)
    assert tgt.plan_time_s == pytest.approx(0.35)
    assert (tgt.plan_accel_mps2, tgt.curvature_per_m) == (a[3], k[3])
    assert tgt.acceleration_mps2 == pytest.approx(a[3]) and tgt.velocity_mps == v_plan
    slow = tracker.track(traj, now, ego_speed_mps=v_plan - 1.0)
    assert slow.acceleration_mps2 == pytest.approx(a[3] + 0.5)
    very_slow = tracker.track(traj, now, ego_speed_mps=0.0)
    assert very_slow.acceleration_mps2 == pytest.approx(a[3] + 1.0)  # feedback bounded
    assert tracker.track(traj, 5 * S + 6401 * MS, 8.0) is None  # past the horizon


def test_previous_plan_is_followed_time_aligned_until_the_next_is_accepted() -> None:
    core = ControllerCore()
    k_a = np.linspace(0.0, 0.01, T)
    first = plan(0, a=0.0, k=k_a)
    assert core.submit_plan(first, now_ns=300 * MS)[1]
    loop = Loop(core, speed=10.0, now_ns=300 * MS)
    for now, cmd, status, _ in loop.run(1.2):
        assert status.state is SafetyState.OK and cmd.source is CommandSource.POLICY
        assert cmd.plan_stamp_ns == 0
        assert cmd.curvature_per_m == first.controls_at(now / S)[1]
    second = plan(1 * S, a=0.0, k=0.005)
    assert core.submit_plan(second, now_ns=loop.now)[1]  # arrives 0.5 s after its stamp
    (now, cmd, status, _), = loop.run(0.02)
    assert cmd.plan_stamp_ns == 1 * S and cmd.curvature_per_m == 0.005
    assert status.active_plan_stamp_ns == 1 * S


@pytest.mark.parametrize("bad", ["jerk_spike", "nan", "collision"])
def test_bad_plan_is_rejected_and_soft_stop_starts_within_one_cycle(bad: str) -> None:
    core = ControllerCore()
    good = plan(0, k=0.002)
    assert core.submit_plan(good, now_ns=200 * MS)[1]
    loop = Loop(core, speed=10.0, now_ns=200 * MS)
    loop.run(0.5)
    obstacles = ()
    if bad == "jerk_spike":
        new, expect = spike_plan(600 * MS), {"max_jerk_mps3", "max_longitudinal_jerk_mps3"}
    elif bad == "nan":
        new, expect = nan_plan(600 * MS), {"nonfinite_values"}
    else:  # stopped car 25 m ahead of the new plan's origin, plan keeps 10 m/s
        new, expect = plan(600 * MS), {"min_time_to_collision_s"}
        obstacles = [Obstacle(x_m=25.0, y_m=0.0, yaw_rad=0.0, length_m=4.5, width_m=1.9)]
    report, accepted = core.submit_plan(new, now_ns=loop.now, obstacles=obstacles)
    assert not accepted and set(report.failed_checks) >= expect
    (now, cmd, status, _), = loop.run(0.02)
    assert status.state is SafetyState.DEGRADED and cmd.source is CommandSource.SOFT_STOP
    assert set(status.failed_checks) >= expect and "rejected" in status.reason
    assert cmd.plan_stamp_ns == 0 == status.active_plan_stamp_ns  # the old plan, not the bad
    assert cmd.curvature_per_m == pytest.approx(0.002)  # still on the last valid path
    assert cmd.acceleration_mps2 < 0.0


def test_silent_policy_triggers_the_minimal_risk_stop_within_one_cycle() -> None:
    cfg = ControllerConfig(policy_timeout_s=1.0)
    core = ControllerCore(cfg)
    arrival = 100 * MS
    assert core.submit_plan(plan(0), now_ns=arrival)[1]
    loop = Loop(core, speed=10.0, now_ns=arrival)
    out = loop.run(1.2)
    states = [(now, status.state) for now, _, status, _ in out]
    for now, state in states:
        silent = (now - arrival) / S > 1.0
        assert state is (SafetyState.FALLBACK if silent else SafetyState.OK), now
    first_fb = next(now for now, st in states if st is SafetyState.FALLBACK)
    assert first_fb - (arrival + S) <= PERIOD_NS
    _, cmd, status, _ = out[-1]
    assert cmd.source is CommandSource.MINIMAL_RISK_STOP and "silent" in status.reason
    assert status.policy_silence_s == pytest.approx(1.2)


def test_no_plan_yet_is_fallback_and_still_commands() -> None:
    core = ControllerCore()
    cmd, status = core.step(0, 0.0)
    assert status.state is SafetyState.FALLBACK and math.isinf(status.policy_silence_s)
    assert cmd.source is CommandSource.MINIMAL_RISK_STOP and cmd.velocity_mps == 0.0
    assert cmd.plan_stamp_ns == 0 and status.checks == ()


def test_soft_stop_decelerates_at_the_configured_rate_with_bounded_jerk() -> None:
    cfg = ControllerConfig()  # -1.0 m/s^2, 0.3 m/s^3 (Autoware comfortable stop)
    core = ControllerCore(cfg)
    assert core.submit_plan(plan(0, v0=3.0), now_ns=100 * MS)[1]
    loop = Loop(core, speed=3.0, now_ns=100 * MS)
    loop.run(0.2)

    def keep_sending_bad_plans(now: int) -> None:  # the policy is alive but wrong
        if now % (500 * MS) == 0:
            assert not core.submit_plan(spike_plan(now - 100 * MS, v0=3.0), now_ns=now)[1]

    keep_sending_bad_plans(500 * MS)
    out = loop.run(5.5, on_tick=keep_sending_bad_plans)
    accels = np.array([cmd.acceleration_mps2 for _, cmd, _, _ in out])
    assert all(st.state is SafetyState.DEGRADED for _, _, st, _ in out)
    assert all(cmd.source is CommandSource.SOFT_STOP for _, cmd, _, _ in out)
    jerk = np.abs(np.diff(accels)) / (PERIOD_NS / S)
    assert jerk.max() <= 0.3 + 1e-9
    assert accels.min() >= -1.0 - 1e-12
    reached = np.flatnonzero(np.isclose(accels, -1.0))
    # 0 -> -1.0 m/s^2 at 0.3 m/s^3 takes 3.33 s (within a cycle)
    assert reached[0] * PERIOD_NS / S == pytest.approx(1.0 / 0.3, abs=0.03)
    speeds = np.array([v for _, _, _, v in out])
    assert speeds[-1] == 0.0
    stop_time = np.flatnonzero(speeds == 0.0)[0] * PERIOD_NS / S
    # speed lost during the ramp: 1/(2*0.3) = 1.667 m/s; the rest at 1 m/s^2
    assert stop_time == pytest.approx(1 / 0.3 + (3.0 - 1 / 0.6) / 1.0, abs=0.05)
    assert "vehicle stopped" in out[-1][2].reason
    assert out[-1][1].velocity_mps == 0.0


def test_expired_last_plan_escalates_to_a_jerk_limited_minimal_risk_stop() -> None:
    core = ControllerCore()
    assert core.submit_plan(plan(0, v0=10.0), now_ns=100 * MS)[1]
    loop = Loop(core, speed=10.0, now_ns=100 * MS)

    def bad_every_half_second(now: int) -> None:
        if now % (500 * MS) == 0:
            core.submit_plan(spike_plan(now - 100 * MS), now_ns=now)

    out = loop.run(14.0, on_tick=bad_every_half_second)
    states = [st.state for _, _, st, _ in out]
    times = np.array([now for now, _, _, _ in out]) / S
    first_fb = times[states.index(SafetyState.FALLBACK)]
    assert first_fb == pytest.approx(6.4, abs=0.021)  # the last valid plan's horizon
    assert all(s is SafetyState.DEGRADED for s, t in zip(states, times) if 0.5 < t < 6.4)
    assert "expired" in out[-1][2].reason
    accels = np.array([cmd.acceleration_mps2 for _, cmd, _, _ in out])
    jerk = np.abs(np.diff(accels)) / (PERIOD_NS / S)
    assert jerk.max() <= 1.5 + 1e-9  # continuous through DEGRADED -> FALLBACK
    assert accels.min() == pytest.approx(-2.5)
    assert out[-1][3] == 0.0  # stopped


def test_minimal_risk_stop_follows_the_path_by_distance_not_time() -> None:
    k = np.zeros(T)
    k[20:] = 0.004  # curve starts 2.0 s / 20 m into the plan at 10 m/s
    core = ControllerCore(ControllerConfig(policy_timeout_s=0.5))
    traj = plan(0, v0=10.0, k=k)
    assert core.submit_plan(traj, now_ns=0)[1]
    loop = Loop(core, speed=10.0)
    out = loop.run(4.0)
    driven, switch_at = 0.0, None
    for now, cmd, _status, v in out:
        if cmd.curvature_per_m == 0.004 and switch_at is None:
            switch_at = (now, driven)
        driven += v * PERIOD_NS / S
    assert out[-1][2].state is SafetyState.FALLBACK
    arc = traj.arc_length_m()
    s_curve = arc[19]  # the curve's step begins after point 19
    assert switch_at[1] == pytest.approx(s_curve, abs=10.0 * PERIOD_NS / S + 1e-6)
    assert switch_at[0] / S > 2.1  # later than the plan's own time: the car slowed down


def test_new_valid_plan_recovers_and_older_valid_plans_are_ignored() -> None:
    core = ControllerCore()
    core.submit_plan(plan(0), now_ns=100 * MS)
    loop = Loop(core, speed=10.0, now_ns=100 * MS)
    core.submit_plan(spike_plan(200 * MS), now_ns=300 * MS)
    assert loop.run(0.5)[-1][2].state is SafetyState.DEGRADED
    assert core.submit_plan(plan(600 * MS, v0=loop.speed), now_ns=loop.now)[1]
    (_, cmd, status, _), = loop.run(0.02)
    assert status.state is SafetyState.OK and cmd.plan_stamp_ns == 600 * MS
    assert status.failed_checks == ()
    report, accepted = core.submit_plan(plan(500 * MS), now_ns=loop.now)
    assert report.passed and not accepted and core.active_plan.stamp_ns == 600 * MS


def test_obstacle_update_invalidates_the_active_plan() -> None:
    core = ControllerCore()
    core.submit_plan(plan(0), now_ns=100 * MS)
    loop = Loop(core, speed=10.0, now_ns=100 * MS)
    loop.run(0.2)
    far = [Obstacle(x_m=200.0, y_m=0.0, yaw_rad=0.0, length_m=4.5, width_m=1.9)]
    assert core.update_obstacles(far, now_ns=loop.now) is None
    near = [Obstacle(x_m=20.0, y_m=0.0, yaw_rad=0.0, length_m=4.5, width_m=1.9, id="stalled")]
    report = core.update_obstacles(near, now_ns=loop.now)
    assert report.failed_checks == ("min_time_to_collision_s",)
    (_, cmd, status, _), = loop.run(0.02)
    assert status.state is SafetyState.FALLBACK and "collision" in status.reason
    assert cmd.source is CommandSource.MINIMAL_RISK_STOP and cmd.plan_stamp_ns == 0
    assert status.active_plan_stamp_ns == 0
    # the stored obstacles also check the next plan
    assert not core.submit_plan(plan(loop.now), now_ns=loop.now)[1]
    assert "silent" not in status.reason
    # the policy then goes silent too: the status names both causes
    (_, _, status, _), = loop.run(2.1)[-1:]
    assert status.state is SafetyState.FALLBACK
    assert "collision course" in status.reason and "; policy silent for" in status.reason


def test_commands_never_stop_and_never_come_from_a_rejected_plan() -> None:
    rng = random.Random(5)
    core = ControllerCore(ControllerConfig(policy_timeout_s=1.0),
                          SafetyLimits(max_plan_age_s=1.5))
    loop = Loop(core, speed=0.0)
    rejected, accepted = set(), set()
    makers = [plan, spike_plan, nan_plan]

    def events(now: int) -> None:
        if rng.random() < 0.03:  # ~1.5 plans per second, sometimes bad, sometimes late
            maker = rng.choice(makers)
            stamp = now - rng.randint(0, 1800) * MS
            traj = maker(stamp, v0=loop.speed)
            _, ok = core.submit_plan(traj, now_ns=now)
            (accepted if ok else rejected).add(stamp)
        if rng.random() < 0.01:
            x = rng.uniform(5, 80)
            core.update_obstacles([Obstacle(x, 0.0, 0.0, 4.5, 1.9)], now_ns=now)
        if rng.random() < 0.01:
            core.update_obstacles([], now_ns=now)

    out = loop.run(30.0, on_tick=events)
    assert len(out) == 1500
    sources = {SafetyState.OK: CommandSource.POLICY, SafetyState.DEGRADED: CommandSource.SOFT_STOP,
               SafetyState.FALLBACK: CommandSource.MINIMAL_RISK_STOP}
    seen = set()
    for _, cmd, status, _ in out:
        assert math.isfinite(cmd.acceleration_mps2) and math.isfinite(cmd.curvature_per_m)
        assert math.isfinite(cmd.velocity_mps) and cmd.velocity_mps >= 0.0
        assert -9.8 <= cmd.acceleration_mps2 <= 9.8
        assert cmd.source is sources[status.state]
        seen.add(status.state)
        if cmd.plan_stamp_ns:
            assert cmd.plan_stamp_ns in accepted and cmd.plan_stamp_ns not in rejected - accepted
    assert seen == set(SafetyState)  # the run went through every state
    assert rejected and accepted


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="soft_stop_accel_mps2"):
        ControllerConfig(soft_stop_accel_mps2=0.5)
    with pytest.raises(ValueError, match="control_rate_hz"):
        ControllerConfig(control_rate_hz=0)
    with pytest.raises(ValueError, match="mrm_jerk_mps3"):
        ControllerConfig(mrm_jerk_mps3=math.inf)
    with pytest.raises(ValueError, match="mrm_accel_mps2"):
        ControllerConfig(mrm_accel_mps2=-12.0)
    with pytest.raises(ValueError, match="collision_stop_min_accel_mps2"):
        ControllerConfig(collision_stop_min_accel_mps2=-2.0)  # softer than the MRM
    with pytest.raises(ValueError, match="collision_stop_jerk_mps3"):
        ControllerConfig(collision_stop_jerk_mps3=0.0)


def test_soft_stop_keeps_a_valid_plans_harder_braking() -> None:
    core = ControllerCore()
    braking = plan(0, v0=15.0, a=-3.0)  # the valid plan brakes at 3 m/s^2
    assert core.submit_plan(braking, now_ns=100 * MS)[1]
    loop = Loop(core, speed=15.0, now_ns=100 * MS)
    loop.run(0.4)
    core.submit_plan(spike_plan(300 * MS, v0=14.0), now_ns=loop.now)
    out = loop.run(1.0)
    assert all(st.state is SafetyState.DEGRADED for _, _, st, _ in out)
    # never eased toward the -1 m/s^2 soft stop while the valid plan brakes harder
    assert all(cmd.acceleration_mps2 <= -3.0 + 1e-12 for _, cmd, _, _ in out)


def test_the_stop_stays_jerk_limited_when_the_last_command_carried_speed_feedback() -> None:
    core = ControllerCore()
    core.submit_plan(plan(0, v0=8.0, a=-0.5), now_ns=100 * MS)  # brakes gently
    # the ego stays 1 m/s below the plan's speed profile when the policy goes silent: the
    # tracker adds +0.5 m/s^2 of speed feedback to the last OK commands
    accels, states = [], []
    for i in range(200):  # minimal-risk stop once the policy is silent for 2 s
        now = 200 * MS + i * PERIOD_NS
        cmd, status = core.step(now, 8.0 - 0.5 * (now - 100 * MS) / 1e9 - 1.0)
        accels.append(cmd.acceleration_mps2)
        states.append(status.state)
    switch = states.index(SafetyState.FALLBACK)
    assert accels[switch - 1] > -0.5 + 0.3  # the feedback was in the last OK command
    steps = np.abs(np.diff(accels))
    assert steps.max() <= 1.5 * PERIOD_NS / 1e9 + 1e-9  # mrm_jerk_mps3 x one cycle


def test_minimal_risk_stop_ramps_from_the_previous_command() -> None:
    core = ControllerCore()
    accels = [core.step(i * PERIOD_NS, 5.0)[0].acceleration_mps2 for i in range(1, 151)]
    # from 0 at 1.5 m/s^3: -0.03 per 20 ms cycle (the first cycle assumes one period)
    assert accels[0] == pytest.approx(-0.03)
    assert np.allclose(np.diff(accels)[:80], -0.03)
    assert accels[-1] == pytest.approx(-2.5)


def test_a_missing_speed_measurement_still_gives_finite_commands() -> None:
    core = ControllerCore()
    core.submit_plan(plan(0), now_ns=100 * MS)
    cmd, status = core.step(200 * MS, math.nan)
    assert status.state is SafetyState.OK and math.isfinite(cmd.acceleration_mps2)
    cmd, status = core.step(5 * S, math.nan)  # policy silent: minimal-risk stop
    assert status.state is SafetyState.FALLBACK
    assert all(map(math.isfinite, (cmd.acceleration_mps2, cmd.curvature_per_m,
                                   cmd.velocity_mps)))


def test_fixed_rate_schedule_catches_up_missed_cycles_and_resyncs_after_a_stall() -> None:
    from alpamayo_ros.control.schedule import FixedRateSchedule

    ms = 1_000_000
    s = FixedRateSchedule(20 * ms, max_catch_up=5)
    assert s.due(1000 * ms) == [1000 * ms]
    assert s.due(1010 * ms) == []  # polled at twice the rate: nothing due yet
    assert s.due(1020 * ms) == [1020 * ms]
    assert s.due(1065 * ms) == [1040 * ms, 1060 * ms]  # a late timer: both cycles run
    assert s.due(2000 * ms) == [2000 * ms] and s.overruns == 1  # long stall: resync
    assert s.due(2020 * ms) == [2020 * ms]
    assert s.due(500 * ms) == [500 * ms]  # time went back (bag loop): start over


def test_an_overrun_says_whether_the_process_or_the_clock_stood_still() -> None:
    from alpamayo_ros.control.schedule import describe_overrun

    held = describe_overrun(0.99, 1.01)  # the wall clock saw the whole gap
    assert "0.990 s of node time and 1.010 s of wall time" in held
    assert "this process was held up" in held
    jumped = describe_overrun(0.99, 0.02)  # the callbacks came on time, /clock jumped
    assert "the clock jumped ahead" in jumped and "held up" not in jumped


def test_stop_distance_of_a_jerk_limited_brake_on_hand_built_cases() -> None:
    from alpamayo_ros.control.fallback import stop_distance_m

    assert stop_distance_m(10.0, -2.5, -2.5, 1.5) == pytest.approx(20.0)  # v^2 / 2a
    # 0 -> -5 m/s^2 at 10 m/s^3: 0.5 s ramp (4.79 m, then 8.75 m/s), then 7.66 m at -5
    assert stop_distance_m(10.0, 0.0, -5.0, 10.0) == pytest.approx(
        10 * 0.5 - 10 * 0.5 ** 3 / 6 + 8.75 ** 2 / 10)
    # stands still during the ramp: v(t) = 0.5 - 5 t^2 reaches 0 at t = 0.316 s
    t = math.sqrt(0.1)
    assert stop_distance_m(0.5, 0.0, -5.0, 10.0) == pytest.approx(0.5 * t - 10 * t ** 3 / 6)
    # braking harder than the goal already: the ramp softens toward it
    assert stop_distance_m(10.0, -6.0, -2.5, 10.0) < stop_distance_m(10.0, -2.5, -2.5, 10.0)
    assert stop_distance_m(0.0, 0.0, -2.5, 1.5) == 0.0


def test_collision_stop_picks_the_gentlest_braking_that_stands_in_time() -> None:
    from alpamayo_ros.control.fallback import collision_stop_accel, stop_distance_m

    args = dict(softest_mps2=-2.5, hardest_mps2=-6.0, jerk_mps3=10.0)
    assert collision_stop_accel(11.0, 0.0, 100.0, **args) == (-2.5, True)  # the MRM is enough
    assert collision_stop_accel(11.0, 0.0, 5.0, **args) == (-6.0, False)  # nothing is
    goal, ok = collision_stop_accel(11.0, 0.0, 18.0, **args)
    assert ok and -6.0 < goal < -2.5
    assert stop_distance_m(11.0, 0.0, goal, 10.0) == pytest.approx(18.0, abs=0.01)
    assert stop_distance_m(11.0, 0.0, goal + 0.05, 10.0) > 18.0  # a softer one overruns


def _run_into_a_stopped_car(config: ControllerConfig) -> tuple[float, list]:
    """11 m/s on a plan that keeps its speed; a stopped car appears 28 m ahead.

    Returns the gap (m) left between the ego's front and the car's rear when the ego
    stands (< 0: it ran into it), and the loop's log from the car's appearance on.
    """
    core = ControllerCore(config)
    speed = 11.0
    core.submit_plan(plan(0, v0=speed), now_ns=0)
    loop = Loop(core, speed=speed, now_ns=0)
    loop.run(0.1)
    ego_x = 0.1 * speed  # rear axle, in the plan's frame (it starts at 0)
    lim = SafetyLimits()
    ego_front = lim.ego_center_offset_m + lim.ego_length_m / 2
    rear = ego_x + ego_front + 28.0
    stopped = Obstacle(x_m=rear + 2.25, y_m=0.0, yaw_rad=0.0, length_m=4.5, width_m=1.9,
                       id="stopped")
    assert core.update_obstacles([stopped], now_ns=loop.now) is not None
    log = loop.run(8.0)
    ego_x += sum(v for *_, v in log) * PERIOD_NS / S
    return rear - (ego_x + ego_front), log


def test_a_collision_course_brakes_hard_enough_to_stand_before_the_obstacle() -> None:
    gap, log = _run_into_a_stopped_car(ControllerConfig())
    assert gap > 0.0, f"ran into the stopped car ({gap:.2f} m)"
    assert log[-1][3] == 0.0  # stands
    stop = [(c, st) for _, c, st, _ in log]
    assert all(st.state is SafetyState.FALLBACK for _, st in stop)
    accels = np.array([c.acceleration_mps2 for c, _ in stop])
    assert accels.min() >= -6.0 - 1e-9
    steps = np.abs(np.diff(np.r_[0.0, accels]))
    assert steps.max() <= 10.0 * PERIOD_NS / S + 1e-9  # jerk-limited at the collision stop's
    assert steps[0] > 1.5 * PERIOD_NS / S  # a faster onset than the MRM's 1.5 m/s^3
    assert "stop short of the predicted collision" in stop[0][1].reason
    # the Autoware emergency stop alone (-2.5 m/s^2 at 1.5 m/s^3) does not stand in time
    gap_mrm, _ = _run_into_a_stopped_car(ControllerConfig(collision_stop_min_accel_mps2=-2.5,
                                                          collision_stop_jerk_mps3=1.5))
    assert gap_mrm < 0.0, gap_mrm


def test_a_plan_the_node_cannot_check_still_names_every_other_failed_check() -> None:
    core = ControllerCore()
    old = plan(0)  # 3 s old at 3 s: fails max_plan_age_s as well
    report = core.reject_plan(old, 3 * S, "localization_at_plan_stamp", "no odometry")
    assert report.failed_checks == ("max_plan_age_s", "localization_at_plan_stamp")
    assert "min_time_to_collision_s" not in {c.name for c in report.checks}  # not checkable
    assert report.summary().endswith("localization_at_plan_stamp failed")
    fresh = core.reject_plan(plan(3 * S), 3 * S, "localization_at_plan_stamp", "no odometry")
    assert fresh.failed_checks == ("localization_at_plan_stamp",)
    (_, _, status, _), = Loop(core, speed=10.0, now_ns=3 * S).run(0.02)
    assert status.failed_checks == ("localization_at_plan_stamp",)
