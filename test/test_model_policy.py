"""Tests of the policy network on the ~1 M-param ``tiny`` preset (CPU, seconds each)."""

import json
import pathlib

import numpy as np
import pytest
import torch

from alpamayo_ros import unicycle
from alpamayo_ros.model import flow_matching as fm
from alpamayo_ros.model.configuration import FORMAT_VERSION, PRESETS, preset
from alpamayo_ros.model.modeling import (
    AlpamayoModel,
    SpecialIds,
    clamp_controls,
    count_parameters,
)
from alpamayo_ros.model.policy import Policy
from alpamayo_ros.model.processor import denormalize_controls, normalize_controls
from alpamayo_ros.model.synthetic import synthetic_sample
from alpamayo_ros.model.weights import WeightsError

CORPUS = ["the lead vehicle brakes so we slow down", "yield to the pedestrian at the crosswalk",
          "keep the lane and follow the car ahead", "stop for the red light"] * 10


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return Policy.from_config("tiny", corpus=CORPUS, seed=0, device="cpu")


def samples(n=2, seed=0, **kw):
    rng = np.random.default_rng(seed)
    navs = ["", "turn left at the next intersection", "go straight"]
    texts = ["the lead vehicle brakes so we slow down", "", "keep the lane"]
    out = []
    for i in range(n):
        args = dict(num_cameras=1 + i % 3, height_px=48, width_px=72,
                    navigation=navs[i % 3], text=texts[i % 3])
        args.update(kw)
        out.append(synthetic_sample(rng, **args))
    return out


# --- presets: shapes and token counts ---------------------------------------------------


@pytest.mark.parametrize("name", [p for p in PRESETS if p != "small"])
def test_preset_shapes_and_token_counts(name):
    """Build on the meta device (no memory, no compute) and check every output shape."""
    cfg = preset(name)
    with torch.device("meta"):
        ids = SpecialIds(0, 1, 2, 3, 4, 5, 6, 7, 8, 100, 100 + cfg.tokenizer.trajectory_bins,
                         cfg.tokenizer.trajectory_bins)
        vocab = 100 + 2 * cfg.tokenizer.trajectory_bins
        model = AlpamayoModel(cfg, vocab, ids)
        v = cfg.vision
        d = cfg.backbone.hidden_size
        for cams in (1, v.max_cameras):
            tokens = model.vision(
                torch.zeros(2, v.num_frames, cams, 3, v.image_height_px, v.image_width_px),
                torch.ones(2, cams, dtype=torch.bool), torch.eye(3).expand(2, cams, 3, 3),
                torch.eye(4).expand(2, cams, 4, 4))
            assert tuple(tokens.shape) == (2, v.num_frames * v.tokens_per_timestep, d)
    params = count_parameters(model)
    print(f"{name}: {params} params, {v.tokens_per_timestep} tokens/timestep, "
          f"compression {v.compression(v.max_cameras):.1f}x at {v.max_cameras} cameras")
    if name == "tiny":
        assert 0.3e6 < params < 1.5e6
    if name == "default":
        assert params < 5e6  # shipped weights < 20 MB in float32


def test_tiny_prefill_and_outputs_have_the_documented_shapes(policy):
    cfg = policy.config
    batch = policy.processor(samples(3))
    assert batch.images.shape == (3, cfg.vision.num_frames, cfg.vision.max_cameras, 3,
                                  cfg.vision.image_height_px, cfg.vision.image_width_px)
    assert batch.camera_valid.sum(1).tolist() == [1, 2, 3]
    model = policy.model
    with torch.no_grad():
        vis = model.encode_vision(batch)
        assert vis.shape == (3, cfg.vision_tokens, cfg.backbone.hidden_size)
        ctx = model.prefill(batch, vis)
    assert ctx.length == cfg.prefix_length
    assert ctx.logits.shape == (3, policy.tokenizer.vocab_size)
    # Navigation padding is masked and does not advance positions.
    nav_len = batch.nav_valid.sum(1)
    assert ctx.next_position.tolist() == (cfg.prefix_length - cfg.tokenizer.max_navigation_tokens
                                          + nav_len).tolist()


# --- KV cache ---------------------------------------------------------------------------


