"""Unit tests of the model's pure parts: solver, time sampling, dynamics, tokenizer, configs."""

import numpy as np
import pytest
import torch

from alpamayo_ros import unicycle
from alpamayo_ros.model import dynamics
from alpamayo_ros.model import flow_matching as fm
from alpamayo_ros.model.configuration import (
    PRESETS,
    BackboneConfig,
    ExpertConfig,
    PolicyConfig,
    VisionConfig,
    default_layer_map,
    preset,
)
from alpamayo_ros.model.layers import (
    Attention,
    add_attention_output,
    apply_rotary,
    grouped_attention,
    project_qkv,
    rotary_tables,
)
from alpamayo_ros.model.tokenizer import CocTokenizer, seed_corpus

# --- flow matching -----------------------------------------------------------------------


def test_euler_integrates_a_constant_field_exactly():
    noise = torch.randn(3, 64, 2, dtype=torch.float64)
    velocity = torch.randn(1, 64, 2, dtype=torch.float64)
    calls = []

    def fn(x, t):
        calls.append(t.clone())
        return velocity.expand_as(x)

    for steps in (1, 5, 10):
        calls.clear()
        out = fm.euler_solve(fn, noise, steps)
        torch.testing.assert_close(out, noise + velocity, rtol=0, atol=1e-12)
        assert len(calls) == steps
        assert torch.allclose(torch.stack(calls)[:, 0],
                              torch.arange(steps, dtype=torch.float64) / steps)


def test_euler_on_linear_path_with_exact_velocity_reaches_the_data():
    # The true velocity of the linear path from a known eps is a - eps whatever t:
    # one step lands on the data, as does any number of steps.
    a, eps = torch.randn(2, 64, 2), torch.randn(2, 64, 2)
    out = fm.euler_solve(lambda x, t: fm.target_velocity(eps, a), eps, 7)
    torch.testing.assert_close(out, a, atol=1e-5, rtol=0)


def test_euler_error_shrinks_with_steps_on_a_nonconstant_field():
    # dx/dt = x has solution x0 * e; Euler gives x0 * (1 + 1/n)^n.
    x0 = torch.ones(1, 1, 1, dtype=torch.float64)
    for n in (5, 10):
        out = fm.euler_solve(lambda x, t: x, x0, n)
        assert float(out) == pytest.approx((1 + 1 / n) ** n, rel=1e-12)


def test_euler_rejects_bad_steps():
    with pytest.raises(ValueError, match="flow steps"):
        fm.euler_solve(lambda x, t: x, torch.zeros(1, 2, 2), 0)
    with pytest.raises(ValueError, match="flow steps"):
        fm.euler_times(2.5)


def test_euler_times_are_the_times_the_solver_passes():
    seen = []
    fm.euler_solve(lambda x, t: (seen.append(t.clone()), x)[1], torch.zeros(2, 3, 2), 7)
    assert torch.equal(torch.stack(seen)[:, 1], fm.euler_times(7))


# --- attention layers --------------------------------------------------------------------


