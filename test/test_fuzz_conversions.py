"""Fuzzing the message converters and what the controller does with them (issue #12).

:mod:`alpamayo_ros.ros.conversions` documents ValueError for a trajectory without points,
for obstacles with a non-finite or negative size/pose/velocity and for negative stamps;
odometry never raises (non-finite poses are rejected, counted, by the odometry buffer).
Beyond "no other exception", the controller core must never adopt a plan holding a
non-finite value and must always return a finite command, whatever the message held.
Budget: fixed example counts with ``derandomize=True`` (the same inputs on every run).
"""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration, Time
from hypothesis import example, given
from hypothesis import strategies as st
from nav_msgs.msg import Odometry

from alpamayo_ros.control.core import ControllerCore
from alpamayo_ros.msg import (
    CriticalComponent,
    Obstacle,
    ObstacleArray,
    Reasoning,
    TrajectoryPoint,
)
from alpamayo_ros.msg import Trajectory as TrajectoryMsg
from alpamayo_ros.ros.conversions import (
    coc_to_reasoning_msg,
    msg_to_trajectory,
    obstacles_from_msg,
    odometry_to_pose,
    plan_markers,
    reasoning_msg_to_coc,
    trajectory_to_msg,
    trajectory_to_path,
)
from alpamayo_ros.safety.collision import obstacles_in_frame
from alpamayo_ros.sync.odometry import OdometryBuffer
from alpamayo_ros.trajectory import Trajectory
from test.helpers.fuzz import fuzz_settings

FUZZ = fuzz_settings(120)
S = 1_000_000_000

any_float = st.floats(allow_nan=True, allow_infinity=True)
plausible = st.floats(min_value=-50.0, max_value=50.0)
int32 = st.integers(min_value=-2**31, max_value=2**31 - 1)
uint32 = st.integers(min_value=0, max_value=2**32 - 1)
stamps = st.builds(Time, sec=int32, nanosec=uint32) | st.builds(
    Time, sec=st.integers(0, 2000), nanosec=st.integers(0, S - 1))


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _point(t: Duration, x: float, y: float, h: float, v: float, a: float, k: float
           ) -> TrajectoryPoint:
    return TrajectoryPoint(time_from_start=t, x=x, y=y, heading=h, velocity=v,
                           acceleration=a, curvature=k)


points = st.builds(_point, st.builds(Duration, sec=int32, nanosec=uint32), any_float,
                   any_float, any_float, any_float, any_float, any_float)


def _check_controller(plan: Trajectory, now_ns: int) -> None:
    """Submit ``plan``; adopted only when finite; every cycle's command is finite."""
    core = ControllerCore()
    _, accepted = core.submit_plan(plan, now_ns, obstacles=[])
    values = np.stack([plan.time_s, plan.x_m, plan.y_m, plan.heading_rad, plan.velocity_mps,
                       plan.acceleration_mps2, plan.curvature_per_m])
    if accepted:
        assert np.all(np.isfinite(values))
    for dt_ns in (0, 20_000_000, 3 * S):
        command, status = core.step(now_ns + dt_ns, ego_speed_mps=5.0)
        assert _finite(command.acceleration_mps2, command.curvature_per_m,
                       command.velocity_mps), (command, status)


@FUZZ
@given(stamp=stamps, pts=st.lists(points, max_size=70), frame=st.text(max_size=8),
       inference=st.floats(width=32))
@example(stamp=Time(sec=-1, nanosec=0), pts=[_point(Duration(sec=0, nanosec=10**8), 1.0,
                                                   0.0, 0.0, 1.0, 0.0, 0.0)],
         frame="", inference=math.nan)
# found by this test: an infinite heading crashed trajectory_to_path (math.sin(inf))
@example(stamp=Time(sec=0, nanosec=0), pts=[_point(Duration(sec=0, nanosec=0), 0.0, 0.0, 0.0,
                                                  0.0, 0.0, 0.0),
                                           _point(Duration(sec=0, nanosec=0), 0.0, 0.0,
                                                  math.inf, 0.0, 0.0, 0.0)],
         frame="", inference=0.0)
