"""GRPO: pure pieces on hand-built numbers, then log-probs and rl_step on the tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from alpamayo_ros.model import dynamics
from alpamayo_ros.model.policy import Policy
from alpamayo_ros.model.synthetic import synthetic_sample
from alpamayo_ros.sample import CocLabel, CriticalComponentLabel
from alpamayo_ros.training.grpo import (
    DisagreementPool,
    RLConfig,
    RLRewards,
    clip_fraction,
    clipped_policy_loss,
    collect_rollouts,
    disagreement_scores,
    flow_policy_loss,
    group_advantages,
    kl_k3,
    plan_flow_losses,
    plan_rewards,
    policy_loss,
    repeat_inputs,
    rl_step,
    sample_group,
    scene_boxes,
    select_prompts,
    text_allowed,
    token_logprobs,
    validation_rewards,
)
from alpamayo_ros.training.rewards import RolloutReward

torch.set_num_threads(1)

TEXTS = ["The red car is stopped 20 m ahead, so I keep following it and stay in my lane.",
         "The road ahead is free, so I keep cruising and stay in my lane.",
         "A pedestrian is crossing from the left, so I yield to them."]


# --------------------------------------------------------------------------- config
def test_config_validation():
    cfg = RLConfig()
    assert (cfg.group_size, cfg.clip_eps_low, cfg.clip_eps_high, cfg.kl_beta) == (6, 0.2, 0.28,
                                                                                  0.0)
    assert cfg.reward_weights == {"reasoning": 1.0, "consistency": 1.0, "trajectory": 1.0}
    assert cfg.trajectory_reward_config().ade_fail_m == 3.0
    for kwargs, match in [({"group_size": 1}, "group_size"), ({"clip_eps_high": -0.1},
                                                               "clip_eps_high"),
                          ({"temperature": 0.0}, "temperature"), ({"ppo_epochs": 0},
                                                                  "ppo_epochs"),
                          ({"disagreement_fraction": 1.5}, "disagreement_fraction"),
                          ({"reasoning_weight": 0.0, "consistency_weight": 0.0,
                            "trajectory_weight": 0.0}, "all 0"),
                          ({"traj_ade_fail_m": 0.0}, "traj_ade_fail_m"),
                          ({"use_llm_judge": "yes"}, "use_llm_judge"),
                          ({"flow_weight": -1.0}, "flow_weight"),
                          ({"flow_mc_samples": 0}, "flow_mc_samples")]:
        with pytest.raises(ValueError, match=match):
            RLConfig(**kwargs)


# --------------------------------------------------------------------------- pure pieces
def test_group_advantages():
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [0.0, 1e-6, 0.0]]))
    s = math.sqrt(2.0 / 3.0)
    assert torch.allclose(adv[0], torch.tensor([-1.0 / s, 0.0, 1.0 / s]))
    assert torch.equal(adv[1], torch.zeros(3))  # all equal: no signal
    # Below the std floor (1e-4) the advantages stay small instead of blowing up to +-1.
    assert float(adv[2].abs().max()) < 0.01 and float(adv[2, 1]) > 0
    assert torch.allclose(adv.sum(1), torch.zeros(3), atol=1e-6)
    with pytest.raises(ValueError, match="B, G"):
        group_advantages(torch.zeros(4))


def _grad_of_loss(ratio: float, adv: float, eps_low: float = 0.2, eps_high: float = 0.28):
    new = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss = clipped_policy_loss(new, torch.zeros(1, 1), torch.tensor([adv]),
                               torch.ones(1, 1, dtype=torch.bool), eps_low, eps_high)
    loss.backward()
    return float(loss.detach()), float(new.grad)


def test_clipped_policy_loss_clips_both_sides():
    # Positive advantage: the ratio is clipped above at 1 + eps_high, not below.
    assert _grad_of_loss(1.5, 1.0) == pytest.approx((-1.28, 0.0))
    assert _grad_of_loss(1.1, 1.0) == pytest.approx((-1.1, -1.1))
    assert _grad_of_loss(0.5, 1.0) == pytest.approx((-0.5, -0.5))
    # Negative advantage: clipped below at 1 - eps_low, not above (pessimistic bound).
    assert _grad_of_loss(0.5, -1.0) == pytest.approx((0.8, 0.0))
    assert _grad_of_loss(1.5, -1.0) == pytest.approx((1.5, 1.5))
    # Asymmetric: eps_high applies above, eps_low below.
    assert _grad_of_loss(1.25, 1.0)[1] != 0.0 and _grad_of_loss(1.25, 1.0, 0.2, 0.2)[1] == 0.0
    # Masked tokens do not count; the mean is over all unmasked tokens of the batch.
    new = torch.log(torch.tensor([[1.0, 9.0], [1.0, 1.0]]))
    mask = torch.tensor([[True, False], [True, True]])
    loss = clipped_policy_loss(new, torch.zeros(2, 2), torch.tensor([2.0, -1.0]), mask)
    assert float(loss) == pytest.approx((-2.0 + 1.0 + 1.0) / 3.0)
    frac = clip_fraction(torch.log(torch.tensor([[1.5, 1.0], [0.5, 1.0]])), torch.zeros(2, 2),
                         torch.tensor([1.0, -1.0]), torch.ones(2, 2, dtype=torch.bool))
    assert frac == pytest.approx(0.5)


def test_plan_rewards_weigh_only_the_rewards_that_depend_on_the_plan():
    weights = {"reasoning": 1.0, "consistency": 0.5, "trajectory": 2.0}
    rollouts = [RolloutReward(9.0, {"reasoning": 5.0, "consistency": 1.0, "trajectory": -0.5}),
                RolloutReward(9.0, {"reasoning": 0.0, "consistency": 0.0, "trajectory": 0.25}),
                RolloutReward(9.0, {"reasoning": 3.0})]  # no plan rewards: 0
    assert plan_rewards(rollouts, weights).tolist() == pytest.approx([-0.5, 0.5, 0.0])
    assert plan_rewards(rollouts, {"reasoning": 1.0}).tolist() == [0.0, 0.0, 0.0]


def test_kl_k3():
    mask = torch.tensor([[True, True, False]])
    same = torch.log(torch.tensor([[0.2, 0.5, 0.1]]))
    assert float(kl_k3(same, same, mask)) == 0.0
    ref = same + torch.tensor([[math.log(2.0), 0.0, 5.0]])  # d = log 2 on the first token
    assert float(kl_k3(same, ref, mask)) == pytest.approx((2.0 - math.log(2.0) - 1.0) / 2)
    assert float(kl_k3(same, same - 1.0, mask)) > 0.0  # non-negative either way


def test_disagreement_and_prompt_selection():
    logp = np.array([[-1.0, -2.0, -3.0], [-1.0, -2.0, -3.0], [-1.0, -2.0, -3.0]])
    rewards = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    scores = disagreement_scores(logp, rewards)
    # Prompt 0: the likeliest rollout is the worst one (corr -1): std(r) = 0.816.
    assert scores[0] == pytest.approx(math.sqrt(2.0 / 3.0))
    assert scores[1] == pytest.approx(0.0) and scores[2] == 0.0
    rng = np.random.default_rng(0)
    pool = np.array([0.1, 5.0, np.nan, 3.0, 0.2, 0.0, 4.0, 0.3])
    picked = select_prompts(pool, 4, 0.5, rng)
    assert list(picked[:2]) == [1, 6] and len(set(picked)) == 4
    assert not set(picked[2:]) & {1, 6}
    assert list(select_prompts(pool, 3, 1.0, rng)) == [1, 6, 3]
    draws = {int(i) for _ in range(40) for i in select_prompts(pool, 2, 0.0, rng)}
    assert draws == set(range(8))  # pure random: NaN prompts can be drawn too
    with pytest.raises(ValueError, match="k must be"):
        select_prompts(pool, 9, 0.5, rng)
    # Unscored (NaN) prompts are never top picks: with one scored prompt, one top pick.
    one = np.array([np.nan, np.nan, 2.0, np.nan, np.nan])
    firsts = {int(select_prompts(one, 3, 1.0, rng)[0]) for _ in range(5)}
    assert firsts == {2}
    unscored = np.full(6, np.nan)
    assert len({tuple(select_prompts(unscored, 2, 1.0, rng)) for _ in range(20)}) > 1


def test_disagreement_pool_picks_scored_prompts_and_round_trips():
    rng = np.random.default_rng(1)
    pool = DisagreementPool(10, 0.5)
    assert len(set(pool.pick(4, rng))) == 4
    pool.update([3, 7, 1], [0.9, 0.5, 0.0])
    picked = pool.pick(4, rng)
    assert list(picked[:2]) == [3, 7] and len(set(picked)) == 4
    clone = DisagreementPool(10, 0.0)
    clone.load_state_dict(json.loads(json.dumps(pool.state_dict())))
    np.testing.assert_array_equal(clone.scores, pool.scores)
    assert clone.fraction == 0.5
    with pytest.raises(ValueError, match="indices"):
        pool.update([1, 2], [0.1])


# --------------------------------------------------------------------------- tiny model
@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_config("tiny", corpus=TEXTS * 4, seed=0, device="cpu")


def _samples(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = synthetic_sample(rng, navigation="turn left at the next junction" if i % 2 else "")
        s.coc = CocLabel("lead_obstacle_following", "lane_keeping",
                         [CriticalComponentLabel(0, 0, "a1", "the red car is stopped 20 m ahead",
                                                 (22.0, 0.0, 0.0))], TEXTS[0])
        out.append(s)
    return out


def _sampled_logprobs(model, inputs, max_tokens: int, temperature: float, seed: int):
    """Sample like generate_reasoning, step by step, keeping each token's log-prob."""
    gen = torch.Generator().manual_seed(seed)
    ctx = model.prefill(inputs)
    allowed = text_allowed(model, ctx.logits.shape[-1], ctx.logits.device)
    b = inputs.batch_size
    done = torch.zeros(b, dtype=torch.bool)
    toks, logps = [], []
    for _ in range(max_tokens):
        logits = ctx.logits.masked_fill(~allowed, float("-inf")).float() / temperature
        nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]
        lp = torch.log_softmax(logits, -1).gather(1, nxt[:, None])[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, model.ids.pad), nxt)
        toks.append(nxt)
        logps.append(torch.where(done, torch.zeros_like(lp), lp))
        ctx = model.step(ctx, nxt, ~done)
        done = done | (nxt == model.ids.coc_end)
    return torch.stack(toks, 1), torch.stack(logps, 1), done


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_equal_the_sampling_logprobs(policy, temperature):
    model = policy.model
    inputs = policy.processor(_samples(3), with_targets=False)
    with torch.no_grad():
        toks, logps, done = _sampled_logprobs(model, inputs, 14, temperature, seed=3)
        is_end = toks == model.ids.coc_end
        valid = (toks != model.ids.pad) & ~is_end
        ids = torch.where(valid, toks, torch.full_like(toks, model.ids.pad))
        got = token_logprobs(model, inputs, ids, valid, temperature)
    n = valid.sum(1)
    assert got.shape == (3, 15)
    for i in range(3):
        k = int(n[i])
        assert torch.allclose(got[i, :k], logps[i, :k], atol=1e-5, rtol=0), (i, got[i], logps[i])
        if bool(done[i]):  # the sampled </coc>
            assert torch.allclose(got[i, k], logps[i, k], atol=1e-5, rtol=0)
        assert bool((got[i, k + 1:] == 0).all())
    # Same log-probs with the valid tokens scattered (packing) and gradients flow.
    shuffled_ids = torch.cat([torch.full((3, 2), model.ids.pad), ids], 1)
    shuffled_valid = torch.cat([torch.zeros(3, 2, dtype=torch.bool), valid], 1)
    again = token_logprobs(model, inputs, shuffled_ids, shuffled_valid, temperature)
    assert torch.allclose(again[:, :15], got, atol=1e-5)
    assert again.requires_grad


