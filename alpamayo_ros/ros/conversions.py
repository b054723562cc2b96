"""Conversions between core types and ROS messages (trajectories, reasoning, RViz views).

Core -> message: :func:`trajectory_to_msg`, :func:`coc_to_reasoning_msg`,
:func:`trajectory_to_path`, :func:`plan_markers`, :func:`command_to_msg`,
:func:`controller_status_to_msg`. Message -> core: :func:`msg_to_trajectory`,
:func:`reasoning_msg_to_coc`, :func:`obstacles_from_msg`, :func:`odometry_to_pose`.
Stamps are integer nanoseconds in the core and ``builtin_interfaces/Time`` in messages.

Errors (all ValueError, naming the value): message -> core, a trajectory without points
and obstacles that cannot be checked against (non-finite, negative size, beyond the
odometry buffer's plausibility bounds); core -> message, a value the message type cannot
hold (a negative stamp, a non-finite or out-of-range ``time_from_start``). Non-finite
plan values (x, y, heading, ...) pass through both ways, for the safety monitor to reject.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, PoseStamped, Quaternion
from nav_msgs.msg import Odometry, Path
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from alpamayo_ros.control.core import ControllerStatus
from alpamayo_ros.control.fallback import Command
from alpamayo_ros.msg import (
    ControlCommand,
    CriticalComponent,
    ObstacleArray,
    Reasoning,
    SafetyCheck,
    SafetyStatus,
    TrajectoryPoint,
    TrajectorySample,
)
from alpamayo_ros.msg import Trajectory as TrajectoryMsg
from alpamayo_ros.safety.collision import Obstacle, ObstacleClass
from alpamayo_ros.sample import CocLabel, CriticalComponentLabel
from alpamayo_ros.sync.odometry import MAX_ABS_POSITION_M, MAX_ABS_SPEED_MPS, EgoPose
from alpamayo_ros.trajectory import Trajectory

_INT32_MAX = 2**31 - 1


def time_from_ns(stamp_ns: int) -> Time:
    """``builtin_interfaces/Time`` from integer nanoseconds (0 .. 2^31 s)."""
    if stamp_ns < 0:
        raise ValueError(f"stamp_ns must be >= 0, got {stamp_ns}")
    if stamp_ns // 10**9 > _INT32_MAX:
        raise ValueError(f"stamp_ns {stamp_ns} is beyond builtin_interfaces/Time (int32 s)")
    return Time(sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))


def ns_from_time(stamp: Time) -> int:
    """Integer nanoseconds from ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 10**9 + int(stamp.nanosec)


def _duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9)) if math.isfinite(seconds) else None
    if ns is None or not -_INT32_MAX - 1 <= ns // 10**9 <= _INT32_MAX:
        raise ValueError(f"time_from_start {seconds!r} s cannot be a "
                         "builtin_interfaces/Duration (finite, int32 seconds)")
    return Duration(sec=ns // 10**9, nanosec=ns % 10**9)


def _points(traj: Trajectory) -> list[TrajectoryPoint]:
    return [
        TrajectoryPoint(
            time_from_start=_duration(float(t)), x=float(x), y=float(y), heading=float(h),
            velocity=float(v), acceleration=float(a), curvature=float(k))
        for t, x, y, h, v, a, k in zip(
            traj.time_s, traj.x_m, traj.y_m, traj.heading_rad, traj.velocity_mps,
            traj.acceleration_mps2, traj.curvature_per_m)
    ]


def trajectory_to_msg(
    traj: Trajectory,
    samples: Sequence[Trajectory] = (),
    sample_scores: Sequence[float] | None = None,
) -> TrajectoryMsg:
    """``alpamayo_ros/Trajectory`` stamped with the plan's camera time ``traj.stamp_ns``."""
    msg = TrajectoryMsg()
    msg.header = Header(stamp=time_from_ns(traj.stamp_ns), frame_id=traj.frame_id)
    msg.model_id, msg.model_version = traj.model_id, traj.model_version
    msg.points = _points(traj)
    scores = list(sample_scores) if sample_scores is not None else [math.nan] * len(samples)
    msg.samples = [TrajectorySample(points=_points(s), score=float(score))
                   for s, score in zip(samples, scores)]
    msg.inference_time_s = float(traj.inference_time_s)
    return msg


def msg_to_trajectory(msg: TrajectoryMsg) -> Trajectory:
    """Core :class:`Trajectory` from a message; NaN values are kept for the safety monitor."""
    if not msg.points:
        raise ValueError("trajectory message has no points")
    columns = np.array([
        (p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, p.x, p.y, p.heading,
         p.velocity, p.acceleration, p.curvature)
        for p in msg.points
    ], dtype=np.float64).T
    return Trajectory(
        stamp_ns=ns_from_time(msg.header.stamp), time_s=columns[0], x_m=columns[1],
        y_m=columns[2], heading_rad=columns[3], velocity_mps=columns[4],
        acceleration_mps2=columns[5], curvature_per_m=columns[6],
        frame_id=msg.header.frame_id, model_id=msg.model_id, model_version=msg.model_version,
        inference_time_s=float(msg.inference_time_s))


def trajectory_to_path(traj: Trajectory) -> Path:
    """``nav_msgs/Path`` of the plan (origin first), for RViz/Foxglove."""
    header = Header(stamp=time_from_ns(traj.stamp_ns), frame_id=traj.frame_id)
    path = Path(header=header)
    xs = np.concatenate([[0.0], traj.x_m])
    ys = np.concatenate([[0.0], traj.y_m])
    hs = np.concatenate([[0.0], traj.heading_rad])
    for x, y, h in zip(xs, ys, hs):
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y = float(x), float(y)
        pose.pose.orientation = quaternion_from_yaw(float(h))
        path.poses.append(pose)
    return path


PLAN_COLOR = ColorRGBA(r=0.1, g=0.8, b=0.3, a=1.0)
SAMPLE_COLOR = ColorRGBA(r=0.3, g=0.6, b=1.0, a=0.5)
TEXT_COLOR = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)


