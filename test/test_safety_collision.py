"""Collision check: oriented boxes, constant-velocity obstacles, time to collision."""

import math

import numpy as np
import pytest

from alpamayo_ros.safety import EgoBox, Obstacle, SafetyLimits, SafetyMonitor
from alpamayo_ros.safety.collision import boxes_overlap, check_collision, first_collision
from alpamayo_ros.trajectory import Trajectory

S = 1_000_000_000
T = 64
EGO = EgoBox(length_m=4.0, width_m=2.0, center_offset_m=0.0, margin_m=0.0)


def straight(v0: float = 10.0, stamp_ns: int = 0, a: float = 0.0) -> Trajectory:
    return Trajectory.from_controls(np.full(T, a), np.zeros(T), v0, stamp_ns=stamp_ns)


def test_head_on_time_to_collision_matches_the_closed_form() -> None:
    # ego 10 m/s from x=0; obstacle 4 m long at x=50 closing at 5 m/s
    # gap between fronts: 50 - 2 - 2 = 46 m at 15 m/s -> 3.0667 s
    obs = [Obstacle(x_m=50, y_m=0, yaw_rad=0, length_m=4, width_m=2, vx_mps=-5, id="car")]
    hit = first_collision(straight(), obs, now_ns=0, ego=EGO, time_step_s=0.01)
    assert hit.obstacle_id == "car" and hit.obstacle_index == 0
    assert hit.time_to_collision_s == pytest.approx(46 / 15, abs=0.011)
    assert check_collision(straight(), obs, 0, EGO, 3.0, time_step_s=0.01)[1] is True
    assert check_collision(straight(), obs, 0, EGO, 3.1, time_step_s=0.01)[1] is False


def test_time_to_collision_counts_from_now_and_skips_the_past() -> None:
    obs = [Obstacle(x_m=30, y_m=0, yaw_rad=0, length_m=4, width_m=2)]  # static
    # plan stamped 1 s ago: the ego is at 10 m now, front touches at 26 m -> 1.6 s from now
    value, _ = check_collision(straight(stamp_ns=0), obs, 1 * S, EGO, 0.0, time_step_s=0.01)
    assert value == pytest.approx(1.6, abs=0.011)
    # an obstacle on the part of the plan already driven is not a collision
    behind = [Obstacle(x_m=3, y_m=0, yaw_rad=0, length_m=1, width_m=1)]
    assert check_collision(straight(stamp_ns=0), behind, 1 * S, EGO, 3.0) == (math.inf, True)


def test_obstacle_stamp_offsets_the_prediction() -> None:
    obs = [Obstacle(x_m=50, y_m=0, yaw_rad=0, length_m=4, width_m=2, vx_mps=-5)]
    base = check_collision(straight(), obs, 0, EGO, 0.0, obstacles_stamp_ns=0,
                           time_step_s=0.01)[0]
    # the same positions measured 0.6 s earlier: the obstacle is 3 m closer by now
    older = check_collision(straight(), obs, 0, EGO, 0.0, obstacles_stamp_ns=-6 * S // 10,
                            time_step_s=0.01)[0]
    assert base - older == pytest.approx(3 / 15, abs=0.011)


def test_adjacent_lane_and_parallel_traffic_do_not_collide() -> None:
    obs = [
        Obstacle(x_m=20, y_m=3.5, yaw_rad=0, length_m=4.5, width_m=1.9),  # parked, next lane
        Obstacle(x_m=10, y_m=-3.5, yaw_rad=0, length_m=4.5, width_m=1.9, vx_mps=10),
        Obstacle(x_m=30, y_m=0, yaw_rad=0, length_m=4.5, width_m=1.9, vx_mps=12),  # faster lead
    ]
    assert check_collision(straight(), obs, 0, EGO, 3.0) == (math.inf, True)


def test_crossing_pedestrian_hits_or_misses_by_timing() -> None:
    # ego at x=20 at t=2 s; pedestrian crossing at x=20 with 1.5 m/s
    ped = dict(x_m=20, yaw_rad=math.pi / 2, length_m=0.5, width_m=0.5)
    hits = Obstacle(y_m=-4.5, vy_mps=1.5, **ped)  # reaches the lane edge (y=-1.25) at ~2.0 s
    late = Obstacle(y_m=-9.0, vy_mps=1.5, **ped)  # ego long gone
    assert check_collision(straight(), [hits], 0, EGO, 0.0)[0] < 3.0
    assert check_collision(straight(), [late], 0, EGO, 0.0)[0] == math.inf


def test_rotated_boxes_use_the_true_footprint() -> None:
    zero, half = np.array([0.0, 0.0]), np.array([1.0, 1.0])  # 2 x 2 m squares
    rot = np.array(math.pi / 4)
    # 2.2 m apart on both axes: apart when aligned; rotated 45 deg, the projections on the
    # first square's axes overlap (1 + 1.414 > 2.2) and only the rotated square's own
    # diagonal axis separates them (an axis-aligned bounding-box test would say "hit")
    diag = np.array([2.2, 2.2])
    assert not boxes_overlap(zero, np.array(0.0), half, diag, np.array(0.0), half)
    assert not boxes_overlap(zero, np.array(0.0), half, diag, rot, half)
    assert boxes_overlap(zero, np.array(0.0), half, np.array([1.9, 1.9]), np.array(0.0), half)
    # a corner of the rotated square pokes 1.414 m out: reaches 2.3 m, not 2.5 m
    assert boxes_overlap(zero, np.array(0.0), half, np.array([2.3, 0.0]), rot, half)
    assert not boxes_overlap(zero, np.array(0.0), half, np.array([2.5, 0.0]), rot, half)


def test_monitor_rejects_a_collision_course_and_uses_ego_geometry() -> None:
    obs = [Obstacle(x_m=30, y_m=0, yaw_rad=0, length_m=4.5, width_m=1.9, vx_mps=-3, id="x")]
    rep = SafetyMonitor().check(straight(), 0, obs)
    assert rep.failed_checks == ("min_time_to_collision_s",)
    # braking plan (-4 m/s^2 from 10 m/s stops in 12.5 m) keeps clear of a static car at 30
    static = [Obstacle(x_m=30, y_m=0, yaw_rad=0, length_m=4.5, width_m=1.9)]
    assert SafetyMonitor().check(straight(a=-4.0), 0, static)["min_time_to_collision_s"].passed
    # a wider ego grazes a car passing 2.2 m to the side
    side = [Obstacle(x_m=20, y_m=2.2, yaw_rad=0, length_m=4.5, width_m=1.9)]
    narrow = SafetyMonitor(SafetyLimits(ego_width_m=1.9, collision_margin_m=0.0))
    wide = SafetyMonitor(SafetyLimits(ego_width_m=2.6, collision_margin_m=0.0))
    assert narrow.check(straight(), 0, side).passed
    assert not wide.check(straight(), 0, side).passed


def test_obstacle_validation() -> None:
    with pytest.raises(ValueError, match="width_m"):
        Obstacle(0, 0, 0, 1.0, -1.0)
    with pytest.raises(ValueError, match="vx_mps"):
        Obstacle(0, 0, 0, 1.0, 1.0, vx_mps=math.nan)
