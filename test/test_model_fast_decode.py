"""Fast reasoning decode (draft-verified greedy decoding) gives the reference path's outputs.

``AlpamayoModel.generate_reasoning(..., draft=ids)`` verifies proposals taken from a
previous reasoning in batched backbone passes. These tests compare it with the
token-by-token loop: the same tokens always, the same context (cache length, positions)
and the same flow trajectory within float rounding; on the shipped weights over
consecutive frames of a scenario it also needs far fewer backbone passes (what makes it
fast; the times are measured by ``alpamayo bench latency``, not here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alpamayo_ros.model.modeling import draft_continuation
from alpamayo_ros.model.policy import Policy
from alpamayo_ros.model.synthetic import synthetic_sample

CORPUS = ["the lead vehicle brakes so we slow down", "yield to the pedestrian at the crosswalk",
          "keep the lane and follow the car ahead", "stop for the red light"] * 10


# --- the proposal ------------------------------------------------------------------------


def test_draft_continuation_follows_the_longest_matching_tail() -> None:
    draft = [1, 2, 3, 4, 5, 6]
    assert draft_continuation(draft, [1]) == [2, 3, 4, 5, 6]
    assert draft_continuation(draft, [1, 2, 3]) == [4, 5, 6]
    # A changed token (9 for 3): no match for it, so no proposal ...
    assert draft_continuation(draft, [1, 2, 9]) == []
    # ... and once the text lines up again the rest of the draft follows.
    assert draft_continuation(draft, [1, 2, 9, 4]) == [5, 6]
    assert draft_continuation(draft, [7]) == []
    assert draft_continuation([], [1, 2]) == []
    assert draft_continuation(draft, [6]) == []  # the draft's end: nothing left


def test_draft_continuation_prefers_the_occurrence_where_the_text_is() -> None:
    # Token 5 occurs twice; the text so far is 4 tokens long, so the second 5 lines up.
    draft = [5, 1, 2, 9, 5, 7, 8]
    assert draft_continuation(draft, [3, 3, 3, 3, 5]) == [7, 8]
    assert draft_continuation(draft, [5]) == [1, 2, 9, 5, 7, 8]


# --- equivalence with the token-by-token loop (tiny random model) ------------------------


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Policy.from_config("tiny", corpus=CORPUS, seed=0, device="cpu")


def _context(policy: Policy, seed: int):
    sample = synthetic_sample(np.random.default_rng(seed), num_cameras=2, height_px=48,
                              width_px=72, navigation="go straight")
    batch = policy.processor([sample], with_targets=False)
    return policy.model.prefill(batch)


def _decode(policy: Policy, seed: int, budget: int, draft):
    model = policy.model
    stats: dict[str, int] = {}
    with torch.inference_mode():
        text, ctx = model.generate_reasoning(_context(policy, seed), budget, draft=draft,
                                             stats=stats)
        noise = torch.randn(1, policy.config.num_waypoints, 2,
                            generator=torch.Generator().manual_seed(seed))
        controls = model.flow_trajectory(ctx, 4, noise=noise)
    return text, ctx, controls, stats


@pytest.mark.parametrize("budget", [0, 1, 5, 40])
@pytest.mark.parametrize("seed", [0, 1])
def test_any_draft_gives_the_reference_tokens_and_trajectory(tiny, seed, budget) -> None:
    ref_text, ref_ctx, ref_controls, ref_stats = _decode(tiny, seed, budget, None)
    own = [int(t) for t in ref_text[0] if int(t) != tiny.model.ids.pad]
    changed = list(own)
    if len(changed) > 2:
        changed[len(changed) // 2] = (changed[len(changed) // 2] + 1) % tiny.model.ids.pad
    drafts = {"own output": own, "one token changed": changed,
              "unrelated": [3, 1, 4, 1, 5, 9, 2, 6] * 4, "empty": [],
              "longer than the budget": own + own}
    for name, draft in drafts.items():
        text, ctx, controls, stats = _decode(tiny, seed, budget, draft)
        assert torch.equal(text, ref_text), name
        assert ctx.length == ref_ctx.length and torch.equal(ctx.next_position,
                                                            ref_ctx.next_position), name
        torch.testing.assert_close(ctx.logits, ref_ctx.logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(controls, ref_controls, atol=1e-4, rtol=1e-4)
        assert stats["passes"] <= ref_stats["passes"], name
    if len(own) >= 3:  # the model's own reasoning as the draft: one verification pass
        assert _decode(tiny, seed, budget, own)[3]["passes"] == 1


def test_sampling_and_batches_ignore_the_draft(tiny) -> None:
    """Only greedy decoding of one sample uses a draft (verification is greedy)."""
    model = tiny.model
    samples = [synthetic_sample(np.random.default_rng(s), num_cameras=2, height_px=48,
                                width_px=72) for s in range(2)]
    with torch.inference_mode():
        batch = tiny.processor(samples, with_targets=False)
        ref, _ = model.generate_reasoning(model.prefill(batch), 12)
        stats: dict[str, int] = {}
        out, _ = model.generate_reasoning(model.prefill(batch), 12, draft=[1, 2, 3],
                                          stats=stats)
    assert torch.equal(out, ref)
    assert stats["draft_accepted"] == 0


# --- the shipped weights on consecutive frames of a scenario -----------------------------


def test_shipped_weights_reuse_the_previous_reasoning_exactly() -> None:
    """The policy node's case: each tick's draft is the previous tick's reasoning."""
    from alpamayo_ros.inference.config import PolicyNodeConfig
    from alpamayo_ros.inference.replay import policy_inputs, render_episode
    from alpamayo_ros.inference.runner import PolicyRunner, load_rig_geometry
    from alpamayo_ros.paths import default_weights_dir

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        policy = Policy.from_pretrained(default_weights_dir(), device="cpu")
        cfg = PolicyNodeConfig(device="cpu")
        runner = PolicyRunner(cfg, policy, load_rig_geometry(cfg.camera_rig))
        episode = render_episode("lead_at_red_light", 9000, cfg.model_cameras, max_frames=12)
        previous = None
        ref_passes = fast_passes = ticks = 0
        for stamp, frames, history in policy_inputs(episode, runner.num_frames):
            sample = runner.build_sample(frames, stamp, history, episode.navigation)
            ref = policy.predict(sample, noise_scale=0.0)
            fast = policy.predict(sample, noise_scale=0.0, reasoning_draft=previous)
            assert fast.reasoning_ids == ref.reasoning_ids, stamp
            assert ref.reasoning[0]  # the trained model reasons
            np.testing.assert_allclose(fast.controls, ref.controls, atol=1e-4)
            ref_passes += ref.reasoning_passes
            fast_passes += fast.reasoning_passes
            ticks += 1
            previous = ref.reasoning_ids[0]
    finally:
        torch.set_num_threads(threads)
    assert ticks >= 10
    # Consecutive frames mostly repeat their reasoning: verified in a few passes.
    assert fast_passes * 4 < ref_passes, (fast_passes, ref_passes)
