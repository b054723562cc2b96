"""Message definitions agree with the pure core's taxonomy and carry the documented fields."""

import alpamayo_ros.msg as m
from alpamayo_ros import taxonomy


def test_reasoning_constants_match_taxonomy() -> None:
    for decision in taxonomy.LongitudinalDecision:
        assert getattr(m.Reasoning, "LONG_" + decision.name) == decision.value
    for decision in taxonomy.LateralDecision:
        assert getattr(m.Reasoning, "LAT_" + decision.name) == decision.value
    for component in taxonomy.ComponentType:
        assert getattr(m.CriticalComponent, "TYPE_" + component.name) == component.value
    for level in taxonomy.Uncertainty:
        assert getattr(m.CriticalComponent, "UNCERTAINTY_" + level.name) == level.value


def test_messages_have_required_fields() -> None:
    assert {"time_from_start", "x", "y", "heading", "velocity", "acceleration",
            "curvature"} <= set(m.TrajectoryPoint.get_fields_and_field_types())
    assert {"header", "points", "model_id", "model_version", "samples"} <= set(
        m.Trajectory.get_fields_and_field_types())
    assert {"header", "longitudinal_decision", "lateral_decision", "critical_components",
            "text", "longitudinal_meta_action", "lateral_meta_action"} <= set(
        m.Reasoning.get_fields_and_field_types())
    assert {"state", "failed_checks", "checks"} <= set(m.SafetyStatus.get_fields_and_field_types())
    assert (m.SafetyStatus.STATE_OK, m.SafetyStatus.STATE_DEGRADED,
            m.SafetyStatus.STATE_FALLBACK) == (0, 1, 2)
    assert {"acceleration", "curvature", "source"} <= set(
        m.ControlCommand.get_fields_and_field_types())
    assert {"pose", "size", "velocity"} <= set(m.Obstacle.get_fields_and_field_types())
