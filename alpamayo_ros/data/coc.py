"""Chain-of-Causality labelling of simulated episodes, with the AR1 label rules enforced.

- **Decision minimality**: a keyframe is placed only where the (longitudinal, lateral)
  decision pair changes; decisions that last less than ``debounce_s`` are absorbed into
  the previous segment, and so is a *staggered transition*: a run shorter than
  ``stagger_s`` in which each channel only carries a decision over from the run before
  or ahead to the run after (the lane change ends, and half a second later the
  acceleration to pass does) is one change, not two. A segment that starts before a full
  history window is labelled at the first step that has one.
- **Causal correctness**: the components are the expert's binding constraint at the
  keyframe (see :mod:`alpamayo_ros.data.expert`), i.e. the proximate cause.
- **No future leakage**: every cited agent must have been visible to the cameras in the
  ``observe_window_s`` before the keyframe, every map element must be within sensing
  range at the keyframe; labels that break this are dropped (and counted).
- **Meta-actions** come from the future trajectory
  (:func:`alpamayo_ros.data.consistency.meta_actions_from_trajectory`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from alpamayo_ros.data.consistency import meta_actions_from_trajectory
from alpamayo_ros.data.expert import Cause
from alpamayo_ros.data.scenarios import Episode
from alpamayo_ros.data.text import clause, reasoning_text
from alpamayo_ros.sample import EGO_HISTORY_STEPS, FUTURE_STEPS, CocLabel, CriticalComponentLabel
from alpamayo_ros.taxonomy import ComponentType as CT
from alpamayo_ros.unicycle import DT_S


@dataclass(frozen=True)
class LabelConfig:
    """Keyframe and observability rules."""

    history_steps: int = EGO_HISTORY_STEPS
    future_steps: int = FUTURE_STEPS
    observe_window_s: float = 2.0  # AR1 labelling window
    debounce_s: float = 0.5
    stagger_s: float = 1.0
    map_range_m: float = 120.0

    def __post_init__(self) -> None:
        if self.history_steps < 1:
            raise ValueError(f"history_steps must be >= 1, got {self.history_steps}")
        if self.future_steps < 2:
            raise ValueError(f"future_steps must be >= 2, got {self.future_steps}")
        if self.observe_window_s <= 0.0:
            raise ValueError(f"observe_window_s must be > 0, got {self.observe_window_s}")
        if self.debounce_s < 0.0:
            raise ValueError(f"debounce_s must be >= 0, got {self.debounce_s}")
        if self.stagger_s < 0.0:
            raise ValueError(f"stagger_s must be >= 0, got {self.stagger_s}")
        if self.map_range_m <= 0.0:
            raise ValueError(f"map_range_m must be > 0, got {self.map_range_m}")


@dataclass
class Keyframe:
    """A labelled keyframe of an episode."""

    index: int
    label: CocLabel
    causes: list[Cause] = field(default_factory=list)


@dataclass
class LabelStats:
    """Bookkeeping of one labelling run."""

    segments: int = 0
    keyframes: int = 0
    dropped_unobservable: int = 0
    dropped_no_window: int = 0


def decision_segments(episode: Episode, debounce_s: float = 0.5, stagger_s: float = 0.0
                      ) -> list[tuple[int, int, str, str]]:
    """Runs of equal (longitudinal, lateral) decisions: ``(start, end_exclusive, lon, lat)``.

    Runs shorter than ``debounce_s`` are absorbed into the run before them, and so are
    runs shorter than ``stagger_s`` that state no decision of their own: each channel's
    decision is the one of the run before or of the run after.
    """
    min_len = max(1, int(round(debounce_s / DT_S)))
    stagger_len = int(round(stagger_s / DT_S))
    runs: list[list] = []
    for i, f in enumerate(episode.frames):
        key = (f.decision.longitudinal, f.decision.lateral)
        if runs and runs[-1][2:] == list(key):
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, *key])
    merged: list[list] = []
    for run in runs:
        if merged and (run[1] - run[0] < min_len or merged[-1][2:] == run[2:]):
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    out: list[list] = []
    for k, run in enumerate(merged):
        if out and k + 1 < len(merged) and run[1] - run[0] < stagger_len and all(
                run[2 + c] in (out[-1][2 + c], merged[k + 1][2 + c]) for c in (0, 1)):
            out[-1][1] = run[1]
        elif out and out[-1][2:] == run[2:]:
            out[-1][1] = run[1]
        else:
            out.append(list(run))
    return [tuple(r) for r in out]  # type: ignore[misc]


def to_ego_frame(xyh: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Express world poses ``(N, 3)`` (x, y, heading) in the frame of pose ``origin``."""
    dx, dy = xyh[:, 0] - origin[0], xyh[:, 1] - origin[1]
    c, s = math.cos(origin[2]), math.sin(origin[2])
    heading = np.angle(np.exp(1j * (xyh[:, 2] - origin[2])))
    return np.stack([c * dx + s * dy, -s * dx + c * dy, heading], axis=1)


def ego_future(episode: Episode, index: int, steps: int = FUTURE_STEPS) -> np.ndarray:
    """Future ego poses (steps, 3) at 0.1 .. steps*0.1 s in the ego frame at ``index``."""
    poses = episode.ego_xyhv()
    if index + steps >= len(poses):
        raise ValueError(f"index {index} has fewer than {steps} future steps")
    return to_ego_frame(poses[index + 1: index + 1 + steps, :3], poses[index, :3])