def full_logits(model, batch, ids):
    """Logits of a full (no cache) pass over the prefix + ``ids`` (B, n)."""
    embeds, valid = model.prefix(batch)
    embeds = torch.cat([embeds, model.backbone.embed(ids)], dim=1)
    valid = torch.cat([valid, torch.ones_like(ids, dtype=torch.bool)], dim=1)
    positions = (valid.long().cumsum(1) - 1).clamp_min(0)
    hidden, _ = model.backbone(embeds, positions, valid, None)
    return model.backbone.logits(hidden)


def test_kv_cache_generation_equals_full_recomputation(policy):
    model = policy.model
    batch = policy.processor(samples(1, seed=3))
    allowed = torch.ones(policy.tokenizer.vocab_size, dtype=torch.bool)
    with torch.no_grad():
        ctx = model.prefill(batch)
        p = model.prefix(batch)[0].shape[1]  # the full pass keeps the padding positions
        assert ctx.length == int(batch.nav_valid.sum()) + p - batch.nav_valid.shape[1]
        generated, cached = [], [ctx.logits]
        for _ in range(12):  # greedy, unconstrained: any token may come
            nxt = model._pick(ctx.logits, allowed, 0.0, None)
            generated.append(nxt)
            ctx = model.step(ctx, nxt)
            cached.append(ctx.logits)
        ids = torch.stack(generated, 1)
        full = full_logits(model, batch, ids)
    for i, logits in enumerate(cached):
        torch.testing.assert_close(logits, full[:, p - 1 + i], atol=1e-4, rtol=1e-4)
        if i < len(generated):
            assert int(full[0, p - 1 + i].argmax()) == int(generated[i][0])


def test_token_decoding_with_cache_equals_full_recomputation(policy):
    model = policy.model
    batch = policy.processor(samples(1, seed=4))
    with torch.no_grad():
        ctx = model.skip_reasoning(model.prefill(batch))
        before = ctx.length
        controls, tokens = model.decode_trajectory_tokens(ctx)
        assert model.backbone.cache_length(ctx.cache) == before  # rolled back
        seq = torch.cat([torch.tensor([[model.ids.coc_end, model.ids.traj_start]]), tokens], 1)
        full = full_logits(model, batch, seq)
    assert tokens.shape == (1, 128) and controls.shape == (1, 64, 2)
    p = model.prefix(batch)[0].shape[1]  # full-pass slot of </coc>; <traj> is p + 1
    for i in range(128):
        lo = model.ids.curv_offset if i % 2 else model.ids.accel_offset
        step_logits = full[0, p + 1 + i, lo: lo + model.ids.bins]
        assert int(step_logits.argmax()) + lo == int(tokens[0, i])
    torch.testing.assert_close(controls, model.tokens_to_controls(tokens))


def test_a_sample_gives_the_same_outputs_alone_and_in_a_padded_batch(policy):
    model = policy.model
    batch_samples = samples(3, seed=5)  # different camera counts and navigation lengths
    noise = torch.randn(3, 64, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batch = policy.processor(batch_samples)
        text, ctx = model.generate_reasoning(model.prefill(batch), 6)
        traj = model.flow_trajectory(ctx, 4, noise=noise)
        for i, s in enumerate(batch_samples):
            one = policy.processor([s])
            text1, ctx1 = model.generate_reasoning(model.prefill(one), 6)
            traj1 = model.flow_trajectory(ctx1, 4, noise=noise[i: i + 1])
            n = text1.shape[1]
            assert text[i, :n].tolist() == text1[0].tolist()
            torch.testing.assert_close(traj[i], traj1[0], atol=1e-4, rtol=1e-4)


def test_prepared_time_rows_equal_the_time_mlp_at_every_solver_step(policy):
    """The time conditioning of the solver's grid, precomputed in one batch, is exact.

    It gives the velocity of the per-step time MLP (the training/export path).
    """
    model = policy.model
    with torch.no_grad():
        ctx = model.skip_reasoning(model.prefill(policy.processor(samples(2, seed=11))))
        plain = model.velocity_fn(ctx, repeats=3)
        prepared = model.velocity_fn(ctx, repeats=3, steps=5)
        keys, values, valid, start = model.expert_context(ctx, 3)
        x = torch.randn(6, 64, 2, generator=torch.Generator().manual_seed(0))
        for t in fm.euler_times(5).tolist():
            tt = torch.full((6,), t)
            ref = model.expert(x, tt, keys, values, valid, start)  # the training forward
            torch.testing.assert_close(prepared(x, tt), ref, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(plain(x, tt), ref, atol=1e-6, rtol=1e-5)
        # Without autograd the expert writes its keys/values into preallocated buffers;
        # with autograd it concatenates: the same velocity.
        with torch.enable_grad():
            tt = torch.full((6,), 0.4)
            with_grad = model.expert(x, tt, keys, values, valid, start)
        torch.testing.assert_close(prepared(x, tt), with_grad.detach(), atol=1e-6, rtol=1e-5)
        # Times off the grid, or mixed within the batch, fall back to the MLP.
        mixed = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 0.35])
        torch.testing.assert_close(prepared(x, mixed),
                                   model.expert(x, mixed, keys, values, valid, start),
                                   atol=1e-6, rtol=1e-5)
        noise = torch.randn(2 * 3, 64, 2, generator=torch.Generator().manual_seed(1))
        full = model.flow_trajectory(ctx, 5, num_samples=3, noise=noise)
        ref = fm.euler_solve(plain, noise, 5)
        torch.testing.assert_close(full, clamp_controls(denormalize_controls(ref)).view(
            2, 3, 64, 2), atol=1e-5, rtol=1e-5)