def _line(traj: Trajectory, header: Header, ns: str, marker_id: int, color: ColorRGBA,
          width_m: float) -> Marker:
    marker = Marker(header=header, ns=ns, id=marker_id, type=Marker.LINE_STRIP,
                    action=Marker.ADD, color=color)
    marker.pose.orientation.w = 1.0
    marker.scale.x = width_m
    marker.points = [Point(x=0.0, y=0.0, z=0.05)] + [
        Point(x=float(x), y=float(y), z=0.05) for x, y in zip(traj.x_m, traj.y_m)]
    return marker


def plan_markers(
    traj: Trajectory,
    reasoning_text: str = "",
    samples: Sequence[Trajectory] = (),
    wrap_chars: int = 60,
) -> MarkerArray:
    """RViz markers: the plan as a line strip, optional samples, the reasoning as text."""
    header = Header(stamp=time_from_ns(traj.stamp_ns), frame_id=traj.frame_id)
    markers = [_line(traj, header, "alpamayo/plan", 0, PLAN_COLOR, 0.3)]
    markers += [_line(s, header, "alpamayo/samples", i, SAMPLE_COLOR, 0.1)
                for i, s in enumerate(samples)]
    text = Marker(header=header, ns="alpamayo/reasoning", id=0,
                  type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, color=TEXT_COLOR)
    text.pose.position.z = 3.0
    text.pose.orientation.w = 1.0
    text.scale.z = 0.6
    text.text = _wrap(reasoning_text, wrap_chars) if reasoning_text else "(no reasoning)"
    markers.append(text)
    return MarkerArray(markers=markers)


def _wrap(text: str, width: int) -> str:
    lines, current = [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return "\n".join(lines + [current])


def coc_to_reasoning_msg(coc: CocLabel, stamp_ns: int, frame_id: str = "") -> Reasoning:
    """``alpamayo_ros/Reasoning`` from a core CoC label."""
    msg = Reasoning(header=Header(stamp=time_from_ns(stamp_ns), frame_id=frame_id))
    msg.longitudinal_decision = coc.longitudinal_decision
    msg.lateral_decision = coc.lateral_decision
    msg.text = coc.text
    msg.longitudinal_meta_action = coc.longitudinal_meta_action
    msg.lateral_meta_action = coc.lateral_meta_action
    for comp in coc.components:
        item = CriticalComponent(type=int(comp.type), uncertainty=int(comp.uncertainty),
                                 id=comp.id, description=comp.description)
        item.position.x, item.position.y, item.position.z = (float(v) for v in comp.position_m)
        msg.critical_components.append(item)
    return msg


def reasoning_msg_to_coc(msg: Reasoning) -> CocLabel:
    """Core CoC label from a ``Reasoning`` message."""
    return CocLabel(
        longitudinal_decision=msg.longitudinal_decision,
        lateral_decision=msg.lateral_decision,
        components=[CriticalComponentLabel(
            type=c.type, uncertainty=c.uncertainty, id=c.id, description=c.description,
            position_m=(c.position.x, c.position.y, c.position.z))
            for c in msg.critical_components],
        text=msg.text,
        longitudinal_meta_action=msg.longitudinal_meta_action,
        lateral_meta_action=msg.lateral_meta_action,
    )


def command_to_msg(command: Command, frame_id: str = "base_link") -> ControlCommand:
    """``alpamayo_ros/ControlCommand`` from the controller core's command."""
    return ControlCommand(
        header=Header(stamp=time_from_ns(command.stamp_ns), frame_id=frame_id),
        acceleration=float(command.acceleration_mps2), curvature=float(command.curvature_per_m),
        velocity=float(command.velocity_mps), source=int(command.source),
        plan_stamp=time_from_ns(command.plan_stamp_ns))


def controller_status_to_msg(status: ControllerStatus) -> SafetyStatus:
    """``alpamayo_ros/SafetyStatus`` from the controller core's status."""
    return SafetyStatus(
        header=Header(stamp=time_from_ns(status.stamp_ns)), state=int(status.state),
        failed_checks=list(status.failed_checks),
        checks=[SafetyCheck(name=c.name, passed=bool(c.passed), value=float(c.value),
                            limit=float(c.limit)) for c in status.checks],
        active_plan_stamp=time_from_ns(status.active_plan_stamp_ns),
        policy_silence_s=float(status.policy_silence_s), reason=status.reason)


def yaw_from_quaternion(q: Quaternion) -> float:
    """Yaw (rad) of a ``geometry_msgs/Quaternion``."""
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def quaternion_from_yaw(yaw_rad: float) -> Quaternion:
    """``geometry_msgs/Quaternion`` of a rotation about z (NaN for a non-finite yaw)."""
    if not math.isfinite(yaw_rad):
        return Quaternion(x=0.0, y=0.0, z=math.nan, w=math.nan)
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw_rad / 2.0), w=math.cos(yaw_rad / 2.0))


