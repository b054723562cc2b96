"""Closed-loop simulator core: ego dynamics, command timeout, agents, outputs, events."""

import math

import numpy as np
import pytest

from alpamayo_ros.data.world import Agent, agent_world_pose
from alpamayo_ros.sim import (
    ClosedLoopSim,
    CommandMode,
    Pacer,
    SimConfig,
    frenet_from_world,
    world_from_frenet,
)
from alpamayo_ros.sim.ego import frenet_from_world_many
from alpamayo_ros.unicycle import integrate

TINY = dict(rig="tiny", physics_rate_hz=50.0)  # the step counts below assume 50 Hz physics


def run_commands(sim: ClosedLoopSim, accel: np.ndarray, curv: np.ndarray,
                 ticks_per_command: int) -> np.ndarray:
    """Apply each command for ``ticks_per_command`` ticks; poses (x, y, h, v) after each."""
    out = []
    for a, k in zip(accel, curv):
        assert sim.set_command(float(a), float(k))
        for _ in range(ticks_per_command):
            sim.step()
        e = sim.ego
        out.append((e.x_m, e.y_m, e.heading_rad, e.speed_mps))
    return np.array(out)


def to_world(states, pose) -> np.ndarray:
    c, s = math.cos(pose.heading_rad), math.sin(pose.heading_rad)
    x = pose.x_m + c * states.x_m - s * states.y_m
    y = pose.y_m + s * states.x_m + c * states.y_m
    h = np.angle(np.exp(1j * (pose.heading_rad + states.heading_rad)))
    return np.stack([x, y, h, states.velocity_mps], axis=1)


@pytest.mark.parametrize("physics_hz, ticks", [(50.0, 5), (50.0, 1), (100.0, 10)])
def test_ego_follows_commands_like_the_unicycle(physics_hz: float, ticks: int) -> None:
    sim = ClosedLoopSim(SimConfig(family="cruise", physics_rate_hz=physics_hz,
                                  odometry_rate_hz=physics_hz, rig="tiny"))
    rng = np.random.default_rng(3)
    n = int(round(3.0 * physics_hz / ticks))  # 3 s of commands
    accel = rng.uniform(-2.0, 2.0, n)
    curv = rng.uniform(-0.02, 0.06, n)
    start = sim.ego
    got = run_commands(sim, accel, curv, ticks)
    dt = ticks / physics_hz
    want = to_world(integrate(accel, curv, start.speed_mps, dt_s=dt), start)
    np.testing.assert_allclose(got[:, :2], want[:, :2], atol=1e-6)
    np.testing.assert_allclose(np.angle(np.exp(1j * (got[:, 2] - want[:, 2]))), 0, atol=1e-9)
    np.testing.assert_allclose(got[:, 3], want[:, 3], atol=1e-9)
    # The controls really moved the car off a straight line.
    assert np.ptp(got[:, 2]) > 0.1
    assert sim.status.mode == CommandMode.COMMAND and sim.status.commands_applied == n


def test_world_ego_state_follows_the_commanded_pose() -> None:
    sim = ClosedLoopSim(SimConfig(family="turn", initial_speed_mps=6.0, **TINY))
    for i in range(150):
        if i % 5 == 0:
            sim.set_command(0.3, 0.03)  # drift left of the lane, heading off the road
        sim.step()
    e, p = sim.world.ego, sim.ego
    # The data engine's view of the ego (agents, visibility) is the commanded pose.
    assert agent_world_pose(sim.world.road, e) == pytest.approx((p.x_m, p.y_m, p.heading_rad),
                                                                abs=1e-6)
    assert abs(e.heading_offset_rad) > 0.05
    assert math.hypot(e.v_mps, e.vd_mps) == pytest.approx(p.speed_mps)
    assert e.vd_mps == pytest.approx(e.v_mps * math.tan(e.heading_offset_rad))


