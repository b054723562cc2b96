"""Core trajectory/reasoning <-> ROS message conversions."""

import math

import numpy as np
import pytest
from visualization_msgs.msg import Marker

from alpamayo_ros.ros.conversions import (
    coc_to_reasoning_msg,
    msg_to_trajectory,
    ns_from_time,
    plan_markers,
    reasoning_msg_to_coc,
    time_from_ns,
    trajectory_to_msg,
    trajectory_to_path,
)
from alpamayo_ros.sample import CocLabel, CriticalComponentLabel
from alpamayo_ros.taxonomy import ComponentType, LateralDecision, LongitudinalDecision, Uncertainty
from alpamayo_ros.trajectory import Trajectory

STAMP_NS = 1_700_000_123_456_789_012


def plan(stamp_ns: int = STAMP_NS) -> Trajectory:
    t = 0.1 * np.arange(64)
    return Trajectory.from_controls(-0.5 * np.ones(64), 0.02 * np.sin(t), 9.0, stamp_ns=stamp_ns,
                                    frame_id="base_link", model_id="tiny", model_version="1")


def test_time_round_trip_and_negative_rejected() -> None:
    assert ns_from_time(time_from_ns(STAMP_NS)) == STAMP_NS
    with pytest.raises(ValueError, match="stamp_ns"):
        time_from_ns(-1)


def test_trajectory_round_trip_keeps_every_field_and_the_camera_stamp() -> None:
    traj = plan()
    msg = trajectory_to_msg(traj, samples=[plan(), plan()], sample_scores=[0.5, 0.25])
    assert ns_from_time(msg.header.stamp) == STAMP_NS and msg.header.frame_id == "base_link"
    assert len(msg.points) == 64 and len(msg.samples) == 2 and msg.samples[1].score == 0.25
    back = msg_to_trajectory(msg)
    assert back.stamp_ns == STAMP_NS and back.model_id == "tiny"
    for name in ("time_s", "x_m", "y_m", "heading_rad", "velocity_mps", "acceleration_mps2",
                 "curvature_per_m"):
        np.testing.assert_allclose(getattr(back, name), getattr(traj, name), atol=1e-9)


def test_nan_survives_conversion_for_the_safety_monitor() -> None:
    msg = trajectory_to_msg(plan())
    msg.points[10].x = math.nan
    assert math.isnan(msg_to_trajectory(msg).x_m[10])
    msg.points = []
    with pytest.raises(ValueError, match="no points"):
        msg_to_trajectory(msg)


def test_path_and_markers_follow_the_plan() -> None:
    traj = plan()
    path = trajectory_to_path(traj)
    assert len(path.poses) == 65 and path.header.frame_id == "base_link"
    last = path.poses[-1].pose
    assert (last.position.x, last.position.y) == pytest.approx((traj.x_m[-1], traj.y_m[-1]))
    assert 2 * math.atan2(last.orientation.z, last.orientation.w) == pytest.approx(
        traj.heading_rad[-1])
    markers = plan_markers(traj, "Slowing because the lead vehicle brakes. " * 4, [plan()])
    kinds = [m.type for m in markers.markers]
    assert kinds == [Marker.LINE_STRIP, Marker.LINE_STRIP, Marker.TEXT_VIEW_FACING]
    assert len(markers.markers[0].points) == 65
    assert "lead vehicle" in markers.markers[-1].text and "\n" in markers.markers[-1].text


def test_reasoning_round_trip() -> None:
    coc = CocLabel(
        longitudinal_decision=LongitudinalDecision.LEAD_OBSTACLE_FOLLOWING.value,
        lateral_decision=LateralDecision.LANE_KEEPING.value,
        components=[CriticalComponentLabel(ComponentType.CRITICAL_OBJECT, Uncertainty.LOW,
                                           "veh_3", "white sedan braking ahead", (12.0, 0.3, 0.0))],
        text="The white sedan 12 m ahead is braking, so I slow down and keep my lane.",
        longitudinal_meta_action="gentle_decelerate", lateral_meta_action="go_straight")
    msg = coc_to_reasoning_msg(coc, STAMP_NS, "base_link")
    assert ns_from_time(msg.header.stamp) == STAMP_NS
    back = reasoning_msg_to_coc(msg)
    assert back.text == coc.text and back.components[0].id == "veh_3"
    assert back.components[0].position_m == pytest.approx((12.0, 0.3, 0.0))
    assert back.longitudinal_decision == coc.longitudinal_decision