# --- modes ------------------------------------------------------------------------------


def test_predict_modes_shapes_states_and_timings(policy):
    batch = samples(2, seed=6)
    full = policy.predict(batch, mode="reasoning", max_reasoning_tokens=5, seed=1)
    assert full.controls.shape == (2, 1, 64, 2) and full.states.shape == (2, 1, 64, 4)
    assert len(full.reasoning) == 2 and all(len(r) <= 5 for r in full.reasoning_ids)
    assert all(policy.tokenizer.is_text_id(i) for r in full.reasoning_ids for i in r)
    assert set(full.timings_ms) >= {"vision", "prefill", "reasoning", "trajectory", "total"}
    assert np.all(np.abs(full.controls[..., 0]) <= 9.8)
    assert np.all(np.abs(full.controls[..., 1]) <= 0.2)
    # States are the unicycle integration of the controls from the current speed.
    ref = unicycle.integrate(full.controls[..., 0].astype(np.float64),
                             full.controls[..., 1].astype(np.float64),
                             np.array([[s.speed_mps] for s in batch]))
    np.testing.assert_allclose(full.states[..., 0], ref.x_m, atol=1e-3)
    np.testing.assert_allclose(full.states[..., 3], ref.velocity_mps, atol=1e-4)

    traj = policy.predict(batch, mode="trajectory", seed=1)
    assert traj.reasoning == ["", ""] and traj.flow_steps == 10

    k6 = policy.predict(batch[0], mode="trajectory", num_samples=6, flow_steps=5, seed=2)
    assert k6.controls.shape == (1, 6, 64, 2) and k6.flow_steps == 5
    assert np.ptp(k6.controls[0, :, :, 0], axis=0).max() > 0  # six distinct draws

    again = policy.predict(batch[0], mode="trajectory", num_samples=6, flow_steps=5, seed=2)
    np.testing.assert_array_equal(again.controls, k6.controls)

    tokens = policy.predict(batch[0], mode="trajectory", decoder="tokens")
    assert tokens.controls.shape == (1, 1, 64, 2) and tokens.flow_steps == 0
    with pytest.raises(ValueError, match="mode"):
        policy.predict(batch, mode="dream")
    with pytest.raises(ValueError, match="flow_steps"):
        policy.predict(batch, flow_steps=0)


# --- losses -----------------------------------------------------------------------------


def test_losses_are_finite_and_the_expert_does_not_backprop_into_the_backbone(policy):
    model = AlpamayoModel(policy.config, policy.tokenizer.vocab_size, policy.model.ids)
    batch = policy.processor(samples(2, seed=7))
    losses = model.compute_losses(batch, torch.Generator().manual_seed(0))
    for value in (losses.reasoning_ce, losses.trajectory_ce, losses.flow_matching):
        assert torch.isfinite(value) and float(value.detach()) > 0
    # Untrained: the CE is near log(vocab).
    assert float(losses.trajectory_ce) == pytest.approx(np.log(policy.tokenizer.vocab_size),
                                                        rel=0.3)
    losses.flow_matching.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.expert.parameters())