def test_command_timeout_holds_then_brakes_to_a_stop() -> None:
    cfg = SimConfig(family="cruise", initial_speed_mps=8.0, command_timeout_s=0.5,
                    timeout_decel_mps2=2.0, **TINY)
    sim = ClosedLoopSim(cfg)
    sim.set_command(1.0, 0.01)
    speeds, modes = [], []
    for _ in range(int(6.0 * cfg.physics_rate_hz)):
        sim.step()
        speeds.append(sim.ego.speed_mps)
        modes.append(sim.status.mode)
    speeds = np.array(speeds)
    dt = 1 / cfg.physics_rate_hz
    held = int(round(0.5 / dt))
    # Held: +1 m/s^2 for the timeout, then -2 m/s^2 to zero, never negative.
    np.testing.assert_allclose(speeds[held - 1], 8.0 + 0.5, atol=1e-9)
    assert modes[held - 1] == CommandMode.COMMAND and modes[held] == CommandMode.TIMEOUT
    np.testing.assert_allclose(np.diff(speeds[held:held + 50]) / dt, -2.0, atol=1e-6)
    assert speeds[-1] == 0.0 and speeds.min() >= 0.0
    assert sim.ego.curvature_per_m == pytest.approx(0.01)  # curvature held while braking
    assert sim.status.command_timeouts == 1
    assert [e.kind for e in sim.drain_events()].count("command_timeout") == 1
    # A fresh command takes over again.
    sim.set_command(2.0, 0.0)
    for _ in range(10):
        sim.step()
    assert sim.ego.speed_mps == pytest.approx(2.0 * 10 * dt)
    assert sim.status.mode == CommandMode.COMMAND


def test_without_any_command_the_ego_holds_its_start_speed_then_stops() -> None:
    sim = ClosedLoopSim(SimConfig(family="turn", initial_speed_mps=6.0, engage_timeout_s=0.5,
                                  **TINY))
    for _ in range(20):  # 0.4 s < engage_timeout_s
        sim.step()
    assert sim.ego.speed_mps == pytest.approx(6.0)
    assert sim.status.mode == CommandMode.INITIAL
    for _ in range(300):
        sim.step()
    assert sim.ego.speed_mps == 0.0 and sim.status.mode == CommandMode.TIMEOUT


def test_the_driver_holds_the_start_speed_until_a_command_follows_a_plan() -> None:
    sim = ClosedLoopSim(SimConfig(family="cruise", initial_speed_mps=8.0, **TINY))
    for _ in range(50):  # the controller's minimal-risk stop before its first plan: ignored
        assert sim.set_command(-4.0, 0.0, from_plan=False)
        sim.step()
    assert sim.ego.speed_mps == pytest.approx(8.0)
    assert sim.status.mode == CommandMode.INITIAL and not sim.status.engaged
    assert sim.status.commands_before_engagement == 50 and sim.status.commands_applied == 0
    assert sim.set_command(1.0, 0.0, from_plan=True)  # the first plan-following command
    sim.step()
    assert sim.status.engaged and sim.status.mode == CommandMode.COMMAND
    assert sim.set_command(-2.0, 0.0, from_plan=False)  # engaged: stop commands apply
    sim.step()
    assert sim.effective_command() == (-2.0, 0.0)
    sim.reset()  # every episode starts with the driver again
    assert not sim.status.engaged and sim.status.mode == CommandMode.INITIAL


def test_engage_on_any_takes_the_first_command_of_any_source() -> None:
    sim = ClosedLoopSim(SimConfig(family="cruise", initial_speed_mps=8.0, engage_on="any",
                                  **TINY))
    assert sim.set_command(-4.0, 0.0, from_plan=False)
    sim.step()
    assert sim.status.engaged and sim.effective_command() == (-4.0, 0.0)
    with pytest.raises(ValueError, match="engage_on"):
        SimConfig(engage_on="never")


def test_not_engaged_after_engage_timeout_the_driver_brakes() -> None:
    sim = ClosedLoopSim(SimConfig(family="cruise", initial_speed_mps=8.0, engage_timeout_s=1.0,
                                  **TINY))
    for _ in range(200):  # 2 s of stop commands only: never engaged
        sim.set_command(-4.0, 0.0, from_plan=False)
        sim.step()
    assert sim.status.mode == CommandMode.TIMEOUT and not sim.status.engaged
    assert sim.ego.speed_mps < 8.0 - 2.0  # braking at timeout_decel_mps2 since 1 s


def test_bad_commands_are_rejected_and_out_of_range_ones_clipped() -> None:
    sim = ClosedLoopSim(SimConfig(family="cruise", initial_speed_mps=5.0, **TINY))
    assert sim.set_command(1.0, 0.0)
    for bad in [(math.nan, 0.0), (0.0, math.inf), ("x", 0.0), (None, 1.0)]:
        assert not sim.set_command(*bad)
    assert sim.status.commands_rejected == 4
    assert sim.effective_command() == (1.0, 0.0)  # the last good one still applies
    assert sim.set_command(50.0, -3.0)
    assert sim.effective_command() == (9.8, -0.2) and sim.status.commands_clipped == 1


