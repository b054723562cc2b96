"""Training-facing parts of the model: action statistics, per-sample losses, auxiliary heads.

Tiny preset on the CPU. The auxiliary heads (perception on the vision tokens, decisions on
the prefix) exist to make the policy read the scene; these tests check their losses on
hand-built cases and that a few optimizer steps fit them.
"""

import json

import numpy as np
import pytest
import torch

from alpamayo_ros.model import flow_matching as fm
from alpamayo_ros.model.modeling import LOSS_NAMES, clamp_controls, perception_loss
from alpamayo_ros.model.policy import Policy
from alpamayo_ros.model.synthetic import synthetic_sample
from alpamayo_ros.model.weights import WeightsError
from alpamayo_ros.perception import PERCEPTION_DIM, PERCEPTION_INDEX, field_weight_vector
from alpamayo_ros.taxonomy import decision_class_ids
from alpamayo_ros.training.config import StageConfig

CORPUS = ["the lead vehicle brakes so I slow down", "yield to the pedestrian at the crosswalk",
          "keep the lane and follow the car ahead", "stop for the red light"] * 10


@pytest.fixture(scope="module")
def policy():
    return Policy.from_config("tiny", corpus=CORPUS, seed=0, device="cpu")


def labelled(n, seed=0, text="the lead vehicle brakes so I slow down"):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = synthetic_sample(rng, num_cameras=2, height_px=32, width_px=48,
                             text=text if i % 2 == 0 else "")
        s.decisions = (("lead_obstacle_following", "lane_keeping") if i % 2 == 0
                       else ("set_speed_tracking", ""))
        values = np.zeros(PERCEPTION_DIM, np.float32)
        mask = np.zeros(PERCEPTION_DIM, bool)
        mask[: 10] = True
        values[PERCEPTION_INDEX["lead_present"]] = float(i % 2 == 0)
        values[PERCEPTION_INDEX["lead_gap"]] = 0.1 * (i + 1)
        s.perception, s.perception_mask = values, mask
        out.append(s)
    return out


def test_action_stats_normalise_the_flow_and_travel_with_the_weights(policy, tmp_path):
    model = policy.model
    controls = torch.tensor([[[0.5, 0.01], [-1.0, -0.02]]])
    # Untrained default: the release bounds (the previous behaviour).
    torch.testing.assert_close(model.normalize_actions(controls), controls / torch.tensor(
        [9.8, 0.2]))
    old = (model.action_mean.clone(), model.action_std.clone())
    try:
        model.set_action_stats(torch.tensor([0.1, 0.001]), torch.tensor([0.5, 0.01]))
        unit = model.normalize_actions(controls)
        torch.testing.assert_close(unit[0, 0], torch.tensor([0.8, 0.9]))
        torch.testing.assert_close(model.denormalize_actions(unit), controls)
        # The solver's output is de-normalised with the stats.
        batch = policy.processor(labelled(1), with_targets=False)
        noise = torch.randn(1, 64, 2, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ctx = model.skip_reasoning(model.prefill(batch))
            got = model.flow_trajectory(ctx, 4, noise=noise)
            ref = fm.euler_solve(model.velocity_fn(ctx), noise, 4)
        torch.testing.assert_close(got[:, 0], clamp_controls(ref * torch.tensor([0.5, 0.01])
                                                             + torch.tensor([0.1, 0.001])))
        policy.save_pretrained(tmp_path)
        loaded = Policy.from_pretrained(tmp_path, device="cpu")
        torch.testing.assert_close(loaded.model.action_std, torch.tensor([0.5, 0.01]))
        for bad in ((torch.zeros(2), torch.zeros(2)), (torch.zeros(3), torch.ones(3)),
                    (torch.tensor([float("nan"), 0.0]), torch.ones(2))):
            with pytest.raises(ValueError, match="action stats"):
                model.set_action_stats(*bad)
    finally:
        model.set_action_stats(*old)


def test_processor_fills_aux_targets_and_counts_cut_texts(policy):
    batch = policy.processor(labelled(2))
    assert batch.decision_ids.tolist() == [
        list(decision_class_ids("lead_obstacle_following", "lane_keeping")),
        list(decision_class_ids("set_speed_tracking", ""))]
    assert batch.perception.shape == (2, PERCEPTION_DIM)
    assert batch.perception_mask[:, :10].all() and not batch.perception_mask[:, 10:].any()
    unlabelled = synthetic_sample(np.random.default_rng(1), num_cameras=1, height_px=32,
                                  width_px=48)
    b2 = policy.processor([unlabelled])
    assert b2.decision_ids.tolist() == [[-1, -1]] and not b2.perception_mask.any()
    bad = labelled(1)[0]
    bad.perception = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="perception_dim"):
        policy.processor([bad])
    before = policy.processor.truncated["reasoning"]
    long = labelled(1, text=" ".join(["the red light"] * 80))
    policy.processor(long)
    assert policy.processor.truncated["reasoning"] == before + 1