def test_token_logprobs_of_given_texts_and_their_end_match_incremental_decoding(policy):
    """Texts of different lengths, each closed by </coc>, fed step by step through the cache."""
    model, tok = policy.model, policy.tokenizer
    inputs = policy.processor(_samples(3), with_targets=False)
    rows = [tok.encode(t)[:k] for t, k in zip(TEXTS, (9, 4, 0))]
    length = max(len(r) for r in rows)
    ids = torch.full((3, length), model.ids.pad)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    valid = ids != model.ids.pad
    with torch.no_grad():
        got = token_logprobs(model, inputs, ids, valid)
        ctx = model.prefill(inputs)
        allowed = text_allowed(model, ctx.logits.shape[-1], ctx.logits.device)
        feed = torch.cat([ids, torch.full((3, 1), model.ids.pad)], 1)
        n = valid.sum(1)
        feed[torch.arange(3), n] = model.ids.coc_end
        want = torch.zeros(3, length + 1)
        for j in range(length + 1):
            live = j <= n
            lp = torch.log_softmax(ctx.logits.masked_fill(~allowed, float("-inf")), -1)
            want[:, j] = torch.where(live, lp.gather(1, feed[:, j: j + 1])[:, 0], 0.0)
            ctx = model.step(ctx, feed[:, j], live)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert bool((got[2, 1:] == 0).all()) and float(got[2, 0]) < 0.0  # empty text: </coc> only