def test_frenet_round_trip_on_a_curved_road() -> None:
    road = ClosedLoopSim(SimConfig(family="turn", seed=2, **TINY)).world.road
    assert np.ptp(road.curvature) > 0.05  # the turn family really curves
    rng = np.random.default_rng(0)
    s = rng.uniform(-20.0, road.length_m + 20.0, 200)  # includes both extrapolated ends
    d = rng.uniform(-4.0, 4.0, 200)
    x, y, _ = road.to_world(s, d)
    s2, d2 = frenet_from_world_many(road, x, y)
    np.testing.assert_allclose(s2, s, atol=1e-6)
    np.testing.assert_allclose(d2, d, atol=1e-6)
    # Scalar version with a hint, and headings relative to the road.
    xs, ys, h = world_from_frenet(road, 120.0, 1.5, 0.3)
    assert frenet_from_world(road, xs, ys, s_hint=115.0) == pytest.approx((120.0, 1.5), abs=1e-6)
    assert h == pytest.approx(float(road.heading_at(120.0)) + 0.3)


def test_obstacles_are_the_agents_as_moving_boxes() -> None:
    cfg = SimConfig(family="cut_in", **TINY)
    sim = ClosedLoopSim(cfg)
    sim.set_command(0.0, 0.0)
    obstacles = {o.id: o for o in sim.obstacles()}
    assert set(obstacles) == {a.id for a in sim.world.agents} and obstacles
    for a in sim.world.agents:
        o = obstacles[a.id]
        assert (o.x_m, o.y_m, o.yaw_rad) == pytest.approx(agent_world_pose(sim.world.road, a))
        assert (o.length_m, o.width_m, o.height_m) == (a.length_m, a.width_m, a.height_m)
        assert o.z_m == pytest.approx(a.height_m / 2)
    # The reported velocity predicts where each box is one camera period later.
    period = 1.0 / cfg.camera_rate_hz
    for _ in range(cfg.ticks_per_camera):
        sim.step()
    moved = 0
    for o in sim.obstacles():
        before = obstacles[o.id]
        predicted = np.array([before.x_m + before.vx_mps * period,
                              before.y_m + before.vy_mps * period])
        assert np.hypot(*(predicted - [o.x_m, o.y_m])) < 0.15 + 0.05 * math.hypot(
            before.vx_mps, before.vy_mps), o.id
        moved += math.hypot(before.vx_mps, before.vy_mps) > 1.0
    assert moved >= 1