def test_perception_loss_on_hand_built_cases():
    lead, gap = PERCEPTION_INDEX["lead_present"], PERCEPTION_INDEX["lead_gap"]
    target = torch.zeros(1, PERCEPTION_DIM)
    target[0, lead], target[0, gap] = 1.0, 0.4
    mask = torch.zeros(1, PERCEPTION_DIM, dtype=torch.bool)
    mask[0, [lead, gap]] = True
    good = torch.zeros(1, PERCEPTION_DIM)
    good[0, lead], good[0, gap] = 20.0, 0.4  # confident "present", exact gap
    assert float(perception_loss(good, target, mask)) < 1e-6
    bad = good.clone()
    bad[0, lead] = -20.0  # confident "absent": logistic loss about 20 on that entry
    assert float(perception_loss(bad, target, mask)) == pytest.approx(10.0, rel=0.01)
    off = good.clone()
    off[0, gap] = 1.4  # 1.0 off (smooth-L1, beta 0.05): 1 - 0.025 on that entry
    assert float(perception_loss(off, target, mask)) == pytest.approx(0.4875, rel=1e-3)
    junk = good.clone()
    junk[0, 50] = 1e6  # a masked entry does not count
    assert float(perception_loss(junk, target, mask)) < 1e-6
    # field weights make a weighted mean: lead present at 3, the gap at 1 -> 3/4 of 20
    weights = torch.tensor(field_weight_vector({"lead_present": 3.0}))
    assert float(perception_loss(bad, target, mask, weights)) == pytest.approx(15.0, rel=0.01)
    assert float(perception_loss(off, target, mask, weights)) == pytest.approx(0.24375,
                                                                               rel=1e-3)
    ones = torch.tensor(field_weight_vector({}))
    assert float(perception_loss(bad, target, mask, ones)) == \
        pytest.approx(float(perception_loss(bad, target, mask)))
    # a sample whose known fields all weigh 0 adds nothing (and no NaN)
    zero = torch.tensor(field_weight_vector({"lead_present": 0.0, "lead_gap": 0.0}))
    assert float(perception_loss(bad, target, mask, zero)) == 0.0


def test_perception_field_weights_name_the_field():
    with pytest.raises(ValueError, match="unknown perception field 'lead'"):
        field_weight_vector({"lead": 2.0})
    with pytest.raises(ValueError, match="'light_red': weight must be a number >= 0"):
        field_weight_vector({"light_red": -1.0})
    with pytest.raises(ValueError, match="StageConfig.perception_field_weights: unknown"):
        StageConfig(steps=1, loss_weights={"perception": 1.0},
                    perception_field_weights={"nope": 1.0})
    stage = StageConfig(steps=1, loss_weights={"perception": 1.0},
                        perception_field_weights={"light_red": 4})
    assert field_weight_vector(stage.perception_field_weights)[
        PERCEPTION_INDEX["light_red"]] == 4.0


