"""Tests of alpamayo_ros.eval.scene: true agent boxes from episodes and plan collisions."""

import math

import numpy as np
import pytest

from alpamayo_ros.data.coc import ego_future
from alpamayo_ros.eval.scene import agents_future_boxes, episode_for, plan_collides


def _straight_plan(steps: int = 64, speed: float = 10.0, y: float = 0.0) -> np.ndarray:
    t = np.arange(1, steps + 1) * 0.1
    return np.stack([speed * t, np.full(steps, y), np.zeros(steps)], axis=1)


def test_plan_through_a_box_collides_at_the_first_overlap():
    plan = _straight_plan()  # x = 1.0 t: reaches x = 30 at step 29 (t = 3.0 s)
    boxes = np.full((64, 1, 5), np.nan)
    boxes[:, 0] = (35.0, 0.0, 0.0, 4.0, 2.0)  # static car 35 m ahead, spans x 33..37
    hit, step = plan_collides(plan, boxes)
    # ego front (x + 2.4) first reaches 33 when x >= 30.6: step 30 (x = 31.0)
    assert hit and step == 30


def test_plan_beside_a_box_is_clear_and_touching_counts():
    plan = _straight_plan()
    boxes = np.full((64, 1, 5), np.nan)
    boxes[:, 0] = (35.0, 3.0, 0.0, 4.0, 2.0)  # next lane: gap 3.0 - 1.0 - 0.95 = 1.05 m
    assert plan_collides(plan, boxes) == (False, -1)
    boxes[:, 0, 1] = 1.95  # edges touch exactly
    assert plan_collides(plan, boxes)[0]


def test_rotated_box_and_absent_agents():
    plan = _straight_plan(speed=0.0)  # parked at the origin
    boxes = np.full((64, 2, 5), np.nan)
    # a long box beside the ego that only reaches it when turned across its path
    boxes[:, 0] = (0.0, 3.5, 0.0, 6.0, 1.0)
    assert not plan_collides(plan, boxes)[0]
    boxes[10:, 0, 2] = math.pi / 2
    assert plan_collides(plan, boxes) == (True, 10)
    # an agent absent (NaN) where it would overlap does not count
    boxes[:, 0] = np.nan
    boxes[:5, 1] = (0.0, 0.0, 0.0, 1.0, 1.0)
    boxes[:5, 1, 0] = np.nan
    assert plan_collides(plan, boxes) == (False, -1)
    assert plan_collides(plan, np.zeros((64, 0, 5))) == (False, -1)


def test_plan_collides_validates_shapes():
    with pytest.raises(ValueError, match="plan_xyh"):
        plan_collides(np.zeros((64, 2)), np.zeros((64, 1, 5)))
    with pytest.raises(ValueError, match="boxes"):
        plan_collides(np.zeros((64, 3)), np.zeros((63, 1, 5)))
    with pytest.raises(ValueError, match="NaN"):
        plan_collides(np.full((64, 3), np.nan), np.zeros((64, 1, 5)))


def test_episode_for_is_cached_and_deterministic():
    a = episode_for("follow_lead", 3)
    assert episode_for("follow_lead", 3) is a
    b = episode_for.__wrapped__("follow_lead", 3)
    assert np.array_equal(a.ego_xyhv(), b.ego_xyhv())


def test_agent_boxes_are_in_the_ego_frame_at_the_plan_times():
    ep = episode_for("follow_lead", 3)
    index = 50
    boxes = agents_future_boxes(ep, index)
    assert boxes.shape == (64, len(ep.frames[0].agents), 5)
    origin = ep.frames[index].ego
    lead = ep.frames[index + 1 + 10].agents[0]
    # distance is frame invariant; heading relative to the ego's
    dist = math.hypot(lead.x - origin.x, lead.y - origin.y)
    assert math.hypot(*boxes[10, 0, :2]) == pytest.approx(dist)
    assert boxes[10, 0, 2] == pytest.approx(
        math.remainder(lead.heading - origin.heading, math.tau), abs=1e-9)
    assert tuple(boxes[10, 0, 3:]) == (lead.length_m, lead.width_m)
    assert boxes[10, 0, 0] > 0  # the lead is ahead
    # past the episode's end the boxes are NaN
    late = agents_future_boxes(ep, len(ep.frames) - 10)
    assert np.all(np.isfinite(late[:9])) and np.all(np.isnan(late[9:]))
    with pytest.raises(ValueError, match="index"):
        agents_future_boxes(ep, len(ep.frames))


@pytest.mark.parametrize("family", ["follow_lead", "cut_in", "crosswalk_yield", "nudge_in_lane"])
def test_expert_future_is_collision_free_and_a_plan_into_the_lead_is_not(family):
    ep = episode_for(family, 1)
    for index in range(20, len(ep.frames) - 64, 10):
        assert plan_collides(ego_future(ep, index), agents_future_boxes(ep, index)) == (False, -1)
    if family == "follow_lead":
        index = 40
        boxes = agents_future_boxes(ep, index)
        # a plan that holds twice the expert's distance runs into the lead
        rammed = ego_future(ep, index) * np.array([2.0, 1.0, 1.0])
        hit, step = plan_collides(rammed, boxes)
        assert hit and step > 0
