"""Tests of alpamayo_ros.eval.metrics on hand-built cases."""

import numpy as np
import pytest

from alpamayo_ros.eval.metrics import (
    UNPARSEABLE,
    ConfusionTable,
    ade,
    comfort_violations,
    decision_correct,
    displacement_errors,
    fde,
    is_comfortable,
    majority_class,
    majority_decisions,
    mean_or_none,
    min_ade,
    min_fde,
    predicted_decisions,
)
from alpamayo_ros.taxonomy import LATERAL_CLASSES, LONGITUDINAL_CLASSES, decision_class_ids


def _line(speed: float = 10.0, y: float = 0.0) -> np.ndarray:
    t = np.arange(1, 65) * 0.1
    return np.stack([speed * t, np.full(64, y), np.zeros(64)], axis=1)


def test_a_plan_equal_to_the_truth_has_zero_error():
    truth = _line()
    assert ade(truth, truth) == 0.0 and fde(truth, truth) == 0.0
    assert min_ade(np.stack([_line(y=3.0), truth]), truth) == 0.0


def test_displacement_of_offset_and_slower_plans():
    truth = _line()
    assert ade(_line(y=2.0), truth) == pytest.approx(2.0)
    # 8 m/s instead of 10: error 2 t, mean over t = 0.1..6.4 is 2 * 3.25
    slow = _line(speed=8.0)
    assert ade(slow, truth) == pytest.approx(6.5)
    assert fde(slow, truth) == pytest.approx(12.8)
    plans = np.stack([_line(y=2.0), slow, _line(y=-0.5)])
    assert min_ade(plans, truth) == pytest.approx(0.5)
    assert min_fde(plans, truth) == pytest.approx(0.5)
    assert displacement_errors(plans, truth[:, :2]).shape == (3, 64)  # heading ignored


def test_displacement_shape_errors():
    with pytest.raises(ValueError):
        ade(_line()[:10], _line())
    with pytest.raises(ValueError):
        ade(np.stack([_line(), _line()]), _line())
    with pytest.raises(ValueError):
        min_ade(_line(), _line())


def test_predicted_decisions_from_text():
    text = ("A person on a bike is riding across my path from the left; I will hold back "
            "and yield to them. I stay centered in my lane.")
    assert predicted_decisions(text) == ("yield", "lane_keeping")
    assert predicted_decisions("I will hold back and yield to them.") == ("yield", "")
    # a text that names no decision is unparseable: both channels count wrong
    assert predicted_decisions("blue sky and a tree") == (None, None)
    assert not decision_correct(None, "")
    assert decision_correct("", "")
    assert not decision_correct("yield", "")


def test_confusion_table_sums_and_accuracy():
    table = ConfusionTable.longitudinal()
    cases = [("yield", "yield"), ("yield", None), ("", ""), ("yield", "gap_searching"),
             ("set_speed_tracking", "set_speed_tracking")]
    for truth, pred in cases:
        table.add(truth, pred)
    assert table.total == len(cases) == table.counts.sum()
    assert table.counts.shape == (len(LONGITUDINAL_CLASSES), len(LONGITUDINAL_CLASSES) + 1)
    assert table.accuracy() == pytest.approx(3 / 5)
    d = table.to_dict()
    assert d["columns"][-1] == UNPARSEABLE and d["rows"][0] == "none"
    row = d["rows"].index("yield")
    assert sum(d["counts"][row]) == 3 and d["counts"][row][-1] == 1
    assert sum(map(sum, d["counts"])) == 5
    with pytest.raises(ValueError, match="truth"):
        table.add("fly", "yield")
    assert ConfusionTable.lateral().accuracy() is None


def test_majority_baseline_on_a_known_histogram():
    assert majority_class([2, 2, 1, 3, 2, -1, -1, -1], 5) == 2
    assert majority_class([4, 1, 1, 4], 5) == 1  # tie -> lower id
    with pytest.raises(ValueError):
        majority_class([-1, -1], 5)
    with pytest.raises(ValueError):
        majority_class([7], 5)
    pairs = [("yield", "lane_keeping")] * 3 + [("set_speed_tracking", "turn")] * 2 + \
        [("set_speed_tracking", "lane_keeping")] * 2
    ids = np.array([decision_class_ids(*p) for p in pairs])
    # lon: yield 3, set_speed_tracking 4; lat: lane_keeping 5, turn 2
    assert majority_decisions(ids) == ("set_speed_tracking", "lane_keeping")
    assert majority_decisions(np.array([[-1, 0], [0, -1]])) == (LONGITUDINAL_CLASSES[0],
                                                                 LATERAL_CLASSES[0])


def test_comfort_bounds():
    t = 64
    assert is_comfortable(np.zeros(t), np.zeros(t), 10.0)
    # gentle braking and a gentle curve are comfortable
    assert is_comfortable(np.full(t, -2.0), np.full(t, 0.01), 10.0)
    # hard braking breaks the longitudinal bound (-4.05 m/s^2)
    bad = comfort_violations(np.full(t, -6.0), np.zeros(t), 15.0)
    assert "min_longitudinal_accel_mps2" in bad and bad["min_longitudinal_accel_mps2"] == -6.0
    # 0.04 1/m at 15 m/s: lateral accel 9 m/s^2, yaw rate 0.6 rad/s, the acceleration
    # vector turning at the yaw rate is a jerk of 9 * 0.6 = 5.4 m/s^3 (within 8.37)
    bad = comfort_violations(np.zeros(t), np.full(t, 0.04), 15.0)
    assert set(bad) == {"lateral_accel_mps2"}
    assert bad["lateral_accel_mps2"] == pytest.approx(9.0)
    # at 0.06 1/m the yaw rate (0.9) stays within 0.95 but the jerk (13.5 * 0.9) does not
    assert set(comfort_violations(np.zeros(t), np.full(t, 0.06), 15.0)) == {
        "lateral_accel_mps2", "jerk_mps3"}
    # a step from 0 to 2 m/s^2 within 0.1 s is a 20 m/s^3 jerk
    step = np.concatenate([np.zeros(32), np.full(32, 2.0)])
    assert {"jerk_mps3", "longitudinal_jerk_mps3"} <= set(
        comfort_violations(step, np.zeros(t), 5.0))
    assert not is_comfortable(np.full(t, np.nan), np.zeros(t), 5.0)


def test_mean_or_none():
    assert mean_or_none([]) is None
    assert mean_or_none([None, None]) is None
    assert np.isnan(mean_or_none([1.0, float("nan"), None]))
    assert mean_or_none([True, False, None, 1.0]) == pytest.approx(2 / 3)