@pytest.mark.parametrize("action_position", ["after_context", "fixed"])
def test_the_flow_loss_trains_the_expert_where_inference_runs_it(action_position):
    """compute_losses' flow error = the error over the context the policy plans from."""
    pol = Policy.from_config(preset("tiny", expert={"action_position": action_position}),
                             corpus=CORPUS, seed=0, device="cpu")
    model = pol.model
    inputs = pol.processor(samples(1))
    losses = model.compute_losses(inputs, torch.Generator().manual_seed(3),
                                  trajectory_tokens=False)
    gen = torch.Generator().manual_seed(3)  # compute_losses' draws, in its order
    exp = model.config.expert
    t = fm.sample_time(1, exp.time_beta_alpha, exp.time_beta_beta, exp.time_shift, gen)
    actions = model.normalize_actions(inputs.controls.float())
    noise = torch.randn(actions.shape, generator=gen)
    text = inputs.reasoning_ids[0][inputs.reasoning_valid[0]]
    assert len(text) > 3
    with torch.no_grad():
        ctx, _ = model.feed(model.prefill(inputs),
                            torch.cat([text, text.new_tensor([model.ids.coc_end])])[None])
        want = fm.flow_matching_errors(model.velocity_fn(ctx), actions, t, noise)
        torch.testing.assert_close(losses.per_sample["flow"].detach(), want)
        start = model.expert_context(ctx)[3]
        closed = model.expert_context(model.skip_reasoning(model.prefill(inputs)))[3]
    if action_position == "fixed":  # one slot, whatever the text
        assert start.tolist() == closed.tolist() == [model.config.action_start_position]
    else:  # right after the context: the text's tokens further on
        assert int(start - closed) == len(text)
    assert model.config.action_start_position + 64 <= model.config.backbone.max_positions


def test_a_few_optimizer_steps_reduce_every_loss(policy):
    torch.manual_seed(1)
    model = AlpamayoModel(policy.config, policy.tokenizer.vocab_size, policy.model.ids)
    batch = policy.processor(samples(2, seed=8))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for i in range(25):
        losses = model.compute_losses(batch, torch.Generator().manual_seed(i % 3))
        if first is None:
            first = losses
        opt.zero_grad()
        losses.total().backward()
        opt.step()
    final = model.compute_losses(batch, torch.Generator().manual_seed(0))
    assert float(final.reasoning_ce) < 0.5 * float(first.reasoning_ce)
    assert float(final.trajectory_ce) < 0.7 * float(first.trajectory_ce)
    assert float(final.flow_matching) < float(first.flow_matching)


def test_reasoning_targets_skip_samples_without_coc(policy):
    model = policy.model
    batch = policy.processor(samples(3, seed=9))
    assert batch.reasoning_valid.any(1).tolist() == [True, False, True]
    no_text = policy.processor([samples(2, seed=9)[1]])
    with torch.no_grad():
        assert float(model.compute_losses(no_text).reasoning_ce) == 0.0


# --- export / load ----------------------------------------------------------------------


def test_export_load_gives_identical_outputs(policy, tmp_path):
    policy.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors",
                                                          "tokenizer.json"]
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["policy"]["preset"] == "tiny"
    loaded = Policy.from_pretrained(tmp_path, device="cpu")
    for key, value in policy.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    batch = samples(2, seed=10)
    a = policy.predict(batch, mode="reasoning", max_reasoning_tokens=6, num_samples=2, seed=3)
    b = loaded.predict(batch, mode="reasoning", max_reasoning_tokens=6, num_samples=2, seed=3)
    np.testing.assert_array_equal(a.controls, b.controls)
    assert a.reasoning_ids == b.reasoning_ids and a.reasoning == b.reasoning


@pytest.fixture()
def saved(policy, tmp_path):
    policy.save_pretrained(tmp_path)
    return tmp_path


def test_load_errors_missing_file(saved):
    (saved / "tokenizer.json").unlink()
    with pytest.raises(WeightsError, match="missing tokenizer.json"):
        Policy.from_pretrained(saved, device="cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        Policy.from_pretrained(saved / "nope", device="cpu")


def test_load_errors_version_mismatch(saved):
    meta = json.loads((saved / "config.json").read_text())
    meta["format_version"] = 99
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="format_version 99"):
        Policy.from_pretrained(saved, device="cpu")
    # A directory of the previous layout (separate q/k/v, gate/up) says what changed.
    meta["format_version"] = 1
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="format_version 1 .*fuses them"):
        Policy.from_pretrained(saved, device="cpu")


