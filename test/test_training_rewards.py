"""RL rewards on hand-built cases: reasoning critic, consistency, trajectory, combiner."""

from __future__ import annotations

import numpy as np
import pytest

from alpamayo_ros.sample import CocLabel, CriticalComponentLabel
from alpamayo_ros.taxonomy import ComponentType as CT
from alpamayo_ros.training.rewards import (
    COMFORT_CHECKS,
    CriticConfig,
    TrajectoryRewardConfig,
    cause_mentions,
    combine_rewards,
    comfort_violations,
    consistency_reward,
    grade_reasoning,
    numbers,
    trajectory_reward,
)
from alpamayo_ros.unicycle import integrate

REF = "The red hatchback is stopped 25 m ahead, so I keep following it and stay in my lane."


def _label(text: str = REF, lon: str = "lead_obstacle_following", lat: str = "lane_keeping",
           components: list | None = None) -> CocLabel:
    if components is None:
        components = [CriticalComponentLabel(int(CT.CRITICAL_OBJECT), 0, "agent_3",
                                             "the red hatchback is stopped 25 m ahead",
                                             (27.0, 0.5, 0.0))]
    return CocLabel(lon, lat, components, text)


def test_mentions_and_numbers():
    got = cause_mentions("The grey sedan ahead brakes; the signal is amber, a stop sign and "
                         "a school zone with a 30 km/h limit; my lane ends in 80 m.")
    assert got == {"kind:car", "colour:grey", "light:yellow", "control:stop_sign",
                   "event:school_zone", "lane_end"}
    assert numbers("cruise at 50 km/h, 12.5 m ahead, 3 mph, 2 m/s^2") == [(50.0, "km/h"),
                                                                          (12.5, "m")]


@pytest.mark.parametrize("text, score", [
    (REF, 5.0),  # the reference itself
    ("A red car has stopped about 27 m ahead; I will keep following it and stay in my lane.",
     5.0),  # synonyms, a distance within tolerance
    ("Hello world.", 0.0),  # unparseable
    ("", 0.0),
    ("I keep following it and stay in my lane.", 3.0),  # decisions, no cause
    ("The blue truck is stopped 25 m ahead, so I keep following it and stay in my lane.",
     2.0),  # invented kind and colour: -0.5 each, no cause recall
    ("The red car is stopped 80 m ahead, so I keep following it and stay in my lane.",
     4.5),  # wrong number
    ("The red car is stopped 25 m ahead, so I yield to it and stay in my lane.",
     4.0),  # wrong longitudinal decision
    ("The red car is stopped 25 m ahead, so I keep following it.", 4.0),  # lateral missing
    ("The red car is stopped, so I keep following it and I yield to it.", 0.0),  # ambiguous
])
def test_reasoning_critic_rubric(text, score):
    grade = grade_reasoning(text, _label())
    assert grade.score == pytest.approx(score)
    assert 0.0 <= grade.score <= 5.0


def test_reasoning_critic_details_light_direction_and_clip():
    label = _label("The traffic light 40 m ahead has turned red, so I stop at the stop line.",
                   "stop_for_static_constraint", "",
                   [CriticalComponentLabel(int(CT.TRAFFIC_LIGHT), 0, "tl_1",
                                           "the light ahead is red", (40.0, 0.0, 0.0))])
    wrong_light = grade_reasoning("The signal ahead is green, so I stop at the stop line.",
                                  label)
    assert wrong_light.invented == ("light:green",) and wrong_light.cause_recall == 0.0
    assert wrong_light.score == pytest.approx(2.0 + 0.0 + 0.5)
    # Lateral direction must match the label's.
    lc = _label("The slow bus ahead is only doing 20 km/h, so I change into the left lane.",
                "", "lane_change",
                [CriticalComponentLabel(int(CT.CRITICAL_OBJECT), 0, "a", "the slow bus", )])
    right = grade_reasoning("The bus ahead is only doing 20 km/h, so I change into the "
                            "right lane.", lc)
    left = grade_reasoning("The bus ahead is only doing 20 km/h, so I change into the "
                           "left lane.", lc)
    assert not right.lateral_ok and left.lateral_ok
    assert left.score - right.score == pytest.approx(1.0)
    # Ego speed is a reference for speeds; a far-off speed is wrong.
    cruise = _label("The road ahead is free, so I keep cruising and stay in my lane.",
                    "set_speed_tracking", "lane_keeping", [])
    assert grade_reasoning("I keep cruising at 50 km/h and stay in my lane.", cruise,
                           ego_speed_mps=13.9).wrong_numbers == ()
    assert grade_reasoning("I keep cruising at 90 km/h and stay in my lane.", cruise,
                           ego_speed_mps=13.9).wrong_numbers == ("90 km/h",)
    # Many hallucinations cannot push the score below 0.
    junk = grade_reasoning("A blue bus, a white van, a green truck and a pedestrian; I yield "
                           "to them.", _label())
    assert junk.score == 0.0 and len(junk.invented) >= 4
    with pytest.raises(ValueError, match="cause_points"):
        CriticConfig(cause_points=-1.0)
    with pytest.raises(ValueError, match="<= 5"):
        CriticConfig(cause_points=4.0)


def _plan(v0: float, acc: np.ndarray, curv: np.ndarray) -> np.ndarray:
    st = integrate(acc, curv, v0)
    return np.stack([st.x_m, st.y_m, st.heading_rad], axis=1)