def test_weights_with_fewer_perception_fields_read_the_first_ones():
    """Fields are only appended: a head trained on the first 86 learns them from a newer vector."""
    from alpamayo_ros.model.configuration import PolicyConfig, preset
    from alpamayo_ros.perception import model_fields
    from alpamayo_ros.training.loop import perception_weights

    old_dim = PERCEPTION_INDEX["ego_heading_error"]  # weights from before the field
    old = Policy.from_config(preset("tiny", perception_dim=old_dim), corpus=CORPUS, seed=0,
                             device="cpu")
    samples = labelled(2)
    samples[0].perception[PERCEPTION_INDEX["ego_heading_error"]] = 0.3
    samples[0].perception_mask[PERCEPTION_INDEX["ego_heading_error"]] = True
    batch = old.processor(samples)
    assert batch.perception.shape == (2, old_dim)
    torch.testing.assert_close(batch.perception, torch.from_numpy(
        np.stack([s.perception[:old_dim] for s in samples])))
    assert old.model.compute_losses(batch).scalars()["perception"] > 0
    assert [f.name for f in model_fields(old_dim)][-1] == "agent5_indicator_right"
    stage = StageConfig(steps=1, loss_weights={"perception": 1.0},
                        perception_field_weights={"light_red": 4, "ego_lateral_offset": 10})
    assert perception_weights(stage, old_dim, torch.device("cpu")).shape == (old_dim,)
    newer = StageConfig(steps=1, loss_weights={"perception": 1.0},
                        perception_field_weights={"ego_heading_error": 10})
    with pytest.raises(ValueError, match=r"\['ego_heading_error'\] are not among the model's"):
        perception_weights(newer, old_dim, torch.device("cpu"))
    assert perception_weights(newer, PERCEPTION_DIM, torch.device("cpu")).shape == (
        PERCEPTION_DIM,)
    with pytest.raises(ValueError, match="PolicyConfig.perception_dim must be an int in"):
        PolicyConfig(perception_dim=PERCEPTION_DIM + 1)


def test_per_sample_losses_and_counts(policy):
    model = policy.model
    batch = policy.processor(labelled(3))
    with torch.no_grad():
        losses = model.compute_losses(batch, torch.Generator().manual_seed(0))
    assert set(losses.per_sample) == set(LOSS_NAMES)
    assert losses.mask["reasoning"].tolist() == [True, False, True]
    assert losses.mask["perception"].all() and losses.mask["decision"].all()
    # The reasoning loss is a per-sample token mean averaged over samples with text: the
    # same value as computing each sample alone (no per-batch token weighting, no zeros).
    alone = []
    for i in (0, 2):
        with torch.no_grad():
            one = model.compute_losses(policy.processor([labelled(3)[i]]))
        alone.append(float(one.reasoning_ce))
    assert float(losses.reasoning_ce) == pytest.approx(np.mean(alone), rel=1e-5)
    # total() with explicit counts (what DDP ranks pass) equals the default.
    weights = {"reasoning": 1.0, "flow": 2.0, "perception": 0.5}
    counts = {n: losses.count(n) for n in LOSS_NAMES}
    torch.testing.assert_close(losses.total(weights), losses.total(weights, counts))
    half = {n: 2 * c for n, c in counts.items()}  # twice the samples: half the loss
    torch.testing.assert_close(losses.total(weights, half), 0.5 * losses.total(weights))
    with pytest.raises(ValueError, match="unknown loss"):
        losses.total({"bogus": 1.0})
    # Without the trajectory tokens the other losses are the same, theirs is masked out.
    with torch.no_grad():
        short = model.compute_losses(batch, torch.Generator().manual_seed(0),
                                     trajectory_tokens=False)
    assert not short.mask["trajectory_tokens"].any()
    for name in ("reasoning", "flow", "perception", "decision"):
        torch.testing.assert_close(short.per_sample[name], losses.per_sample[name])


def test_perception_only_samples_count_in_the_perception_loss_alone(policy):
    """A signal counterfactual (DrivingSample.perception_only) trains the perception head.

    Only it: its frames do not show what its trajectory, text and decision reacted to.
    """
    samples = labelled(3)
    samples[0].perception_only = True
    batch = policy.processor(samples)
    assert batch.perception_only.tolist() == [True, False, False]
    with torch.no_grad():
        losses = policy.model.compute_losses(batch, torch.Generator().manual_seed(0))
    for name in ("reasoning", "trajectory_tokens", "flow", "decision"):
        assert not losses.mask[name][0], name
    assert losses.mask["flow"][1:].all() and losses.mask["decision"][1:].all()
    assert losses.mask["perception"].all()
    with torch.no_grad():
        plain = policy.model.compute_losses(policy.processor(labelled(3)),
                                            torch.Generator().manual_seed(0))
    for name in LOSS_NAMES:
        torch.testing.assert_close(losses.per_sample[name], plain.per_sample[name])
    assert policy.processor(samples, with_targets=False).perception_only is None


