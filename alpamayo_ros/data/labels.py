"""Per-step labels: the expert's decision at every step, with CoC text where AR1 allows it.

:func:`alpamayo_ros.data.coc.label_episode` labels only keyframes (decision changes).
The expert, though, knows its decision and its causes at every step, so every step with
a full history and future window can carry a training target: the (longitudinal,
lateral) decision always, and a Chain-of-Causality label built exactly like a keyframe's
(:func:`alpamayo_ros.data.coc.coc_at`: reasoning text from the step's causes,
meta-actions from the future) unless a cited cause was not observable in the 2 s window
(AR1's observability rule), in which case the step has no text and says why. At the
keyframe indices of ``label_episode`` the label is the keyframe's.
"""

from __future__ import annotations

from dataclasses import dataclass

from alpamayo_ros.data.coc import LabelConfig, coc_at, label_episode
from alpamayo_ros.data.scenarios import Episode
from alpamayo_ros.sample import CocLabel


@dataclass
class StepLabel:
    """Targets of one step of an episode."""

    index: int  # frame index in the episode
    decisions: tuple[str, str]  # the expert's (longitudinal, lateral) decision
    coc: CocLabel | None  # None when a cited cause was not observable
    keyframe: bool  # True exactly at label_episode's keyframes
    reason: str = ""  # why coc is None, e.g. "unobservable: crosser"


def label_range(episode: Episode, config: LabelConfig = LabelConfig()) -> range:
    """Frame indices with a full history and future window (same as label_episode)."""
    first = max(config.history_steps - 1, episode.first_sample_index)
    last = len(episode.frames) - 1 - config.future_steps
    return range(first, max(first, last + 1))


def label_steps(episode: Episode, config: LabelConfig = LabelConfig()) -> list[StepLabel]:
    """A :class:`StepLabel` for every index of :func:`label_range`, in order."""
    keyframes = {k.index: k.label for k in label_episode(episode, config)}
    out = []
    for i in label_range(episode, config):
        rec = episode.frames[i].decision
        decisions = (rec.longitudinal, rec.lateral)
        if i in keyframes:
            out.append(StepLabel(i, decisions, keyframes[i], True))
            continue
        coc, _, bad = coc_at(episode, i, config)
        reason = f"unobservable: {', '.join(sorted(set(bad)))}" if coc is None else ""
        out.append(StepLabel(i, decisions, coc, False, reason))
    return out