def test_trajectory_msg_arbitrary(stamp: Time, pts: list, frame: str, inference: float) -> None:
    msg = TrajectoryMsg(points=pts, inference_time_s=inference)
    msg.header.stamp, msg.header.frame_id = stamp, frame
    try:
        plan = msg_to_trajectory(msg)
    except ValueError:
        assert not pts  # the documented error: a message without points
        return
    assert len(plan) == len(pts)
    _check_controller(plan, max(plan.stamp_ns, 0) + 50_000_000)
    try:  # back to messages, as the policy node publishes (NaN is publishable)
        again = trajectory_to_msg(plan)
        trajectory_to_path(plan)
        plan_markers(plan, "text", samples=[plan])
    except ValueError:  # a stamp or time_from_start that Time/Duration cannot hold
        times_ok = np.all(np.isfinite(plan.time_s)) and np.all(np.abs(plan.time_s) < 2**31 - 1)
        assert plan.stamp_ns < 0 or plan.stamp_ns >= 2**31 * S or not times_ok
    else:
        assert len(again.points) == len(pts)


@st.composite
def corrupted_plans(draw: st.DrawFn) -> tuple[Trajectory, bool]:
    """A smooth plan from unicycle controls, then maybe one value made non-finite."""
    steps = draw(st.integers(1, 64))
    accel = np.full(steps, draw(st.floats(-2.0, 1.5)))
    curv = np.full(steps, draw(st.floats(-0.02, 0.02)))
    plan = Trajectory.from_controls(accel, curv, v0_mps=draw(st.floats(0.0, 20.0)),
                                    stamp_ns=draw(st.integers(0, 10**6)) * 10**6)
    if not draw(st.booleans()):
        return plan, False
    field = draw(st.sampled_from(["time_s", "x_m", "y_m", "heading_rad", "velocity_mps",
                                  "acceleration_mps2", "curvature_per_m"]))
    values = {name: np.array(getattr(plan, name)) for name in (
        "time_s", "x_m", "y_m", "heading_rad", "velocity_mps", "acceleration_mps2",
        "curvature_per_m")}
    values[field][draw(st.integers(0, steps - 1))] = draw(st.sampled_from(
        [math.nan, math.inf, -math.inf]))
    return Trajectory(stamp_ns=plan.stamp_ns, **values), True


def _with(plan: Trajectory, **values: np.ndarray) -> Trajectory:
    fields = ("time_s", "x_m", "y_m", "heading_rad", "velocity_mps", "acceleration_mps2",
              "curvature_per_m")
    return Trajectory(stamp_ns=plan.stamp_ns,
                      **{n: values.get(n, getattr(plan, n)) for n in fields})


_STRAIGHT = Trajectory.from_controls(np.zeros(1), np.zeros(1), v0_mps=1.0)


@FUZZ
@given(case=corrupted_plans())
# found by this test: a NaN/inf time_from_start raised OverflowError/ValueError from int()
@example(case=(_with(_STRAIGHT, time_s=np.array([math.inf])), True))
@example(case=(_with(_STRAIGHT, time_s=np.array([math.nan])), True))
def test_controller_never_adopts_a_non_finite_plan(case: tuple[Trajectory, bool]) -> None:
    plan, corrupted = case
    try:
        msg = trajectory_to_msg(plan)
    except ValueError:  # documented: Duration cannot hold a non-finite time_from_start
        assert corrupted and not np.all(np.isfinite(plan.time_s))
        back = plan
    else:
        back = msg_to_trajectory(msg)
    core = ControllerCore()
    _, accepted = core.submit_plan(back, plan.stamp_ns + 50_000_000, obstacles=[])
    if corrupted:
        assert not accepted
    _check_controller(back, plan.stamp_ns + 50_000_000)


@FUZZ
@given(lengths=st.lists(st.integers(0, 5), min_size=7, max_size=7))
def test_core_trajectory_with_mismatched_arrays_is_a_value_error(lengths: list[int]) -> None:
    names = ("time_s", "x_m", "y_m", "heading_rad", "velocity_mps", "acceleration_mps2",
             "curvature_per_m")
    try:
        plan = Trajectory(stamp_ns=0, **{n: np.zeros(k) for n, k in zip(names, lengths)})
    except ValueError:
        assert len(set(lengths)) > 1 or lengths[0] == 0
    else:
        assert len(set(lengths)) == 1 and len(plan) == lengths[0] > 0


def _odometry(stamp: Time, x: float, y: float, qz: float, qw: float, vx: float, vy: float
              ) -> Odometry:
    msg = Odometry()
    msg.header.stamp = stamp
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = qz, qw
    msg.twist.twist.linear.x, msg.twist.twist.linear.y = vx, vy
    return msg


