"""Reference-plan controls from the unicycle fit (the dataset's ``future_controls``)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from alpamayo_ros.data.coc import ego_future
from alpamayo_ros.data.controls import episode_plan_controls, plan_controls
from alpamayo_ros.data.scenarios import make_scenario, simulate
from alpamayo_ros.unicycle import MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M, integrate

# Stops and restarts, hard braking, a corner, lane changes and an abort, a pull-over.
FAMILIES = ("red_light", "cut_in", "turn", "lane_change_abort", "pull_over", "merge")
MAX_POSITION_ERROR_M = 0.10  # README.md "Data engine": measured max 0.050 m over 2800 plans


@functools.cache
def plans(family: str):
    ep = simulate(make_scenario(family, 0))
    index, pc = episode_plan_controls(ep, indices=np.arange(0, len(ep.frames) - 64, 7))
    futures = np.stack([ego_future(ep, int(i)) for i in index])
    return ep, index, pc, futures


@pytest.mark.parametrize("family", FAMILIES)
def test_integrated_fit_reproduces_the_expert_plan(family):
    ep, index, pc, futures = plans(family)
    v0 = ep.ego_xyhv()[index, 3]
    states = integrate(pc.acceleration_mps2, pc.curvature_per_m, v0)  # no reverse
    err = np.hypot(states.x_m - futures[..., 0], states.y_m - futures[..., 1])
    assert err.max() <= MAX_POSITION_ERROR_M, (family, err.max())
    np.testing.assert_allclose(err.max(axis=1), pc.max_position_error_m, atol=1e-9)
    heading_err = np.abs(np.angle(np.exp(1j * (states.heading_rad - futures[..., 2]))))
    assert heading_err.max() < 0.02, (family, heading_err.max())
    assert np.abs(pc.acceleration_mps2).max() <= MAX_ABS_ACCELERATION_MPS2
    assert np.abs(pc.curvature_per_m).max() <= MAX_ABS_CURVATURE_PER_M, family
    np.testing.assert_allclose(pc.velocity_mps, states.velocity_mps)


def test_plan_halts_at_stops_instead_of_backing_up_or_creeping():
    ep, index, pc, futures = plans("red_light")
    # Where the expert waits at the red light the plan neither backs up nor creeps.
    poses = ep.ego_xyhv()
    at_rest = [k for k, i in enumerate(index) if np.all(poses[i + 1: i + 30, 3] < 1e-6)]
    assert at_rest
    for k in at_rest:
        assert np.all(pc.velocity_mps[k] >= 0.0)
        assert np.abs(pc.velocity_mps[k, :28]).max() < 0.05


def test_plan_controls_bad_input():
    with pytest.raises(ValueError, match="future_xyh"):
        plan_controls(np.zeros((64, 2)), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        plan_controls(np.full((64, 3), np.nan), 1.0)
    with pytest.raises(ValueError, match="v0_mps"):
        plan_controls(np.zeros((64, 3)), -1.0)
    with pytest.raises(ValueError, match="chunk"):
        plan_controls(np.zeros((64, 3)), 1.0, chunk=0)