def test_same_seed_same_run_and_different_seed_different_run() -> None:
    def run(seed: int):
        sim = ClosedLoopSim(SimConfig(family="follow_lead", seed=seed, **TINY))
        poses, obstacles = [], []
        for i in range(60):
            if i % 5 == 0:
                sim.set_command(0.3 * math.sin(i / 7), 0.002)
            sim.step()
            poses.append((sim.ego.x_m, sim.ego.y_m, sim.ego.heading_rad, sim.ego.speed_mps))
        obstacles = [(o.id, o.x_m, o.y_m, o.vx_mps) for o in sim.obstacles()]
        return np.array(poses), obstacles, sim.render()

    a, b, c = run(4), run(4), run(5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    for img_a, img_b in zip(a[2], b[2]):
        np.testing.assert_array_equal(img_a, img_b)
    assert a[1] != c[1] or not np.array_equal(a[0], c[0])


def test_cameras_all_present_at_the_rig_shape() -> None:
    sim = ClosedLoopSim(SimConfig(family="lead_at_red_light", rig="ar1"))
    images = sim.render()
    assert [c.name for c in sim.cameras] == ["front_wide", "front_tele", "cross_left",
                                             "cross_right", "rear_left", "rear_right",
                                             "rear_tele"]
    assert len(images) == 7
    for img in images:
        assert img.shape == (280, 448, 3) and img.dtype == np.uint8
        assert img.std() > 5.0  # a scene, not a blank frame
    # The view follows the commanded ego: after driving, the front camera changed.
    sim.set_command(1.0, 0.0)
    for _ in range(50):
        sim.step()
    assert np.abs(sim.render()[0].astype(int) - images[0]).mean() > 1.0


def test_output_schedule() -> None:
    sim = ClosedLoopSim(SimConfig(odometry_rate_hz=25.0, **TINY))
    due = []
    for _ in range(10):
        due.append((sim.odometry_due(), sim.camera_due()))
        sim.step()
    assert [o for o, _ in due] == [True, False] * 5
    assert [c for _, c in due] == [True] + [False] * 4 + [True] + [False] * 4
    assert sim.time_ns == 10 * 20_000_000


def test_a_following_agent_reacts_to_the_commanded_ego() -> None:
    def follower_speed(ego_accel: float) -> tuple[float, float]:
        sim = ClosedLoopSim(SimConfig(family="cruise", initial_speed_mps=10.0, **TINY))
        e = sim.world.ego
        sim.world.agents.append(Agent("follower", "car", s=e.s - 25.0, d=e.d, v_mps=10.0,
                                      desired_speed_mps=12.0))
        for i in range(400):  # 8 s
            if i % 5 == 0:
                sim.set_command(ego_accel, 0.0)
            sim.step()
        f = sim.world.agent("follower")
        return f.v_mps, sim.world.ego.s - f.s

    v_stop, gap_stop = follower_speed(-3.0)  # the ego brakes to a stop
    v_go, _ = follower_speed(0.5)
    assert v_stop < 0.5 and gap_stop > 4.8  # stopped behind the ego, no contact
    assert v_go > 9.0


def test_collision_event_and_end_on_collision() -> None:
    sim = ClosedLoopSim(SimConfig(family="cruise", initial_speed_mps=10.0, end_on_collision=True,
                                  on_end="stop", **TINY))
    e = sim.world.ego
    sim.world.agents.append(Agent("wall", "barrier", s=e.s + 20.0, d=e.d, mode="static"))
    for i in range(200):
        if i % 5 == 0:
            sim.set_command(0.0, 0.0)
        sim.step()
        if sim.finished:
            break
    events = sim.drain_events()
    kinds = [ev.kind for ev in events]
    assert ("collision", "wall") in [(ev.kind, ev.detail) for ev in events]
    assert kinds[-1] == "episode_end" and sim.finished and sim.status.collisions == 1
    # 20 m minus the half lengths at 10 m/s, to the physics tick.
    hit = next(ev for ev in events if ev.kind == "collision")
    gap_m = 20.0 - e.length_m / 2 - sim.world.agent("wall").length_m / 2
    assert hit.time_ns / 1e9 == pytest.approx(gap_m / 10.0, abs=0.021)
    tick = sim.tick
    sim.step()
    assert sim.tick == tick and not sim.camera_due() and not sim.odometry_due()


def test_off_road_event_when_steering_off_the_road() -> None:
    sim = ClosedLoopSim(SimConfig(family="cruise", initial_speed_mps=8.0, **TINY))
    for i in range(150):
        if i % 5 == 0:
            sim.set_command(0.0, -0.05)  # turn right, off the shoulder
        sim.step()
    kinds = [ev.kind for ev in sim.drain_events()]
    assert "off_road" in kinds and sim.status.off_road and sim.status.off_road_events == 1
    cfg = sim.world.road.config
    assert sim.world.ego.d < -0.5 * cfg.lane_width_m - cfg.shoulder_m


def test_episode_end_restarts_with_the_next_seed_and_time_keeps_running() -> None:
    sim = ClosedLoopSim(SimConfig(family="cruise", seed=7, duration_s=1.0, **TINY))
    for _ in range(int(2.5 * 50)):
        sim.step()
    assert sim.episode == 3 and sim.seed == 9
    assert sim.time_s == pytest.approx(2.5) and sim.episode_time_s == pytest.approx(0.5)
    kinds = [ev.kind for ev in sim.drain_events()]
    assert kinds.count("episode_end") == 2 and kinds.count("episode_start") == 3
    stop = ClosedLoopSim(SimConfig(family="cruise", duration_s=1.0, on_end="stop", **TINY))
    for _ in range(100):
        stop.step()
    assert stop.finished and stop.time_s == pytest.approx(1.0)


def test_pacer_paces_slips_and_runs_unpaced() -> None:
    p = Pacer(2.0, max_lag_s=0.5)
    p.start(wall_s=100.0, sim_s=0.0)
    assert p.delay_s(1.0, 100.0) == pytest.approx(0.5)  # 1 sim s = 0.5 wall s at 2x
    assert p.delay_s(1.0, 100.7) == 0.0 and p.stats.slips == 0  # 0.2 s late: no slip
    assert p.delay_s(2.0, 102.0) == 0.0 and p.stats.slips == 1  # 1 s late: re-anchor
    assert p.delay_s(2.2, 102.0) == pytest.approx(0.1)  # paced from the new anchor
    assert Pacer(0.0).delay_s(10.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="real_time_factor"):
        Pacer(-1.0)
