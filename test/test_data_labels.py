"""Per-step labels (alpamayo_ros.data.labels) on simulated episodes."""

from __future__ import annotations

import copy
import dataclasses
import functools

import pytest

from alpamayo_ros.data.coc import LabelConfig, coc_at, label_episode
from alpamayo_ros.data.consistency import parse_reasoning
from alpamayo_ros.data.labels import label_range, label_steps
from alpamayo_ros.data.scenarios import make_scenario, simulate
from alpamayo_ros.taxonomy import ComponentType

FAMILIES = ("lead_at_red_light", "lane_change_abort", "hidden_pedestrian", "stop_sign",
            "pull_over")


@functools.cache
def episode(family: str, seed: int = 0):
    return simulate(make_scenario(family, seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_step_labelled_and_keyframes_identical(family):
    ep = episode(family)
    steps = label_steps(ep)
    keyframes = label_episode(ep)
    assert [s.index for s in steps] == list(label_range(ep))
    assert steps[0].index == LabelConfig().history_steps - 1
    assert steps[-1].index == len(ep.frames) - 1 - LabelConfig().future_steps
    assert [s.index for s in steps if s.keyframe] == [k.index for k in keyframes]
    by_index = {s.index: s for s in steps}
    for k in keyframes:
        assert by_index[k.index].coc == k.label
        # The keyframe label is what the per-step procedure gives at that index.
        assert coc_at(ep, k.index)[0] == k.label
    texts = set()
    for s in steps:
        rec = ep.frames[s.index].decision
        assert s.decisions == (rec.longitudinal, rec.lateral)
        assert s.coc is not None, s.reason
        assert (s.coc.longitudinal_decision, s.coc.lateral_decision) == s.decisions
        parsed = parse_reasoning(s.coc.text)
        assert (parsed.longitudinal, parsed.lateral) == s.decisions, s.coc.text
        texts.add(s.coc.text)
    # Far more labelled steps than keyframes, with varied wording (not one text per run).
    assert len(steps) > 10 * len(keyframes)
    assert len(texts) > len(keyframes)


def test_labels_are_reproducible():
    a = label_steps(episode("lead_at_red_light"))
    b = label_steps(simulate(make_scenario("lead_at_red_light", 0)))
    assert a == b


def test_unobservable_cause_gives_no_text_but_keeps_decisions():
    ep = copy.deepcopy(episode("hidden_pedestrian"))
    steps = label_steps(ep)
    cited = [s for s in steps if s.coc and any(
        c.type == ComponentType.CRITICAL_OBJECT and c.id == "pedestrian"
        for c in s.coc.components)]
    assert cited
    # Hide the pedestrian from the cameras everywhere: the expert's causes stay, but the
    # label may not cite what the ego could not have seen.
    for f in ep.frames:
        f.decision = dataclasses.replace(f.decision,
                                         visible=f.decision.visible - {"pedestrian"})
    hidden = {s.index: s for s in label_steps(ep)}
    for s in cited:
        h = hidden[s.index]
        assert h.coc is None and h.reason == "unobservable: pedestrian"
        assert h.decisions == s.decisions
        assert not h.keyframe
    # Steps that do not cite it are unchanged.
    others = [s for s in steps if s.index not in {c.index for c in cited} and not s.keyframe]
    assert others and all(hidden[s.index] == s for s in others)