def test_sample_group_shapes_and_rewards(policy):
    cfg = RLConfig(group_size=3, max_reasoning_tokens=6, flow_steps=2)
    samples = _samples(2)
    gen = torch.Generator().manual_seed(0)
    batch = sample_group(policy.model, policy.processor, samples, cfg, gen)
    n = 2 * cfg.group_size
    assert batch.text_ids.shape[0] == n and batch.controls.shape == (n, 64, 2)
    assert batch.plans.shape == (n, 64, 3) and batch.rewards.shape == (2, 3)
    assert len(batch.texts) == n == len(batch.rollout_rewards)
    assert torch.allclose(batch.advantages.sum(1), torch.zeros(2), atol=1e-5)
    # The rewards are the weighted components of each rollout (reasoning / 5).
    for r in batch.rollout_rewards:
        assert r.total == pytest.approx(r.components["reasoning"] / 5.0
                                        + r.components["consistency"]
                                        + r.components["trajectory"])
    # The group's rows share their prompt.
    rep = repeat_inputs(batch.prompt_inputs, 3)
    assert torch.equal(rep.images, batch.inputs.images)
    assert torch.equal(batch.inputs.nav_valid[3], batch.prompt_inputs.nav_valid[1])
    mask = batch.token_mask()
    assert mask.shape == (n, batch.text_ids.shape[1] + 1)
    assert torch.equal(mask.sum(1), batch.text_valid.sum(1) + batch.finished.long())