odometries = st.builds(
    _odometry, st.builds(Time, sec=st.integers(0, 20), nanosec=st.integers(0, S - 1)),
    any_float | plausible, any_float | plausible, any_float | st.floats(-1, 1),
    any_float | st.floats(-1, 1), any_float | plausible, any_float | plausible)


def _obstacle(x: float, y: float, qz: float, sx: float, sy: float, vx: float, cls: int
              ) -> Obstacle:
    ob = Obstacle(id="o", classification=cls)
    ob.pose.position.x, ob.pose.position.y = x, y
    ob.pose.orientation.z, ob.pose.orientation.w = qz, 1.0
    ob.size.x, ob.size.y, ob.size.z = sx, sy, 1.5
    ob.velocity.x = vx
    return ob


obstacles = st.builds(_obstacle, any_float | plausible, any_float | plausible,
                      any_float | st.floats(-1, 1), any_float | st.floats(0, 6),
                      any_float | st.floats(0, 3), any_float | plausible,
                      st.integers(0, 255))


@FUZZ
@given(odoms=st.lists(odometries, max_size=12), obs=st.lists(obstacles, max_size=4),
       query_s=st.floats(-1.0, 25.0))
# found by this test: finite but huge poses/obstacles overflowed to inf when interpolated
# or brought into the ego frame (Obstacle then raised ValueError inside the controller's
# trajectory callback); the odometry buffer and obstacles_from_msg now bound them
@example(odoms=[_odometry(Time(sec=1), 1e308, -1e308, 0.0, 1.0, 1e308, 0.0),
                _odometry(Time(sec=2), -1e308, 1e308, 1.0, 0.0, -1e308, 0.0)],
         obs=[_obstacle(1e308, -1e308, 0.0, 4.0, 2.0, 1e308, 1)], query_s=1.5)
def test_odometry_and_obstacles_to_the_plan_frame(odoms: list[Odometry], obs: list[Obstacle],
                                                  query_s: float) -> None:
    """The controller's path: odometry buffer -> pose at the plan stamp -> obstacles there."""
    buffer = OdometryBuffer()
    for msg in odoms:
        pose = odometry_to_pose(msg)  # never raises
        if buffer.add(pose):
            assert _finite(pose.x_m, pose.y_m, pose.heading_rad, pose.speed_mps)
    array = ObstacleArray(obstacles=obs)
    array.header.stamp = Time(sec=1)
    try:
        core_obstacles, _ = obstacles_from_msg(array)
    except ValueError:
        core_obstacles = None  # the node discards the message (documented)
    stamp_ns = int(query_s * S)
    pose = buffer.pose_at(stamp_ns)
    if pose is None:
        return
    assert _finite(pose.x_m, pose.y_m, pose.heading_rad, pose.speed_mps)
    history = buffer.history_at(stamp_ns)
    assert history is not None and np.all(np.isfinite(history.poses))
    if core_obstacles is not None:
        in_frame = obstacles_in_frame(core_obstacles, pose.x_m, pose.y_m, pose.heading_rad)
        assert len(in_frame) == len(core_obstacles)
        core = ControllerCore()
        plan = Trajectory.from_controls(np.zeros(64), np.zeros(64), v0_mps=10.0,
                                        stamp_ns=stamp_ns)
        core.submit_plan(plan, stamp_ns, obstacles=in_frame, obstacles_stamp_ns=stamp_ns)
        core.update_obstacles(in_frame, stamp_ns, stamp_ns)
        command, _ = core.step(stamp_ns + 20_000_000, ego_speed_mps=10.0)
        assert _finite(command.acceleration_mps2, command.curvature_per_m)


@FUZZ
@given(lon=st.text(max_size=30), lat=st.text(max_size=30), text=st.text(max_size=200),
       comps=st.lists(st.builds(CriticalComponent, type=st.integers(0, 255),
                                uncertainty=st.integers(0, 255), id=st.text(max_size=5),
                                description=st.text(max_size=20)), max_size=4),
       pos=any_float)
def test_reasoning_round_trip(lon: str, lat: str, text: str, comps: list, pos: float) -> None:
    for comp in comps:
        comp.position.x = pos
    msg = Reasoning(longitudinal_decision=lon, lateral_decision=lat, text=text,
                    critical_components=comps)
    again = coc_to_reasoning_msg(reasoning_msg_to_coc(msg), stamp_ns=5)
    assert (again.longitudinal_decision, again.lateral_decision, again.text) == (lon, lat, text)
    assert [(c.type, c.uncertainty, c.id) for c in again.critical_components] == [
        (c.type, c.uncertainty, c.id) for c in comps]
