"""ONNX export of the vision tokenizer and the expert, checked against torch."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="onnx is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from alpamayo_ros.model import flow_matching as fm  # noqa: E402
from alpamayo_ros.model import onnx_export  # noqa: E402
from alpamayo_ros.model.configuration import preset  # noqa: E402
from alpamayo_ros.model.policy import Policy  # noqa: E402
from alpamayo_ros.model.synthetic import synthetic_sample  # noqa: E402


@pytest.fixture(scope="module")
def policy():
    return Policy.from_config("tiny", seed=0, device="cpu")


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("fusion,grid_queries", [("queries", 0), ("camera_grid", 0),
                                                  ("camera_grid", 4)])
def test_vision_onnx_matches_torch(policy, tmp_path, fusion, grid_queries):
    if fusion == "camera_grid":  # conv stem, 3x5 patch grid pooled into 2x3 cells (+ queries)
        policy = Policy.from_config(preset("tiny", vision={
            "stem": "conv", "fusion": fusion, "grid_queries": grid_queries,
            "tokens_per_timestep": 24 + grid_queries}), device="cpu")
    model = policy.model
    batch = policy.processor([synthetic_sample(np.random.default_rng(0), num_cameras=3,
                                               height_px=48, width_px=72)])
    cams = 3
    args = (batch.images[:, :, :cams], batch.camera_valid[:, :cams],
            batch.intrinsics[:, :cams], batch.camera_to_ego[:, :cams])
    path = onnx_export.export_vision(model, tmp_path / "vision.onnx", cams)
    names = ["images", "camera_valid", "intrinsics", "camera_to_ego"]
    got = session(path).run(None, {n: a.numpy() for n, a in zip(names, args)})[0]
    with torch.no_grad():
        ref = model.vision(*args).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_expert_onnx_drives_the_stateless_solver_like_torch(policy, tmp_path):
    model = policy.model
    batch = policy.processor([synthetic_sample(np.random.default_rng(1), height_px=48,
                                               width_px=72, navigation="turn left")])
    with torch.no_grad():
        ctx = model.skip_reasoning(model.prefill(batch))
        keys, values, valid, start = model.expert_context(ctx)
        noise = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(0))
        ref = model.flow_trajectory(ctx, 10, noise=noise)
    path = onnx_export.export_expert(model, tmp_path / "expert.onnx", ctx.length)
    sess = session(path)
    feeds = dict(zip(["keys", "values", "context_valid", "start_positions"],
                     (a.numpy() for a in onnx_export.expert_inputs(keys, values, valid, start))))

    def velocity(x_t, t):
        out = sess.run(None, {"x_t": x_t.numpy(), "t": t.numpy(), **feeds})[0]
        return torch.from_numpy(out)

    with torch.no_grad():
        v_torch = model.velocity_fn(ctx)(noise, torch.tensor([0.25]))
    np.testing.assert_allclose(velocity(noise, torch.tensor([0.25])).numpy(), v_torch.numpy(),
                               atol=1e-5, rtol=1e-4)
    from alpamayo_ros.model.modeling import clamp_controls
    from alpamayo_ros.model.processor import denormalize_controls

    got = clamp_controls(denormalize_controls(fm.euler_solve(velocity, noise, 10)))
    np.testing.assert_allclose(got.numpy(), ref[:, 0].numpy(), atol=1e-4, rtol=1e-4)
