"""The policy's frame trigger (alpamayo_ros/inference/trigger.py): rate by camera time."""

from __future__ import annotations

import pytest

from alpamayo_ros.inference.config import PolicyNodeConfig
from alpamayo_ros.inference.trigger import FrameTrigger

MS = 1_000_000


def _run(trigger: FrameTrigger, stamps_ms: list[float]) -> list[float]:
    started = []
    for t in stamps_ms:
        if trigger.due(int(t * MS)):
            trigger.submitted(int(t * MS))
            started.append(t)
    return started


def test_2_hz_on_10_hz_cameras_starts_on_every_fifth_set() -> None:
    assert _run(FrameTrigger(0.5), [100.0 * k for k in range(12)]) == [0, 500, 1000]


def test_10_hz_on_jittery_10_hz_cameras_starts_on_every_set() -> None:
    stamps = [0, 99, 201, 298, 400, 503]  # +-3 ms around the period
    assert _run(FrameTrigger(0.1), stamps) == stamps


def test_a_set_that_finds_the_worker_busy_moves_the_next_start_to_the_next_set() -> None:
    trigger = FrameTrigger(0.5)
    assert trigger.due(0) and (trigger.submitted(0) is None)
    assert trigger.due(500 * MS)  # due, but the worker was busy: not submitted
    assert trigger.due(600 * MS)  # so the next set starts it
    trigger.submitted(600 * MS)
    assert not trigger.due(1000 * MS) and trigger.due(1100 * MS)


def test_time_going_back_restarts_and_reset_forgets() -> None:
    trigger = FrameTrigger(0.5)
    trigger.submitted(10_000 * MS)
    assert trigger.due(2_000 * MS)  # a bag loop / simulator restart
    assert not trigger.due(10_100 * MS)
    trigger.reset()
    assert trigger.due(10_100 * MS)


def test_config_validates_the_trigger() -> None:
    assert PolicyNodeConfig().trigger == "frames"
    with pytest.raises(ValueError, match="trigger must be one of"):
        PolicyNodeConfig(trigger="sometimes")
    with pytest.raises(ValueError, match="period_s must be > 0"):
        FrameTrigger(0.0)
