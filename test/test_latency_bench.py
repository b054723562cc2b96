"""``alpamayo bench latency``'s pure parts: arguments, statistics, goal and limiting stage.

The bench itself starts a policy process with the shipped weights and streams rendered
scenarios for minutes (its numbers are in docs/RESULTS.md); the node's per-plan timing
status it reads is checked in test_ros_policy_node.py.
"""

from __future__ import annotations

import argparse

import pytest

from alpamayo_ros.ros import latency_bench as lb


def test_scenarios_parse_and_bad_entries_are_named() -> None:
    assert lb.parse_scenarios("cut_in:9001, lead_at_red_light:9000") == [
        ("cut_in", 9001), ("lead_at_red_light", 9000)]
    with pytest.raises(ValueError, match="no_such_family:1"):
        lb.parse_scenarios("cut_in:9001,no_such_family:1")
    with pytest.raises(ValueError, match="cut_in"):
        lb.parse_scenarios("cut_in")
    with pytest.raises(ValueError, match="no scenario"):
        lb.parse_scenarios(" , ")


def test_stats_goal_and_limiting_stage() -> None:
    s = lb._stats([10.0, 20.0, 30.0, 40.0, 1000.0])
    assert s["n"] == 5 and s["median_ms"] == 30.0 and s["max_ms"] == 1000.0
    assert 40.0 < s["p99_ms"] < 1000.0
    assert lb._stats([])["median_ms"] is None
    stages = {name: lb._stats([1.0]) for name in lb.STAGES}
    stages["model_reasoning"] = lb._stats([90.0, 95.0, 300.0])
    stages["sync"] = lb._stats([60.0, 61.0, 62.0])
    result = {"stamp_to_arrival": lb._stats([95.0] * 99 + [140.0]), "stages": stages,
              "plan_rate_hz": 9.8}
    assert lb._goal_met(result)
    assert lb._limiting_stage(result) == {"by_median": "model_reasoning", "median_ms": 95.0,
                                          "by_p99": "model_reasoning",
                                          "p99_ms": stages["model_reasoning"]["p99_ms"]}
    assert not lb._goal_met({**result, "plan_rate_hz": 5.0})  # 10 Hz not kept
    assert not lb._goal_met({**result, "stamp_to_arrival": lb._stats([95.0] * 90 + [200.0] * 10)})


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    parser = argparse.ArgumentParser()
    lb.add_arguments(parser)
    with pytest.raises(ValueError, match="variants"):
        lb.run(parser.parse_args(["--variants", "fastest"]))
    with pytest.raises(ValueError, match="warmup"):
        lb.run(parser.parse_args(["--seconds", "2", "--warmup-s", "3"]))
