"""CoC <-> trajectory consistency checker (reused by training and evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from alpamayo_ros.data.consistency import (
    MetaActionConfig,
    consistency_score,
    meta_actions_from_trajectory,
    parse_reasoning,
)
from alpamayo_ros.sample import CocLabel
from alpamayo_ros.unicycle import integrate

T = 64


def traj(accel: float = 0.0, curvature=0.0, v0: float = 10.0) -> np.ndarray:
    a = np.full(T, accel)
    k = np.broadcast_to(np.asarray(curvature, float), (T,)).copy()
    st = integrate(a, k, v0, allow_reverse=accel < 0 and v0 <= 0)
    return np.stack([st.x_m, st.y_m, st.heading_rad], axis=1)


def lane_change(direction: float = 1.0, v0: float = 12.0) -> np.ndarray:
    t = np.arange(1, T + 1) * 0.1
    y = direction * 3.5 / (1 + np.exp(-(t - 2.5) * 2.5))
    return np.stack([v0 * t, y], axis=1)


@pytest.mark.parametrize("accel,v0,expected", [
    (0.0, 10.0, "maintain_speed"), (0.8, 5.0, "gentle_accelerate"),
    (2.2, 3.0, "strong_accelerate"), (-1.0, 12.0, "gentle_decelerate"),
    (-3.5, 14.0, "stop"), (-3.0, 30.0, "strong_decelerate"), (0.0, 0.0, "stop"),
])
def test_longitudinal_meta_actions(accel, v0, expected):
    assert meta_actions_from_trajectory(traj(accel, 0.0, v0), v0).longitudinal == expected


def test_reverse_and_lateral_meta_actions():
    back = -traj(0.0, 0.0, 2.0)[:, :2]
    assert meta_actions_from_trajectory(back, -2.0).longitudinal == "reverse"
    assert meta_actions_from_trajectory(traj(), 10.0).lateral == "go_straight"
    assert meta_actions_from_trajectory(lane_change(1.0)).lateral == "steer_left"
    assert meta_actions_from_trajectory(lane_change(-1.0)).lateral == "steer_right"
    assert meta_actions_from_trajectory(traj(0, 1 / 15.0, 6.0), 6.0).lateral == \
        "sharp_steer_left"
    assert meta_actions_from_trajectory(traj(0, -1 / 12.0, 5.0), 5.0).lateral == \
        "sharp_steer_right"


def test_started_lane_change_still_reads_as_its_side():
    # Ego frame taken halfway through a left lane change: heading already turned left.
    full = lane_change(1.0)
    i = 22
    h = np.arctan2(full[i + 1, 1] - full[i - 1, 1], full[i + 1, 0] - full[i - 1, 0])
    rel = full[i + 1:] - full[i]
    c, s = np.cos(h), np.sin(h)
    ego = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]], axis=1)
    assert meta_actions_from_trajectory(ego).lateral == "steer_left"


def test_manoeuvre_starting_at_the_horizon_end_does_not_turn_the_reference():
    # Out to the left and back (an aborted lane change), then, in the last 0.6 s, the
    # start of a new one: the final heading points left, the road still goes straight.
    t = np.arange(1, T + 1) * 0.1
    y = 1.4 * np.exp(-(((t - 1.7) / 1.0) ** 2)) + np.where(t > 5.8, 0.8 * (t - 5.8) ** 2, 0.0)
    x = 12.0 * t
    heading = np.arctan2(np.gradient(y, t), 12.0)
    assert heading[-1] > 0.07
    meta = meta_actions_from_trajectory(np.stack([x, y, heading], axis=1), 12.0)
    assert meta.lateral == "steer_left"


def test_parser_recognises_each_channel_and_direction():
    p = parse_reasoning("The route goes left ahead, so I change into the left lane. "
                        "I keep cruising at 50 km/h.")
    assert (p.longitudinal, p.lateral, p.lateral_direction) == (
        "set_speed_tracking", "lane_change", "left")
    assert parse_reasoning("Because the light is red, I stop at the stop line.").lateral == ""
    assert not parse_reasoning("The weather is nice today.").parseable
    assert not parse_reasoning("I follow it and also cruise.").parseable  # ambiguous
    assert not parse_reasoning(None).parseable  # type: ignore[arg-type]


def test_consistency_score_rules():
    straight_stop = traj(-3.0, 0.0, 10.0)
    assert consistency_score("The light is red, so I stop at the stop line. I stay in my lane.",
                             straight_stop, 10.0) == 1.0
    # Lateral contradiction: says turn left, drives straight.
    assert consistency_score("I stop at the stop line and turn left.", straight_stop,
                             10.0) == 0.5
    # Both axes wrong: says accelerate past it while changing right, brakes straight.
    assert consistency_score("I speed up to pass it and move over to the right lane.",
                             straight_stop, 10.0) == 0.0
    assert consistency_score("gibberish", straight_stop, 10.0) == 0.0
    # Direction matters: a left lane change is not a right one.
    lc = lane_change(1.0)
    assert consistency_score("I change into the left lane and keep cruising.", lc) == 1.0
    assert consistency_score("I change into the right lane and keep cruising.", lc) == 0.5


def test_consistency_accepts_structured_labels():
    lc = lane_change(-1.0)
    label = CocLabel("set_speed_tracking", "lane_change", [], "I move over to the right lane.")
    assert consistency_score(label, lc) == 1.0
    assert consistency_score(label, traj()) == 0.5  # drives straight: lateral fails
    empty = CocLabel("", "", [], "")
    assert consistency_score(empty, lc) == 0.0  # nothing to check: unparseable


def test_bad_inputs():
    with pytest.raises(ValueError, match="trajectory"):
        meta_actions_from_trajectory(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        meta_actions_from_trajectory(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="gentle_accel_mps2"):
        MetaActionConfig(gentle_accel_mps2=2.0)
    with pytest.raises(ValueError, match="reference_window_s"):
        MetaActionConfig(reference_window_s=0.0)