def _rotate_half_reference(x, positions, theta):
    """Llama's rotary embedding on ``x (B, H, S, hd)`` (rotate_half layout)."""
    hd = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    emb = positions.double()[..., None] * inv
    emb = torch.cat([emb, emb], -1)[:, None]
    rot = torch.cat([-x[..., hd // 2:], x[..., : hd // 2]], -1)
    return x * emb.cos() + rot * emb.sin()


def test_rotary_tables_rotate_like_llama_and_carry_the_query_scale():
    torch.manual_seed(0)
    b, s, heads, kv, hd = 2, 5, 6, 2, 16
    positions = torch.randint(0, 300, (b, s))
    cos, sin = rotary_tables(positions, hd, 10000.0, heads, kv, torch.float64)
    x = torch.randn(b, s, heads + kv, hd, dtype=torch.float64)
    got = apply_rotary(x, cos, sin).transpose(1, 2)
    ref = _rotate_half_reference(x.transpose(1, 2), positions, 10000.0)
    # The angles are computed in float32, as Llama/Qwen2 do: float32-level agreement.
    torch.testing.assert_close(got[:, :heads], ref[:, :heads] * hd**-0.5, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[:, heads:], ref[:, heads:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads,kv_heads", [(6, 2), (4, 4)])
def test_grouped_attention_equals_attention_over_repeated_heads(heads, kv_heads):
    """The fused projection + grouped heads equal the textbook GQA (keys repeated)."""
    torch.manual_seed(1)
    b, s, past, d, hd = 2, 7, 9, 24, 8
    attn = Attention(d, heads, kv_heads, hd).double()
    x = torch.randn(b, s, d, dtype=torch.float64)
    k_past = torch.randn(b, kv_heads, past, hd, dtype=torch.float64)
    v_past = torch.randn(b, kv_heads, past, hd, dtype=torch.float64)
    positions = past + torch.arange(s)[None].expand(b, s)
    mask = torch.rand(b, 1, 1, past + s) > 0.3
    mask[..., past:] = True
    cos, sin = rotary_tables(positions, hd, 10000.0, heads, kv_heads, torch.float64)
    def project(h, n, c, sn):
        return project_qkv(h, attn.qkv.weight, b, n, heads, kv_heads, c, sn)

    def add_output(h, out):
        return add_attention_output(h, out, attn.o.weight.t(), kv_heads)

    q, k, v = project(x.reshape(b * s, d), s, cos, sin)
    k, v = torch.cat([k_past, k], 2), torch.cat([v_past, v], 2)
    got = add_output(x.reshape(b * s, d), grouped_attention(q, k, v, mask, b, s)).view(b, s, d)

    w_q, w_k, w_v = attn.qkv.weight.split([heads * hd, kv_heads * hd, kv_heads * hd])
    def heads_of(w, n):
        return (x @ w.t()).view(b, s, n, hd).transpose(1, 2)

    rq = _rotate_half_reference(heads_of(w_q, heads), positions, 10000.0)
    rk = torch.cat([k_past, _rotate_half_reference(heads_of(w_k, kv_heads), positions,
                                                   10000.0)], 2)
    rv = torch.cat([v_past, heads_of(w_v, kv_heads)], 2)
    rep = heads // kv_heads
    rk, rv = rk.repeat_interleave(rep, 1), rv.repeat_interleave(rep, 1)
    ref = torch.nn.functional.scaled_dot_product_attention(rq, rk, rv, attn_mask=mask)
    ref = x + ref.transpose(1, 2).reshape(b, s, -1) @ attn.o.weight.t()
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)  # float32 rotary angles
    # One query (decoding) takes the SDPA branch: same result.
    x1 = x[:, :1].reshape(b, d)
    q1, k1, v1 = project(x1, 1, cos[:, :1], sin[:, :1])
    one = add_output(x1, grouped_attention(
        q1, torch.cat([k_past, k1], 2), torch.cat([v_past, v1], 2),
        mask[..., : past + 1], b, 1)).view(b, 1, d)
    rq1 = rq[:, :, :1]
    rk1 = torch.cat([k_past, _rotate_half_reference(heads_of(w_k, kv_heads)[:, :, :1],
                                                    positions[:, :1], 10000.0)], 2)
    rv1 = torch.cat([v_past, heads_of(w_v, kv_heads)[:, :, :1]], 2)
    ref1 = torch.nn.functional.scaled_dot_product_attention(
        rq1, rk1.repeat_interleave(rep, 1), rv1.repeat_interleave(rep, 1),
        attn_mask=mask[..., : past + 1])
    torch.testing.assert_close(one, x[:, :1] + ref1.transpose(1, 2).reshape(b, 1, -1)
                               @ attn.o.weight.t(), atol=1e-5, rtol=1e-5)


def test_time_sampling_matches_shifted_beta():
    gen = torch.Generator().manual_seed(0)
    t = fm.sample_time(20000, 1.5, 1.0, 0.999, gen)
    assert t.shape == (20000,) and float(t.min()) >= 0.0 and float(t.max()) <= 0.999
    u = 1.0 - t.double() / 0.999  # ~ Beta(1.5, 1): mean 0.6, P(u < 0.5) = 0.5^1.5
    assert float(u.mean()) == pytest.approx(0.6, abs=0.01)
    assert float((u < 0.5).double().mean()) == pytest.approx(0.5**1.5, abs=0.01)
    # Same generator seed, same times.
    again = fm.sample_time(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again, fm.sample_time(5, generator=torch.Generator().manual_seed(3)))


def test_flow_matching_loss_is_zero_for_the_true_velocity_and_positive_otherwise():
    a, eps = torch.randn(4, 64, 2), torch.randn(4, 64, 2)
    t = torch.rand(4)
    assert float(fm.flow_matching_loss(lambda x, tt: a - eps, a, t, eps)) == 0.0
    assert float(fm.flow_matching_loss(lambda x, tt: torch.zeros_like(x), a, t, eps)) > 0.1
    x_t = fm.interpolate(eps, a, t)
    torch.testing.assert_close(x_t[1], (1 - t[1]) * eps[1] + t[1] * a[1])


# --- dynamics ------------------------------------------------------------------------------


def test_torch_unicycle_matches_numpy_reference():
    rng = np.random.default_rng(0)
    acc = rng.uniform(-9.8, 9.8, (5, 64))
    acc[0] = -6.0  # brakes to a halt inside a step
    curv = rng.uniform(-0.2, 0.2, (5, 64))
    v0 = rng.uniform(0.0, 20.0, 5)
    for reverse in (False, True):
        ref = unicycle.integrate(acc, curv, v0, allow_reverse=reverse)
        got = dynamics.integrate(torch.from_numpy(acc), torch.from_numpy(curv),
                                 torch.from_numpy(v0), allow_reverse=reverse).numpy()
        expected = np.stack([ref.x_m, ref.y_m, ref.heading_rad, ref.velocity_mps], -1)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert got.shape == (5, 64, 4)


def test_torch_unicycle_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="curvature shape"):
        dynamics.integrate(torch.zeros(2, 64), torch.zeros(2, 63), 1.0)


# --- tokenizer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    corpus = seed_corpus() + ["the lead vehicle brakes so we slow down and keep the lane"] * 5
    return CocTokenizer.train(corpus, 400, 64)


def test_tokenizer_round_trips_text_and_shares_one_vocabulary(tok):
    text = "Yield: the pedestrian crosses at 12 m; keep lane. Ünïcode ok"
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == tok.curv_offset + 64
    assert tok.curv_offset == tok.accel_offset + 64
    assert all(tok.is_text_id(i) for i in tok.encode(text))
    assert not tok.is_text_id(tok.coc_end_id) and not tok.is_text_id(tok.accel_offset)
    # Merges learnt from the corpus compress it below one token per byte.
    assert len(tok.encode("the lead vehicle brakes")) < len("the lead vehicle brakes") / 2


def test_trajectory_tokens_are_128_uniform_bins_and_round_trip(tok):
    rng = np.random.default_rng(1)
    controls = rng.uniform(-1, 1, (3, 64, 2)) * [9.8, 0.2]
    ids = tok.controls_to_ids(controls)
    assert ids.shape == (3, 128)
    assert np.all(ids[:, 0::2] >= tok.accel_offset) and np.all(ids[:, 0::2] < tok.curv_offset)
    assert np.all(ids[:, 1::2] >= tok.curv_offset) and np.all(ids[:, 1::2] < tok.vocab_size)
    back = tok.ids_to_controls(ids)
    half_bin = np.array([9.8, 0.2]) / 64
    assert np.all(np.abs(back - controls) <= half_bin + 1e-12)
    assert np.array_equal(tok.controls_to_ids(back), ids)
    # Out-of-bound controls saturate at the end bins.
    edge = tok.controls_to_ids(np.array([[[100.0, -5.0]]]))
    assert edge.tolist() == [[tok.accel_offset + 63, tok.curv_offset]]
    with pytest.raises(ValueError, match="trajectory tokens"):
        tok.ids_to_controls(np.array([tok.curv_offset, tok.accel_offset]))
    assert tok.decode(list(ids[0]) + tok.encode("ok")) == "ok"


def test_tokenizer_save_load(tmp_path, tok):
    tok.save(tmp_path)
    again = CocTokenizer.load(tmp_path, 64)
    assert again.encode("keep lane") == tok.encode("keep lane")
    assert again.accel_offset == tok.accel_offset
    with pytest.raises(ValueError, match="trajectory_bins"):
        CocTokenizer.load(tmp_path, 32)


# --- configuration -------------------------------------------------------------------------


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="VisionConfig.tokens_per_timestep"):
        VisionConfig(tokens_per_timestep=0)
    with pytest.raises(ValueError, match="VisionConfig.image_height_px"):
        VisionConfig(image_height_px=50, patch_size_px=8)
    with pytest.raises(ValueError, match="BackboneConfig.num_kv_heads"):
        BackboneConfig(num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="BackboneConfig.hf_source"):
        BackboneConfig(kind="hf")
    with pytest.raises(ValueError, match="ExpertConfig.flow_steps"):
        ExpertConfig(flow_steps=0)
    with pytest.raises(ValueError, match="ExpertConfig.num_layers"):
        PolicyConfig(backbone=BackboneConfig(num_layers=2), expert=ExpertConfig(num_layers=3))
    with pytest.raises(ValueError, match="unknown fields"):
        PolicyConfig.from_dict({"vision": {"nope": 1}})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_config_round_trips_through_dict():
    cfg = preset("default")
    assert PolicyConfig.from_dict(cfg.to_dict()) == cfg


def test_default_layer_map_ends_at_the_last_layer():
    assert default_layer_map(2, 6) == [2, 5]
    assert default_layer_map(3, 3) == [0, 1, 2]
    assert default_layer_map(1, 4) == [3]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_token_budget_is_fixed_per_timestep(name):
    cfg = preset(name)
    v = cfg.vision
    assert cfg.vision_tokens == v.num_frames * v.tokens_per_timestep
    assert cfg.num_waypoints == 64 and cfg.ego_history_steps == 16
    for cams in (1, v.max_cameras):
        assert v.compression(cams) == pytest.approx(cams * v.patches_per_image
                                                    / v.tokens_per_timestep)
    assert v.compression(v.max_cameras) > 1.0  # fewer tokens than one per patch