def ego_history(episode: Episode, index: int, steps: int = EGO_HISTORY_STEPS) -> np.ndarray:
    """Past ego states (steps, 4): x, y, heading, speed; oldest first, the last at t=0."""
    poses = episode.ego_xyhv()
    if index - steps + 1 < 0:
        raise ValueError(f"index {index} has fewer than {steps} history steps")
    window = poses[index - steps + 1: index + 1]
    rel = to_ego_frame(window[:, :3], poses[index, :3])
    return np.concatenate([rel, window[:, 3:4]], axis=1)


def observability_violations(episode: Episode, index: int, causes: list[Cause],
                             config: LabelConfig = LabelConfig()) -> list[str]:
    """Ids of cited components that the ego could not have observed by ``index``."""
    window = max(1, int(round(config.observe_window_s / DT_S)))
    seen: set[str] = set()
    for f in episode.frames[max(0, index - window): index + 1]:
        seen |= set(f.decision.visible)
    ego_s = episode.frames[index].ego.s
    bad = []
    for c in causes:
        if c.type == CT.CRITICAL_OBJECT:
            if c.id not in seen:
                bad.append(c.id)
        elif c.type in (CT.TRAFFIC_LIGHT, CT.YIELD_STOP_CONTROL, CT.ROAD_EVENT) or \
                c.kind == "lane_end":
            s = c.position_sd[0]
            if not (math.isfinite(s) and -30.0 <= s - ego_s <= config.map_range_m):
                bad.append(c.id)
    return bad


def component_labels(episode: Episode, index: int, causes: list[Cause],
                     rng: np.random.Generator) -> list[CriticalComponentLabel]:
    """Components of a label with ego-frame positions and short descriptions."""
    frame = episode.frames[index]
    origin = np.array([frame.ego.x, frame.ego.y, frame.ego.heading])
    road = episode.world.road
    out, ids = [], set()
    for c in causes:
        key = (int(c.type), c.id)
        if key in ids:
            continue
        ids.add(key)
        pos = (math.nan,) * 3
        if math.isfinite(c.position_sd[0]):
            x, y, _ = road.to_world(c.position_sd[0], c.position_sd[1])
            rel = to_ego_frame(np.array([[float(x), float(y), 0.0]]), origin)[0]
            pos = (float(rel[0]), float(rel[1]), 0.0)
        out.append(CriticalComponentLabel(int(c.type), int(c.uncertainty), c.id,
                                          clause(c, rng), pos))
    return out


def label_episode(episode: Episode, config: LabelConfig = LabelConfig(),
                  stats: LabelStats | None = None) -> list[Keyframe]:
    """Keyframes with CoC labels for an episode (deterministic for a given episode)."""
    stats = stats if stats is not None else LabelStats()
    n = len(episode.frames)
    first = max(config.history_steps - 1, episode.first_sample_index)
    last = n - 1 - config.future_steps
    out = []
    for start, end, lon, lat in decision_segments(episode, config.debounce_s,
                                                  config.stagger_s):
        stats.segments += 1
        candidates = [i for i in range(max(start, first), min(end, last + 1))
                      if (episode.frames[i].decision.longitudinal,
                          episode.frames[i].decision.lateral) == (lon, lat)]
        if not candidates:
            stats.dropped_no_window += 1
            continue
        index = candidates[0]
        label, causes, _ = coc_at(episode, index, config)
        if label is None:
            stats.dropped_unobservable += 1
            continue
        out.append(Keyframe(index, label, causes))
        stats.keyframes += 1
    return out


def step_causes(episode: Episode, index: int) -> list[Cause]:
    """The expert's causes at step ``index``: longitudinal ones, then new lateral ones."""
    rec = episode.frames[index].decision
    return list(rec.long_causes) + [c for c in rec.lat_causes
                                    if c.id not in {x.id for x in rec.long_causes}]


def coc_at(episode: Episode, index: int, config: LabelConfig = LabelConfig()
           ) -> tuple[CocLabel | None, list[Cause], list[str]]:
    """CoC label of step ``index`` from the expert's decision and causes at that step.

    Returns ``(label, causes, unobservable_ids)``; the label is None when a cited cause
    breaks the observability rule (:func:`observability_violations`). The text's random
    wording is seeded from (seed, index, len(family)), the seeding label_episode has
    always used, so a step always gets the same label; :func:`label_episode` uses this
    at its keyframes.
    """
    rec = episode.frames[index].decision
    causes = step_causes(episode, index)
    bad = observability_violations(episode, index, causes, config)
    if bad:
        return None, causes, bad
    rng = np.random.default_rng([episode.seed, index, len(episode.family)])
    speed = episode.frames[index].ego.v_mps
    text = reasoning_text(rec.longitudinal, rec.lateral, rec.long_causes, rec.lat_causes,
                          rng, speed)
    future = ego_future(episode, index, config.future_steps)
    meta = meta_actions_from_trajectory(future, speed)
    label = CocLabel(rec.longitudinal, rec.lateral,
                     component_labels(episode, index, causes, rng), text,
                     meta.longitudinal, meta.lateral)
    return label, causes, []
