"""Pure cores of the runtime: odometry buffer, latest-only worker, policy runner, params."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from alpamayo_ros.inference.config import PolicyNodeConfig
from alpamayo_ros.inference.worker import LatestOnlyWorker
from alpamayo_ros.sync.odometry import EgoPose, OdometryBuffer

S = 1_000_000_000


def _circle_buffer(speed=10.0, radius=50.0, seconds=3.0, rate_hz=50.0) -> OdometryBuffer:
    buf = OdometryBuffer(horizon_s=5.0)
    for i in range(int(seconds * rate_hz) + 1):
        t = i / rate_hz
        ang = speed * t / radius
        buf.add(EgoPose(int(t * S), radius * math.sin(ang), radius * (1 - math.cos(ang)),
                        ang, speed))
    return buf


def test_odometry_interpolates_and_builds_ego_frame_history() -> None:
    buf = _circle_buffer()
    t_ns = int(2.0 * S) + 7_000_000  # between samples
    hist = buf.history_at(t_ns)
    assert hist is not None and hist.padded_steps == 0
    assert hist.poses.shape == (16, 4)
    np.testing.assert_allclose(hist.poses[-1], [0, 0, 0, 10.0], atol=1e-6)
    # 1.5 s ago on a left circle of radius 50 m: behind, and on the left (a circle lies
    # on the centre's side of its tangent)
    ang = 10.0 * 1.5 / 50.0
    np.testing.assert_allclose(hist.poses[0, :3],
                               [-50 * math.sin(ang), 50 * (1 - math.cos(ang)), -ang],
                               atol=2e-3)


def test_odometry_pads_history_at_startup_and_rejects_bad_samples() -> None:
    buf = OdometryBuffer()
    assert buf.history_at(0) is None
    for i in range(6):
        buf.add(EgoPose(i * S // 10, i * 0.5, 0.0, 0.0, 5.0))
    hist = buf.history_at(5 * S // 10)
    assert hist.padded_steps == 10  # 0.5 s of data for a 1.5 s window
    np.testing.assert_allclose(hist.poses[0, 0], -7.5, atol=1e-6)  # extrapolated back
    assert not buf.add(EgoPose(6 * S // 10, math.nan, 0.0, 0.0, 5.0))
    assert not buf.add(EgoPose(1, 0.0, 0.0, 0.0, 5.0))
    assert (buf.rejected_non_finite, buf.rejected_out_of_order) == (1, 1)
    assert buf.pose_at(5 * S // 10 + int(0.1 * S)) is not None  # small extrapolation
    assert buf.pose_at(5 * S // 10 + int(0.5 * S)) is None  # too far past the data


def test_worker_drops_while_busy_and_never_queues() -> None:
    gate = threading.Event()
    ran: list[int] = []
    worker = LatestOnlyWorker()
    try:
        assert worker.submit(lambda: (gate.wait(5), ran.append(1)))
        assert not worker.submit(lambda: ran.append(2))
        assert not worker.submit(lambda: ran.append(3))
        gate.set()
        assert worker.wait_idle(5)
        assert worker.submit(lambda: ran.append(4))
        assert worker.wait_idle(5)
        stats = worker.stats()
        assert ran == [1, 4]
        assert (stats.submitted, stats.dropped_busy, stats.completed) == (2, 2, 2)
        assert stats.drop_ratio == pytest.approx(0.5)
    finally:
        worker.stop()


def test_worker_survives_a_failing_job() -> None:
    errors = []
    worker = LatestOnlyWorker(on_error=lambda e, d: errors.append(e))
    try:
        worker.submit(lambda: 1 / 0)
        assert worker.wait_idle(5)
        time.sleep(0.05)
        assert worker.submit(lambda: None) and worker.wait_idle(5)
        stats = worker.stats()
        assert stats.failed == 1 and stats.completed == 1
        assert "ZeroDivisionError" in stats.last_error and len(errors) == 1
    finally:
        worker.stop()


@pytest.mark.parametrize("field,value", [
    ("rate_hz", 0.0), ("rate_hz", math.inf), ("flow_steps", 0), ("device", "tpu"),
    ("model_cameras", ()), ("model_cameras", ("a", "a")), ("seed", -2), ("frame_id", ""),
])
def test_policy_node_config_rejects_bad_values_naming_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=field):
        PolicyNodeConfig(**{field: value})


def test_runner_builds_samples_and_stamps_plans_with_the_camera_time() -> None:
    from alpamayo_ros.inference.runner import InputError, PolicyRunner, load_rig_geometry
    from alpamayo_ros.model.policy import Policy

    cfg = PolicyNodeConfig(weights_dir="/w/tiny", device="cpu", seed=3)
    policy = Policy.from_config("tiny", device="cpu")
    runner = PolicyRunner(cfg, policy, load_rig_geometry("ar1"))
    hist = _circle_buffer().history_at(2 * S)
    frames = [[np.full((60, 96, 3), 40 * f, np.uint8) for _ in cfg.model_cameras]
              for f in range(runner.num_frames)]
    sample = runner.build_sample(frames, 2 * S, hist)
    # rig K (448x280) scaled to the 96x60 images
    k = sample.cameras[0].intrinsics
    rig_k = load_rig_geometry("ar1")["cross_left"].intrinsics
    assert k[0, 0] == pytest.approx(rig_k[0, 0] * 96 / 448)
    out = runner.infer(sample)
    assert out.trajectory.stamp_ns == 2 * S and len(out.trajectory) == 64
    assert out.trajectory.frame_id == "base_link" and out.trajectory.model_id == "tiny:tiny"
    assert out.coc.longitudinal_meta_action  # derived from the predicted plan
    assert out.timings_ms["total"] > 0
    with pytest.raises(InputError, match="uint8"):
        runner.build_sample([[f.astype(np.float32) for f in frames[0]]], 0, hist)
    with pytest.raises(ValueError, match="max_cameras"):
        PolicyRunner(PolicyNodeConfig(model_cameras=("front_wide", "front_tele", "cross_left",
                                                     "cross_right", "rear_left")),
                     policy, load_rig_geometry("ar1"))


def test_runner_drafts_each_reasoning_from_the_previous_one() -> None:
    """reuse_reasoning: the same plans and text as token by token, in fewer passes."""
    from alpamayo_ros.inference.runner import PolicyRunner, load_rig_geometry
    from alpamayo_ros.model.policy import Policy

    policy = Policy.from_config("tiny", device="cpu")
    hist = _circle_buffer().history_at(2 * S)
    outputs = {}
    for reuse in (False, True):
        cfg = PolicyNodeConfig(device="cpu", seed=3, reuse_reasoning=reuse,
                               max_reasoning_tokens=12)
        runner = PolicyRunner(cfg, policy, load_rig_geometry("ar1"))
        runner.warmup(1)  # a blank scene's reasoning is not kept as a draft
        outs = []
        for f in range(3):  # the same scene twice, then another one
            value = 40 if f < 2 else 90
            frames = [[np.full((60, 96, 3), value, np.uint8) for _ in cfg.model_cameras]
                      for _ in range(runner.num_frames)]
            outs.append(runner.infer(runner.build_sample(frames, 2 * S, hist)))
        outputs[reuse] = outs
    for ref, fast in zip(outputs[False], outputs[True]):
        assert fast.coc.text == ref.coc.text
        np.testing.assert_allclose(fast.trajectory.x_m, ref.trajectory.x_m, atol=1e-4)
    ref, fast = outputs[False], outputs[True]
    assert fast[0].draft_tokens_accepted == 0  # nothing before it (warm-up dropped)
    assert ref[1].reasoning_passes == 13  # 12 tokens (the budget), then </coc>
    assert fast[1].reasoning_passes == 1  # the same scene: the draft holds entirely
    assert fast[1].draft_tokens_accepted == 12
    assert "postprocess" in fast[1].timings_ms


def test_params_coerce_and_name_the_bad_parameter(tmp_path) -> None:
    from alpamayo_ros.ros.params import ConfigError, config_from_dict, load_params_file

    cfg = config_from_dict(PolicyNodeConfig, {"rate_hz": 3, "model_cameras": ["a", "b"]})
    assert cfg.rate_hz == 3.0 and isinstance(cfg.rate_hz, float)
    assert cfg.model_cameras == ("a", "b")
    with pytest.raises(ConfigError, match="flow_steps"):
        config_from_dict(PolicyNodeConfig, {"flow_steps": 2.5})
    with pytest.raises(ConfigError, match="no_such_param"):
        config_from_dict(PolicyNodeConfig, {"no_such_param": 1})
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    rate_hz: 1.0\n"
                 "alpamayo_policy:\n  ros__parameters:\n    rate_hz: 4.0\n")
    assert load_params_file(f, "alpamayo_policy") == {"rate_hz": 4.0}
    assert load_params_file(f, "other") == {"rate_hz": 1.0}
    f.write_text("[not, a, mapping]")
    with pytest.raises(ConfigError, match="mapping"):
        load_params_file(f)