def odometry_to_pose(msg: Odometry) -> EgoPose:
    """Ego pose (map frame) from ``nav_msgs/Odometry``.

    Yaw comes from the quaternion, speed from the body-frame linear twist (negative when
    ``linear.x`` is).
    """
    v = msg.twist.twist.linear
    speed = math.hypot(v.x, v.y) * (1.0 if v.x >= 0 else -1.0)
    p = msg.pose.pose.position
    return EgoPose(ns_from_time(msg.header.stamp), float(p.x), float(p.y),
                   yaw_from_quaternion(msg.pose.pose.orientation), speed)


def obstacles_from_msg(msg: ObstacleArray) -> tuple[list[Obstacle], int]:
    """Core obstacles (in ``msg.header.frame_id``) and their stamp in ns.

    An obstacle with a non-finite or negative size, pose or velocity, or a position or
    speed beyond the odometry buffer's plausibility bounds (which would overflow when
    brought into the ego frame), cannot be checked against: it raises ValueError naming it
    (the caller decides the safe behaviour).
    """
    out = []
    for ob in msg.obstacles:
        p, v = ob.pose.position, ob.velocity
        if max(abs(p.x), abs(p.y)) > MAX_ABS_POSITION_M:
            raise ValueError(f"obstacle {ob.id!r}: position ({p.x}, {p.y}) m is beyond "
                             f"{MAX_ABS_POSITION_M:g} m")
        if max(abs(v.x), abs(v.y)) > MAX_ABS_SPEED_MPS:
            raise ValueError(f"obstacle {ob.id!r}: velocity ({v.x}, {v.y}) m/s is beyond "
                             f"{MAX_ABS_SPEED_MPS:g} m/s")
        try:
            cls = ObstacleClass(ob.classification)
        except ValueError:
            cls = ObstacleClass.UNKNOWN
        p = ob.pose.position
        out.append(Obstacle(
            x_m=float(p.x), y_m=float(p.y), yaw_rad=yaw_from_quaternion(ob.pose.orientation),
            length_m=float(ob.size.x), width_m=float(ob.size.y), vx_mps=float(ob.velocity.x),
            vy_mps=float(ob.velocity.y), height_m=float(ob.size.z), id=ob.id,
            classification=cls))
    return out, ns_from_time(msg.header.stamp)


SAFETY_COLORS = (ColorRGBA(r=0.2, g=0.9, b=0.2, a=1.0),  # OK
                 ColorRGBA(r=1.0, g=0.8, b=0.1, a=1.0),  # DEGRADED
                 ColorRGBA(r=1.0, g=0.2, b=0.2, a=1.0))  # FALLBACK


def safety_markers(status: ControllerStatus, frame_id: str = "base_link") -> MarkerArray:
    """The safety state as a coloured text above the ego (RViz has no SafetyStatus view)."""
    header = Header(stamp=time_from_ns(status.stamp_ns), frame_id=frame_id)
    state = int(status.state)
    text = Marker(header=header, ns="alpamayo/safety", id=0, type=Marker.TEXT_VIEW_FACING,
                  action=Marker.ADD, color=SAFETY_COLORS[min(max(state, 0), 2)])
    text.pose.position.z = 5.0
    text.pose.orientation.w = 1.0
    text.scale.z = 0.8
    text.text = f"{status.state.name}: {_wrap(status.reason, 60)}"
    return MarkerArray(markers=[text])