def test_validation_rewards_score_the_nodes_greedy_plan(policy):
    """One rollout per sample, as the node makes it (greedy text, zero-noise plan).

    Whatever the batching; the model is left in the mode it was in.
    """
    cfg = RLConfig(group_size=3, max_reasoning_tokens=6, flow_steps=2)
    samples = _samples(3)
    policy.model.train()
    rewards, texts = validation_rewards(policy.model, policy.processor, samples, cfg,
                                        torch.Generator().manual_seed(0), batch_size=2)
    assert policy.model.training
    again, texts_again = validation_rewards(policy.model, policy.processor, samples, cfg,
                                            torch.Generator().manual_seed(7), batch_size=3)
    assert texts == texts_again and [r.total for r in rewards] == [r.total for r in again]
    pred = policy.predict(samples, mode="reasoning", flow_steps=2, max_reasoning_tokens=6,
                          noise_scale=0.0, seed=3)
    assert texts == list(pred.reasoning)
    for sample, r, text, controls in zip(samples, rewards, texts, pred.controls[:, 0]):
        plan = dynamics.integrate(torch.as_tensor(controls[:, 0], dtype=torch.float64),
                                  torch.as_tensor(controls[:, 1], dtype=torch.float64),
                                  torch.tensor(sample.speed_mps, dtype=torch.float64))
        want = RLRewards(cfg)(sample, [text], [[0]], controls[None].astype(np.float64),
                              plan[None, :, :3].numpy())[0]
        assert r.total == pytest.approx(want.total, abs=1e-4)