def test_a_few_steps_fit_the_aux_heads(policy):
    torch.manual_seed(0)
    model = Policy.from_config("tiny", corpus=CORPUS, seed=1, device="cpu").model.train()
    batch = policy.processor(labelled(4))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    # 60 steps: with 20 the decision loss of some initialisations has only reached the
    # class prior (seed 1 with the 87-field head: 0.33 of the first; 60 steps: 0.003).
    for i in range(60):
        losses = model.compute_losses(batch, torch.Generator().manual_seed(i))
        first = first or losses.scalars()
        opt.zero_grad()
        losses.total({"perception": 1.0, "decision": 1.0}).backward()
        opt.step()
    last = model.compute_losses(batch).scalars()
    assert last["perception"] < 0.3 * first["perception"]
    assert last["decision"] < 0.3 * first["decision"]


def test_version_2_weights_are_refused_with_the_reason(policy, tmp_path):
    policy.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["format_version"] = 2
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="format_version 2 .*action statistics"):
        Policy.from_pretrained(tmp_path, device="cpu")


def test_noise_scale_narrows_the_flow_samples(policy):
    batch = labelled(1)
    wide = policy.predict(batch, mode="trajectory", num_samples=3, seed=0)
    narrow = policy.predict(batch, mode="trajectory", num_samples=3, seed=0, noise_scale=0.3)
    mode = policy.predict(batch, mode="trajectory", num_samples=3, seed=0, noise_scale=0.0)
    spread = [float(np.ptp(p.controls[0, :, :, 0], axis=0).mean()) for p in (wide, narrow, mode)]
    assert spread[0] > spread[1] > 0.0 == spread[2]  # zero noise: K identical plans
    with pytest.raises(ValueError, match="noise_scale"):
        policy.predict(batch, noise_scale=-1.0)


def test_decision_phrase_tokens_are_marked_and_weighted_in_the_reasoning_loss(policy):
    from alpamayo_ros.data.consistency import decision_spans

    text = "The road is clear, so I keep cruising. I stay in my lane."
    assert [text[a:b] for a, b in decision_spans(text)] == ["cruising", "stay in my lane"]
    assert decision_spans("The light is red.") == [] and decision_spans(None) == []
    sample = labelled(1, text=text)[0]
    batch = policy.processor([sample])
    n = int(batch.reasoning_valid.sum())
    marked = batch.reasoning_decision[0, :n]
    phrase = policy.tokenizer.decode(batch.reasoning_ids[0, :n][marked].tolist())
    assert "cruising" in phrase and "lane" in phrase and "road" not in phrase
    assert not batch.reasoning_decision[0, n:].any()  # padding is never marked
    assert policy.processor([sample], with_targets=False).reasoning_decision is None

    def loss(weight: float) -> float:
        with torch.no_grad():
            return float(policy.model.compute_losses(
                batch, torch.Generator().manual_seed(0), decision_token_weight=weight
            ).per_sample["reasoning"][0])

    # per-sample weighted token mean over the n text tokens and </coc>:
    # loss(w) = (S + (w - 1) C) / (N + (w - 1) m), S the CE sum, C that of the m marked
    big_n, m = n + 1, int(marked.sum())
    s_sum = loss(1.0) * big_n
    c_sum = (loss(4.0) * (big_n + 3 * m) - s_sum) / 3
    assert loss(10.0) == pytest.approx((s_sum + 9 * c_sum) / (big_n + 9 * m), rel=1e-5)
    assert loss(10.0) != pytest.approx(loss(1.0), rel=1e-3)
    unmarked = policy.processor([labelled(1, text="The light is red.")[0]])
    with torch.no_grad():
        same = [float(policy.model.compute_losses(unmarked, torch.Generator().manual_seed(0),
                                                  decision_token_weight=w).reasoning_ce)
                for w in (1.0, 10.0)]
    assert same[0] == pytest.approx(same[1], rel=1e-6)  # no phrase: the plain token mean
