"""Disturbed starts (alpamayo_ros/data/recovery.py): the drift, the takeover, the samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alpamayo_ros.data.labels import label_steps
from alpamayo_ros.data.recovery import Disturbance, RecoveryConfig, draw_disturbance
from alpamayo_ros.data.scenarios import make_scenario, simulate
from alpamayo_ros.data.spec import DatasetSpec
from alpamayo_ros.data.world import DT_S


def _lane_offset(episode, index: int, centre: float) -> float:
    return episode.frames[index].ego.d - centre


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="recovery.share"):
        RecoveryConfig(share=1.5)
    with pytest.raises(ValueError, match="max_drift_offset_m"):
        RecoveryConfig(max_offset_m=1.4, max_drift_offset_m=1.3)
    with pytest.raises(ValueError, match="drift_s"):
        RecoveryConfig(drift_s=(2.0, 1.0))
    with pytest.raises(ValueError, match="unknown recovery keys"):
        RecoveryConfig.from_dict({"shares": 0.5})


def test_draws_are_reproducible_and_follow_the_share() -> None:
    assert draw_disturbance(RecoveryConfig(), "cruise", 0) is None  # share 0: never
    cfg = RecoveryConfig(share=0.5)
    draws = [draw_disturbance(cfg, "cruise", s) for s in range(200)]
    assert draws == [draw_disturbance(cfg, "cruise", s) for s in range(200)]
    disturbed = [d for d in draws if d is not None]
    assert 70 <= len(disturbed) <= 130
    assert all(abs(d.offset_m) <= cfg.max_offset_m and abs(d.heading_rad) <= cfg.max_heading_rad
               and 10 <= d.drift_steps <= 25 for d in disturbed)
    braked = [d for d in disturbed if d.decel_mps2 > 0.0]
    assert 0.25 * len(disturbed) <= len(braked) <= 0.75 * len(disturbed)
    assert all(1.0 <= d.decel_mps2 <= 3.5 for d in braked)
    # the scenario itself does not change with the disturbance's draws
    a, b = make_scenario("cruise", 3), make_scenario("cruise", 3)
    assert a.world.ego == b.world.ego and a.navigation == b.navigation


def test_drift_holds_the_heading_then_the_expert_returns_to_the_lane_centre() -> None:
    clean = simulate(make_scenario("cruise", 1))
    centre = clean.frames[0].ego.d
    dist = Disturbance(offset_m=0.5, heading_rad=0.03, drift_steps=20, decel_mps2=0.0,
                       max_offset_m=1.3)
    ep = simulate(make_scenario("cruise", 1), dist)
    assert ep.first_sample_index == 20
    assert _lane_offset(ep, 0, centre) == pytest.approx(0.5)
    # unsteered: the offset grows by v tan(heading) each step
    grown = _lane_offset(ep, 20, centre) - _lane_offset(ep, 0, centre)
    v = np.mean([f.ego.v_mps for f in ep.frames[:20]])
    assert grown == pytest.approx(20 * DT_S * v * math.tan(0.03), rel=0.05)
    # the expert takes over and is back within 0.15 m of the centre 6 s later
    after = _lane_offset(ep, 20 + 60, centre)
    assert abs(after) < 0.15 < abs(_lane_offset(ep, 20, centre))
    # samples and keyframes start at the takeover: every future is the expert's driving
    steps = label_steps(ep)
    assert steps[0].index == 20
    assert all(s.index >= 20 for s in steps)
    assert label_steps(clean)[0].index < 20


def test_drift_ends_early_at_its_offset_bound() -> None:
    clean = simulate(make_scenario("cruise", 1))
    centre = clean.frames[0].ego.d
    dist = Disturbance(offset_m=0.8, heading_rad=0.3, drift_steps=40, decel_mps2=0.0,
                       max_offset_m=1.3)
    ep = simulate(make_scenario("cruise", 1), dist)
    assert 0 < ep.first_sample_index < 40
    assert abs(_lane_offset(ep, ep.first_sample_index, centre)) >= 1.3
    assert abs(_lane_offset(ep, ep.first_sample_index - 1, centre)) < 1.3


def test_imposed_deceleration_then_the_expert_regains_its_speed() -> None:
    clean = simulate(make_scenario("cruise", 1))
    dist = Disturbance(offset_m=0.0, heading_rad=0.0, drift_steps=20, decel_mps2=3.0,
                       max_offset_m=1.3)
    ep = simulate(make_scenario("cruise", 1), dist)
    v0 = ep.frames[0].ego.v_mps
    v_takeover = ep.frames[20].ego.v_mps
    assert v_takeover < v0 - 4.0  # braked: 3 m/s^2 for 2 s, reached at 10 m/s^3
    accel = np.diff([f.ego.v_mps for f in ep.frames[:21]]) / DT_S
    assert np.all(np.abs(np.diff(accel)) <= 1.0 + 1e-6)  # jerk <= 10 m/s^3
    assert ep.frames[20 + 60].ego.v_mps > v_takeover + 3.0  # the expert speeds up again
    assert clean.frames[20].ego.v_mps > v_takeover + 4.0


def test_standstill_drift_stops_stands_then_the_expert_drives_off() -> None:
    dist = Disturbance(offset_m=0.3, heading_rad=0.0, drift_steps=10, decel_mps2=3.0,
                       max_offset_m=1.3, hold_steps=12)
    ep = simulate(make_scenario("cruise", 1), dist)
    takeover = ep.first_sample_index
    speeds = np.array([f.ego.v_mps for f in ep.frames])
    assert speeds[0] > 6.0 and takeover > 10  # longer than drift_steps: braked to a stop
    standing = np.flatnonzero(speeds[:takeover + 1] <= 0.0)
    assert len(standing) == 12 and standing[-1] == takeover  # stood 12 steps, then handed over
    assert speeds[takeover + 40] > 2.0  # the expert drives off on the empty road
    accel = np.diff(speeds[:standing[0]]) / DT_S  # while moving (speed stops at 0)
    assert np.all(np.abs(np.diff(accel)) <= 1.0 + 1e-6)  # the braking's jerk <= 10 m/s^3
    assert accel.min() == pytest.approx(-3.0)


def test_standstill_draws_keep_the_other_draws() -> None:
    plain = RecoveryConfig(share=1.0, brake_share=1.0)
    stopping = RecoveryConfig(share=1.0, brake_share=1.0, stop_share=0.5)
    pairs = [(draw_disturbance(plain, "cruise", s), draw_disturbance(stopping, "cruise", s))
             for s in range(100)]
    stops = [b for a, b in pairs if b.hold_steps >= 0]
    assert 30 <= len(stops) <= 70
    assert all(b.heading_rad == 0.0 and 2.0 <= b.decel_mps2 <= 4.0 and 5 <= b.hold_steps <= 25
               for b in stops)
    assert all(a == b for a, b in pairs if b.hold_steps < 0)  # the others are unchanged
    assert all(a.offset_m == b.offset_m for a, b in pairs)
    with pytest.raises(ValueError, match="recovery.stop_share"):
        RecoveryConfig(stop_share=2.0)
    with pytest.raises(ValueError, match="recovery.stop_hold_s"):
        RecoveryConfig(stop_hold_s=(3.0, 1.0))


def test_spec_disturbs_train_episodes_only(tmp_path) -> None:
    from alpamayo_ros.data.episodes import build_episode

    spec = DatasetSpec(families=["cruise"], train_seeds=(0, 1), val_seeds=(8000, 8001),
                       test_seeds=(9000, 9001), rig="train_small", image_height_px=16,
                       image_width_px=24, duration_s=9.0, recovery={"share": 1.0})
    plain = DatasetSpec(**{**spec.to_dict(), "recovery": {}})
    assert spec.episode_hash("train") != plain.episode_hash("train")
    assert spec.episode_hash("val") == plain.episode_hash("val") == spec.episode_hash()
    train = build_episode(spec, tmp_path, "train", "cruise", 0)
    val = build_episode(spec, tmp_path, "val", "cruise", 8000)
    import json

    meta_train = json.loads((tmp_path / "train" / "cruise_00000" / "meta.json").read_text())
    meta_val = json.loads((tmp_path / "val" / "cruise_08000" / "meta.json").read_text())
    assert meta_train["disturbance"] is not None and meta_val["disturbance"] is None
    assert meta_train["first_sample_index"] == meta_train["disturbance"]["drift_steps"] or \
        meta_train["first_sample_index"] < meta_train["disturbance"]["drift_steps"]
    assert meta_val["first_sample_index"] == 0
    assert train["samples"] < val["samples"] + 25