def test_consistency_reward():
    straight = _plan(10.0, np.zeros(64), np.zeros(64))
    assert consistency_reward("I keep cruising and stay in my lane.", straight, 10.0) == 1.0
    # Holding speed does not stop at the line: the longitudinal axis fails.
    assert consistency_reward("I stop at the stop line and stay in my lane.", straight,
                              10.0) == 0.5
    assert consistency_reward("Nothing to say.", straight, 10.0) == 0.0
    bad = straight.copy()
    bad[5, 0] = np.nan
    assert consistency_reward("I keep cruising.", bad, 10.0) == 0.0
    # A lane change to the left that the plan makes to the right.
    y = np.clip(np.arange(1, 65) * 0.1 - 1.0, 0.0, 3.5)
    right = np.stack([10.0 * np.arange(1, 65) * 0.1, -y, np.zeros(64)], axis=1)
    assert consistency_reward("I change into the left lane.", right, 10.0) == 0.5
    assert consistency_reward("I change into the right lane.", right, 10.0) == 1.0


def test_trajectory_reward_l2_fail_comfort_collision():
    v0, zeros = 10.0, np.zeros((64, 2))
    expert = _plan(v0, zeros[:, 0], zeros[:, 1])
    same = trajectory_reward(zeros, expert, expert, v0)
    assert same.ade_m == 0.0 and same.comfort == 1.0 and not same.collided
    assert same.reward == pytest.approx(0.4 + 0.1)
    shifted = expert.copy()
    shifted[:, 1] += 1.0  # 1 m off everywhere: MSD 1 m^2
    off = trajectory_reward(zeros, shifted, expert, v0)
    assert off.ade_m == pytest.approx(1.0)
    assert off.reward == pytest.approx(0.4 * (1.0 - 1.0 / 9.0) + 0.1)
    shifted[:, 1] += 2.5  # ADE 3.5 m >= 3 m: the release's -1
    assert trajectory_reward(zeros, shifted, expert, v0).reward == -1.0
    nan = expert.copy()
    nan[3, 0] = np.nan
    assert trajectory_reward(zeros, nan, expert, v0).reward == -1.0
    # Jerky controls: alternating +-2 m/s^2 breaks the jerk bounds.
    jerky = np.zeros((64, 2))
    jerky[:, 0] = np.where(np.arange(64) % 2, 2.0, -2.0)
    jerky_plan = _plan(v0, jerky[:, 0], jerky[:, 1])
    score = trajectory_reward(jerky, jerky_plan, jerky_plan, v0)
    assert {"jerk_mps3", "longitudinal_jerk_mps3"} <= set(score.comfort_violations)
    assert score.comfort < 1.0 and score.reward < same.reward
    # Hard braking beyond -4.05 m/s^2 is uncomfortable; gentle driving is not.
    brake = np.zeros((64, 2))
    brake[:, 0] = -6.0
    assert "min_longitudinal_accel_mps2" in comfort_violations(brake, v0)
    assert comfort_violations(zeros, v0) == []
    assert len(COMFORT_CHECKS) == 7
    # A stopped car 30 m ahead is hit at 10 m/s; one in the next lane is not.
    boxes = np.full((64, 2, 5), np.nan)
    boxes[:, 0] = (30.0, 0.0, 0.0, 4.6, 1.9)
    coll = trajectory_reward(zeros, expert, expert, v0, boxes)
    assert coll.collided and coll.collision_step > 0
    assert coll.reward == pytest.approx(same.reward - 1.0)
    boxes[:, 0, 1] = 3.5
    assert not trajectory_reward(zeros, expert, expert, v0, boxes).collided
    cfg = TrajectoryRewardConfig(l2_weight=1.0, comfort_weight=0.0, collision_weight=0.0)
    assert trajectory_reward(zeros, expert, expert, v0, config=cfg).reward == 1.0
    with pytest.raises(ValueError, match="ade_fail_m"):
        TrajectoryRewardConfig(ade_fail_m=0.0)
    with pytest.raises(ValueError, match="steps"):
        trajectory_reward(zeros, expert[:10], expert, v0)


def test_combine_rewards():
    comps = {"reasoning": 5.0, "consistency": 0.5, "trajectory": -1.0}
    assert combine_rewards(comps, {"reasoning": 1.0, "consistency": 1.0,
                                   "trajectory": 1.0}) == pytest.approx(0.5)
    assert combine_rewards({"reasoning": 2.5}, {"reasoning": 2.0, "trajectory": 0.0}) == 1.0
    with pytest.raises(KeyError):
        combine_rewards({"reasoning": 2.5}, {"trajectory": 1.0})
    with pytest.raises(ValueError, match="unknown reward"):
        combine_rewards(comps, {"style": 1.0})


def test_every_reference_trace_of_the_data_engine_grades_five():
    """The expert's own traces (phrased independently of their components) score 5/5."""
    from alpamayo_ros.data.coc import label_episode
    from alpamayo_ros.data.scenarios import FAMILIES, simulate

    count = 0
    for family, make in FAMILIES.items():
        episode = simulate(make(np.random.default_rng(0)))
        for kf in label_episode(episode):
            v = episode.frames[kf.index].ego.v_mps
            grade = grade_reasoning(kf.label.text, kf.label, v)
            assert grade.score == 5.0, (family, kf.label.text, grade)
            count += 1
    assert count >= len(FAMILIES)