def test_load_errors_shape_mismatch(saved):
    meta = json.loads((saved / "config.json").read_text())
    meta["policy"]["backbone"]["intermediate_size"] += 8
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="has shape"):
        Policy.from_pretrained(saved, device="cpu")


def test_load_errors_corrupt_files(saved):
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="SHA-256"):
        Policy.from_pretrained(saved, device="cpu")
    # A truncated file whose checksum was updated still fails to parse, clearly.
    path.write_bytes(bytes(data[:100]))
    meta = json.loads((saved / "config.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(bytes(data[:100])).hexdigest()
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="cannot be parsed"):
        Policy.from_pretrained(saved, device="cpu")
    (saved / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        Policy.from_pretrained(saved, device="cpu")


def test_model_package_never_unpickles():
    root = pathlib.Path(__file__).resolve().parents[1] / "alpamayo_ros" / "model"
    for path in root.glob("*.py"):
        src = path.read_text()
        for call in ("torch.load(", "pickle.load(", "pickle.loads(", "import pickle\n",
                     "Unpickler("):
            assert call not in src, f"{path.name} uses {call}"


# --- processor and vision -----------------------------------------------------------------


def test_processor_scales_intrinsics_and_rejects_bad_samples(policy):
    s = samples(1, seed=11)[0]
    batch = policy.processor([s])
    cfg = policy.config.vision
    k = batch.intrinsics[0, 0]
    assert float(k[0, 0]) == pytest.approx(s.cameras[0].intrinsics[0, 0]
                                           * cfg.image_width_px / 72)
    assert float(k[1, 2]) == pytest.approx(s.cameras[0].intrinsics[1, 2]
                                           * cfg.image_height_px / 48)
    assert torch.allclose(normalize_controls(batch.controls)[0, :, 0],
                          torch.from_numpy(s.future_controls[:, 0]) / 9.8)
    too_many = synthetic_sample(np.random.default_rng(0), num_cameras=5)
    with pytest.raises(ValueError, match="max_cameras"):
        policy.processor([too_many])
    s.images = s.images.astype(np.float32)
    with pytest.raises(ValueError, match="uint8"):
        policy.processor([s])


def test_vision_ignores_padded_cameras_and_uses_geometry(policy):
    model = policy.model
    batch = policy.processor(samples(1, seed=12))  # one camera, three padded slots
    with torch.no_grad():
        base = model.encode_vision(batch)
        batch.images[:, :, 1:] = 77  # garbage in padded slots changes nothing
        torch.testing.assert_close(model.encode_vision(batch), base)
        batch.camera_to_ego[0, 0, :3, 3] += torch.tensor([0.0, 1.0, 0.0])  # camera moved
        assert not torch.allclose(model.encode_vision(batch), base)


# --- bench --------------------------------------------------------------------------------


def test_decode_bench_reports_both_paths_on_the_same_context_and_how_it_measured():
    """``alpamayo bench decode`` on the tiny preset (structure and consistency, not speed)."""
    import argparse

    from alpamayo_ros.model import bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--preset", "tiny", "--device", "cpu", "--threads", "1",
                              "--warmup", "0", "--repeats", "2", "--reasoning-tokens", "4"])
    threads = torch.get_num_threads()
    try:
        out = bench.run(args)
    finally:
        torch.set_num_threads(threads)
    json.dumps(out)  # JSON-serialisable as printed
    t = out["timings"]
    assert set(t) == {"flow", "flow_5_steps", "autoregressive_tokens"}
    assert out["ratio_autoregressive_over_flow"] == pytest.approx(
        t["autoregressive_tokens"]["median_ms"] / t["flow"]["median_ms"], rel=0.01)
    assert out["ratio_of_minimums"]["flow"] == pytest.approx(
        t["autoregressive_tokens"]["min_ms"] / t["flow"]["min_ms"], rel=0.01)
    m = out["measured"]
    assert (m["warmup"], m["repeats"], m["threads"], m["device"]) == (0, 2, 1, "cpu")
    assert out["flow_steps"] == 10 and out["reasoning_tokens"] == 4
    # Context: <bos>, 16 vision, 16 ego, <nav> nav </nav>, <coc>, 4 reasoning, </coc>.
    assert out["context_tokens"] >= 1 + 16 + 16 + 2 + 1 + 4 + 1
    diff = out["steps_5_vs_main_difference"]
    assert diff["max_abs_acceleration_mps2"] >= 0 and diff["final_position_m"] >= 0