def test_rl_step_gives_a_finite_loss_with_backbone_gradients(policy):
    model = policy.model
    model.zero_grad(set_to_none=True)
    cfg = RLConfig(group_size=3, max_reasoning_tokens=6, flow_steps=2, kl_beta=0.1)
    ref = Policy.from_config("tiny", corpus=TEXTS * 4, seed=1, device="cpu").model
    seen = []
    loss, metrics = rl_step(model, ref, policy.processor, _samples(2),
                            cfg, torch.Generator().manual_seed(1), on_batch=seen.append)
    assert len(seen) == 1 and seen[0].disagreement.shape == (2,)
    assert metrics["disagreement"] == pytest.approx(float(seen[0].disagreement.mean()))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0.0
    assert all(p.grad is None for p in model.expert.parameters())  # the expert is not RL-trained
    for key in ("reward", "reward_reasoning", "reward_consistency", "reward_trajectory",
                "policy_loss", "clip_fraction", "kl", "ade_m", "collided", "disagreement"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert metrics["kl"] > 0.0  # a different reference model
    model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="ppo_epochs"):
        rl_step(model, ref, policy.processor, _samples(1), RLConfig(ppo_epochs=2))


def test_ppo_epochs_reuse_rollouts_and_clip(policy):
    model = policy.model
    cfg = RLConfig(group_size=3, max_reasoning_tokens=5, flow_steps=2, ppo_epochs=2)
    batch = collect_rollouts(model, None, policy.processor, _samples(1), cfg,
                             torch.Generator().manual_seed(2))
    assert batch.old_logp is not None and batch.ref_logp is None
    loss, metrics = policy_loss(model, batch, cfg)
    # Before any update the new policy is the old one: ratio 1, nothing clipped.
    assert metrics["clip_fraction"] == 0.0
    adv = batch.advantages.reshape(-1)
    mask = batch.token_mask()
    expected = -(adv[:, None] * mask).sum() / mask.sum()
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-5)


def test_flow_weight_trains_the_expert_with_plan_advantages(policy):
    """FPO: the expert gets gradients; at the rollouts' weights the ratio is 1."""
    model = policy.model
    model.zero_grad(set_to_none=True)
    cfg = RLConfig(group_size=3, max_reasoning_tokens=5, flow_steps=2, flow_weight=1.0,
                   flow_mc_samples=2, ppo_epochs=2)
    batch = collect_rollouts(model, None, policy.processor, _samples(2), cfg,
                             torch.Generator().manual_seed(4))
    assert batch.flow_time.shape == (6, 2) and batch.flow_noise.shape == (6, 2, 64, 2)
    assert batch.plan_advantages.shape == (2, 3)
    want = group_advantages(torch.from_numpy(
        plan_rewards(batch.rollout_rewards, cfg.reward_weights)).float().view(2, 3))
    assert torch.allclose(batch.plan_advantages, want)
    # The old losses are the current model's on the same pairs: ratio 1, nothing clipped,
    # the loss is minus the mean plan advantage.
    assert torch.allclose(batch.old_cfm, plan_flow_losses(model, batch).detach(), atol=1e-5)
    flow, metrics = flow_policy_loss(model, batch, cfg)
    assert metrics["flow_clip_fraction"] == 0.0
    assert float(flow.detach()) == pytest.approx(-float(batch.plan_advantages.mean()), abs=1e-5)
    loss, metrics = policy_loss(model, batch, cfg)
    loss.backward()
    grads = [p.grad for p in model.expert.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0.0
    for key in ("flow_policy_loss", "flow_cfm", "flow_clip_fraction"):
        assert math.isfinite(metrics[key]), key
    model.zero_grad(set_to_none=True)
    # Validation (one greedy rollout per sample) keeps no expert context: nothing to train.
    rewards, _ = validation_rewards(model, policy.processor, _samples(2), cfg)
    assert len(rewards) == 2
    with pytest.raises(ValueError, match="flow_weight"):
        flow_policy_loss(model, collect_rollouts(model, None, policy.processor, _samples(1),
                                                 RLConfig(group_size=2, max_reasoning_tokens=3,
                                                          flow_steps=1)), cfg)


def _rl_steps_change(model, processor, samples, cfg, reward_fn, params, lr: float,
                     measure) -> tuple[float, float]:
    """``measure()`` before and after 8 rl_steps with Adam on ``params``."""
    before = measure()
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(8):
        opt.zero_grad()
        loss, _ = rl_step(model, None, processor, samples, cfg, gen, reward_fn)
        loss.backward()
        opt.step()
    return before, measure()


def test_a_plan_reward_moves_the_experts_plans(policy):
    """Real learning signal for the flow expert (FPO).

    Rewarding the plans' mean acceleration makes the zero-noise plan accelerate more after
    a few steps that train the expert alone.
    """
    model = Policy.from_config("tiny", corpus=TEXTS * 4, seed=3, device="cpu").model
    processor = policy.processor
    cfg = RLConfig(group_size=8, max_reasoning_tokens=3, flow_steps=2, flow_weight=1.0,
                   reasoning_weight=0.0, consistency_weight=0.0)
    samples = _samples(2, seed=6)
    inputs = processor(samples, with_targets=False)

    def reward_fn(sample, texts, ids, controls, plans):
        return [RolloutReward(0.0, {"trajectory": float(c[:, 0].mean())}) for c in controls]

    def mean_accel() -> float:
        with torch.no_grad():
            ctx = model.prefill(inputs)
            return float(model.flow_trajectory(ctx, 2, noise_scale=0.0)[..., 0].mean())

    before, after = _rl_steps_change(model, processor, samples, cfg, reward_fn,
                                     model.expert.parameters(), 3e-3, mean_accel)
    assert after > before + 0.2, (before, after)


def test_default_rewards_use_scene_boxes_and_judge_fallback():
    cfg = RLConfig(group_size=2)
    seen = []

    def boxes_fn(sample, steps):
        seen.append(steps)
        boxes = np.full((steps, 1, 5), np.nan)
        boxes[:, 0] = (8.0, 0.0, 0.0, 4.6, 1.9)  # a car parked right ahead
        return boxes

    sample = _samples(1)[0]
    scorer = RLRewards(cfg, boxes_fn=boxes_fn)
    plan = np.stack([np.arange(1, 65) * 1.0, np.zeros(64), np.zeros(64)], axis=1)
    ctrl = np.zeros((2, 64, 2))
    out = scorer(sample, [TEXTS[0], "gibberish"], [[1], [2]], ctrl, np.stack([plan, plan]))
    assert seen == [64] and len(out) == 2
    assert all(r.details["collided"] == 1.0 for r in out)
    assert out[0].components["reasoning"] > out[1].components["reasoning"] == 0.0
    assert out[1].components["consistency"] == 0.0
    assert scene_boxes(sample, 64) is None  # no family/seed/index: no collision term
    # A sample without a label: reasoning 0 for the whole group, same detail keys (the
    # trainer all-reduces the metrics by name).
    sample.coc = None
    unlabelled = scorer(sample, [TEXTS[0], "x"], [[1], [2]], ctrl, np.stack([plan, plan]))
    assert [r.components["reasoning"] for r in unlabelled] == [0.0, 0.0]
    assert [set(r.details) for r in unlabelled] == [set(r.details) for r in out]


def test_a_reward_for_some_tokens_raises_their_probability(policy):
    """Real learning signal: rewarding even token ids makes them likelier after a few steps."""
    model = Policy.from_config("tiny", corpus=TEXTS * 4, seed=2, device="cpu").model
    processor = policy.processor
    cfg = RLConfig(group_size=8, max_reasoning_tokens=3, flow_steps=1, temperature=1.0)
    samples = _samples(1, seed=5)
    inputs = processor(samples, with_targets=False)
    even = text_allowed(model, model.vocab_size, torch.device("cpu")).clone()
    even[1::2] = False
    even[model.ids.coc_end] = False

    def reward_fn(sample, texts, ids, controls, plans):
        return [RolloutReward(float(np.mean([t % 2 == 0 for t in row])) if row else 0.0)
                for row in ids]

    def p_even() -> float:
        with torch.no_grad():
            logits = model.prefill(inputs).logits
            allowed = text_allowed(model, logits.shape[-1], logits.device)
            probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1)
        return float(probs[:, even].sum(1).mean())

    before, after = _rl_steps_change(model, processor, samples, cfg, reward_fn,
                                     model.parameters(), 1e-2, p_even)
    assert after > before + 0.2, (before, after)
