"""RL rewards of one rollout (reasoning text + trajectory): pure functions, no torch.

AR1's RL stage scores each sampled rollout with three rewards; :func:`combine_rewards`
adds them with the weights of :class:`alpamayo_ros.training.grpo.RLConfig`.

**Reasoning** (:func:`grade_reasoning`, 0-5): a rule-based critic that grades a generated
Chain-of-Causality trace against the reference :class:`~alpamayo_ros.sample.CocLabel`
(AR1 uses a large reasoning model as the grader; :mod:`alpamayo_ros.training.judge` is
the optional LLM version, this critic is the fallback). Rubric:

- text that :func:`alpamayo_ros.data.consistency.parse_reasoning` cannot parse (no
  decision phrase, or two conflicting ones on a channel) scores **0**, nothing else counts;
- **decisions, 2 points**: 1 for the labelled longitudinal decision, 1 for the labelled
  lateral decision (a direction word, when both texts name one, must match too);
- **causes, 2 points**: 2 x the share of the label's components the text cites. Cause
  mentions are object kinds (car, van, truck, bus, ambulance, pedestrian, cyclist, cone,
  barrier, with their synonyms), vehicle colours ("the red hatchback"), the traffic
  light's state, a stop sign, road events (curve, corner, speed bump, school zone, work
  zone), a lane that ends, and the route. A component is cited when the text makes one
  of the mentions of its description (components whose description has none, such as
  "the lane ahead is clear", are not counted; a label whose components have none uses
  its text's mentions as one component). A label with no mention at all gives 2 points;
- **faithfulness, 1 point, minus 0.5 per error**: an error is an invented mention (a kind,
  colour, light state, control or road event that neither the label's text nor its
  components mention) or a wrong number: a distance (m) or speed (km/h) farther than
  ``max(abs_tol, rel_tol x value)`` from every reference number of the same unit.
  Reference distances are the label's numbers and its components' ranges
  (``|position_m|``); reference speeds are the label's numbers and the ego speed.
  A number whose unit has no reference is not judged.

The total is clipped to [0, 5].

**Consistency** (:func:`consistency_reward`, 0-1): the meta-actions of the rollout's
trajectory rule-matched against the decisions parsed from its text
(:func:`alpamayo_ros.data.consistency.consistency_score`); unparseable text scores 0.

**Trajectory** (:func:`trajectory_reward`): the released recipe's shape, with AR1's
collision term. ``fail_reward`` (-1) when the average displacement to the expert's future
is at least ``ade_fail_m`` (3 m) or the plan is not finite; otherwise
``l2_weight x (1 - min(MSD / ade_fail_m^2, 1)) + comfort_weight x comfort`` where MSD is
the mean squared displacement (AR1's ||x - x_ref||^2) and ``comfort`` the share of AR1's
comfort bounds the plan keeps (:data:`COMFORT_CHECKS`: the evaluation's
:func:`alpamayo_ros.eval.metrics.comfort_violations`). A collision with the agents' true
future boxes (:mod:`alpamayo_ros.eval.scene`) subtracts ``collision_weight`` in both cases.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from alpamayo_ros.data.consistency import consistency_score, parse_reasoning
from alpamayo_ros.eval.metrics import COMFORT_BOUNDS
from alpamayo_ros.eval.metrics import comfort_violations as eval_comfort_violations
from alpamayo_ros.sample import CocLabel

REWARD_NAMES = ("reasoning", "consistency", "trajectory")
REASONING_MAX = 5.0
MPS_TO_KMH = 3.6

# --------------------------------------------------------------------------- reasoning
# Canonical object kinds and the words that name them (longest phrases first when matched).
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "car": ("car", "cars", "sedan", "hatchback"),
    "van": ("van", "vans", "delivery van", "minivan"),
    "truck": ("truck", "trucks", "lorry", "box truck"),
    "bus": ("bus", "city bus"),
    "ambulance": ("ambulance", "emergency vehicle"),
    "pedestrian": ("pedestrian", "pedestrians", "person on foot", "walker"),
    "cyclist": ("cyclist", "cyclists", "person on a bike", "bicycle rider", "bicycle"),
    "cone": ("cone", "cones"),
    "barrier": ("barrier", "barriers"),
}
VEHICLE_COLOURS = ("white", "black", "silver", "red", "blue", "green", "yellow", "grey",
                   "gray", "orange")
_KIND_PATTERN = "|".join(sorted((re.escape(w) for ws in KIND_WORDS.values() for w in ws),
                                key=len, reverse=True))
_KIND_RE = re.compile(rf"\b({_KIND_PATTERN})\b")
_WORD_TO_KIND = {w: k for k, ws in KIND_WORDS.items() for w in ws}
_COLOUR_RE = re.compile(rf"\b({'|'.join(VEHICLE_COLOURS)})\s+(?:[a-z]+\s+)?({_KIND_PATTERN})\b")
_LIGHT_RE = re.compile(r"(?<!brake )\b(?:light|signal)s?\b[^.;]{0,40}?\b(red|yellow|amber|green)\b")
_MENTION_RES: dict[str, re.Pattern] = {
    "control:stop_sign": re.compile(r"\bstop sign\b"),
    "event:curve": re.compile(r"\b(?:curve|bend)s?\b"),
    "event:corner": re.compile(r"\bcorner\b"),
    "event:speed_bump": re.compile(r"\bspeed (?:bump|hump)s?\b"),
    "event:school_zone": re.compile(r"\bschool zone\b"),
    "event:work_zone": re.compile(r"\bwork zone\b|\broad ?works\b|\bconstruction\b"),
    "lane_end": re.compile(r"\blane\b[^.;]{0,20}?\b(?:ends|ending|runs out)\b"),
    "route": re.compile(r"\broute\b"),
}
_NUMBER_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(km/h|m(?!/))\b")


def cause_mentions(text: str) -> frozenset[str]:
    """Cause mentions in a text: ``kind:car``, ``colour:red``, ``light:red``, ``route``..."""
    low = text.lower()
    out = {f"kind:{_WORD_TO_KIND[m.group(1)]}" for m in _KIND_RE.finditer(low)}
    out |= {f"colour:{'grey' if m.group(1) == 'gray' else m.group(1)}"
            for m in _COLOUR_RE.finditer(low)}
    out |= {f"light:{'yellow' if m.group(1) == 'amber' else m.group(1)}"
            for m in _LIGHT_RE.finditer(low)}
    out |= {name for name, pattern in _MENTION_RES.items() if pattern.search(low)}
    return frozenset(out)


def numbers(text: str) -> list[tuple[float, str]]:
    """``(value, unit)`` of every distance (``m``) and speed (``km/h``) in a text."""
    return [(float(m.group(1)), m.group(2)) for m in _NUMBER_RE.finditer(text.lower())]


@dataclass(frozen=True)
class CriticConfig:
    """Points and tolerances of the rule-based reasoning critic (see the module docstring)."""

    decision_points: float = 1.0  # per channel
    cause_points: float = 2.0
    faithful_points: float = 1.0
    error_penalty: float = 0.5
    distance_abs_tol_m: float = 5.0
    distance_rel_tol: float = 0.3
    speed_abs_tol_kmh: float = 5.0
    speed_rel_tol: float = 0.2

    def __post_init__(self) -> None:
        for name in ("decision_points", "cause_points", "faithful_points", "error_penalty",
                     "distance_abs_tol_m", "distance_rel_tol", "speed_abs_tol_kmh",
                     "speed_rel_tol"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if 2 * self.decision_points + self.cause_points + self.faithful_points > REASONING_MAX:
            raise ValueError("decision_points * 2 + cause_points + faithful_points must be "
                             f"<= {REASONING_MAX}")


@dataclass(frozen=True)
class ReasoningGrade:
    """The critic's grade of one trace and its parts."""

    score: float  # 0 .. 5
    parseable: bool
    longitudinal_ok: bool = False
    lateral_ok: bool = False
    cause_recall: float = 0.0
    invented: tuple[str, ...] = ()
    wrong_numbers: tuple[str, ...] = ()


def _reference_numbers(label: CocLabel, ego_speed_mps: float | None
                       ) -> dict[str, list[float]]:
    ref: dict[str, list[float]] = {"m": [], "km/h": []}
    for text in [label.text] + [c.description for c in label.components]:
        for value, unit in numbers(text):
            ref[unit].append(value)
    for c in label.components:
        x, y = float(c.position_m[0]), float(c.position_m[1])
        if math.isfinite(x) and math.isfinite(y):
            ref["m"].append(math.hypot(x, y))
    if ego_speed_mps is not None and math.isfinite(ego_speed_mps):
        ref["km/h"].append(ego_speed_mps * MPS_TO_KMH)
    return ref


def grade_reasoning(text: str, label: CocLabel, ego_speed_mps: float | None = None,
                    config: CriticConfig = CriticConfig()) -> ReasoningGrade:
    """Grade a generated CoC trace against its reference label on 0-5 (module docstring)."""
    parsed = parse_reasoning(text)
    if not text or not parsed.parseable:
        return ReasoningGrade(0.0, False)
    ref_direction = parse_reasoning(label.text).lateral_direction
    lon_ok = parsed.longitudinal == label.longitudinal_decision
    lat_ok = parsed.lateral == label.lateral_decision and not (
        ref_direction and parsed.lateral_direction
        and ref_direction != parsed.lateral_direction)
    groups = [m for m in (cause_mentions(c.description) for c in label.components) if m]
    ref = frozenset().union(cause_mentions(label.text), *groups)
    if not groups and ref:
        groups = [ref]
    got = cause_mentions(text)
    recall = sum(bool(got & g) for g in groups) / len(groups) if groups else 1.0
    invented = tuple(sorted(got - ref))
    tol = {"m": (config.distance_abs_tol_m, config.distance_rel_tol),
           "km/h": (config.speed_abs_tol_kmh, config.speed_rel_tol)}
    ref_numbers = _reference_numbers(label, ego_speed_mps)
    wrong = []
    for value, unit in numbers(text):
        refs = ref_numbers[unit]
        abs_tol, rel_tol = tol[unit]
        if refs and not any(abs(value - r) <= max(abs_tol, rel_tol * r) for r in refs):
            wrong.append(f"{value:g} {unit}")
    errors = len(invented) + len(wrong)
    score = (config.decision_points * (float(lon_ok) + float(lat_ok))
             + config.cause_points * recall
             + config.faithful_points - config.error_penalty * errors)
    return ReasoningGrade(float(min(max(score, 0.0), REASONING_MAX)), True, lon_ok, lat_ok,
                          recall, invented, tuple(wrong))


# --------------------------------------------------------------------------- consistency
def consistency_reward(text: str, plan_xyh: np.ndarray, v0_mps: float | None = None
                       ) -> float:
    """CoC-action consistency in [0, 1]; unparseable text or a non-finite plan scores 0."""
    plan = np.asarray(plan_xyh, dtype=np.float64)
    if plan.ndim != 2 or plan.shape[0] < 2 or not np.all(np.isfinite(plan)):
        return 0.0
    return float(consistency_score(text, plan, v0_mps))


# --------------------------------------------------------------------------- trajectory
# AR1 release comfort bounds: the evaluation's (one definition, eval.metrics).
COMFORT_CHECKS = tuple(COMFORT_BOUNDS)


def comfort_violations(controls: np.ndarray, v0_mps: float) -> list[str]:
    """Names of the AR1 comfort bounds a plan of controls ``(T, 2)`` (a, kappa) exceeds."""
    ctrl = np.asarray(controls, dtype=np.float64)
    if ctrl.ndim != 2 or ctrl.shape[1] != 2:
        raise ValueError(f"controls must be (T, 2), got shape {ctrl.shape}")
    return sorted(eval_comfort_violations(ctrl[:, 0], ctrl[:, 1], float(v0_mps)))


@dataclass(frozen=True)
class TrajectoryRewardConfig:
    """Weights of the trajectory reward (defaults: the released RL recipe, AR1's collision)."""

    ade_fail_m: float = 3.0
    fail_reward: float = -1.0
    l2_weight: float = 0.4
    comfort_weight: float = 0.1
    collision_weight: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ade_fail_m) and self.ade_fail_m > 0.0):
            raise ValueError(f"ade_fail_m must be > 0, got {self.ade_fail_m!r}")
        if not math.isfinite(self.fail_reward):
            raise ValueError(f"fail_reward must be finite, got {self.fail_reward!r}")
        for name in ("l2_weight", "comfort_weight", "collision_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True)
class TrajectoryScore:
    """The trajectory reward and what went into it."""

    reward: float
    ade_m: float
    msd_m2: float
    comfort: float  # share of COMFORT_CHECKS kept
    comfort_violations: tuple[str, ...] = ()
    collided: bool = False
    collision_step: int = -1


def trajectory_reward(controls: np.ndarray, plan_xyh: np.ndarray, expert_xyh: np.ndarray,
                      v0_mps: float, boxes: np.ndarray | None = None,
                      config: TrajectoryRewardConfig = TrajectoryRewardConfig()
                      ) -> TrajectoryScore:
    """Score a plan: L2 to the expert, comfort and collision (module docstring).

    ``controls`` ``(T, 2)`` (a m/s^2, kappa 1/m) and ``plan_xyh`` ``(T, 3)`` are the
    rollout's plan (the integrated controls), ``expert_xyh`` the expert's future
    ``(T, >=2)``, ``boxes`` the agents' true future boxes ``(T, N, 5)`` or None
    (:func:`alpamayo_ros.eval.scene.agents_future_boxes`; the collision test is
    :func:`alpamayo_ros.eval.scene.plan_collides`, ego box centred on the plan's poses).
    """
    plan = np.asarray(plan_xyh, dtype=np.float64)
    ref = np.asarray(expert_xyh, dtype=np.float64)
    if plan.ndim != 2 or plan.shape[1] < 3 or ref.ndim != 2 or ref.shape[1] < 2:
        raise ValueError(f"plan must be (T, 3) and expert (T, >=2), got {plan.shape} and "
                         f"{ref.shape}")
    if plan.shape[0] != ref.shape[0]:
        raise ValueError(f"plan has {plan.shape[0]} steps, expert {ref.shape[0]}")
    ctrl = np.asarray(controls, dtype=np.float64)
    if not (np.all(np.isfinite(plan)) and np.all(np.isfinite(ctrl))):
        return TrajectoryScore(config.fail_reward, math.inf, math.inf, 0.0)
    dist2 = np.sum((plan[:, :2] - ref[:, :2]) ** 2, axis=-1)
    ade, msd = float(np.mean(np.sqrt(dist2))), float(np.mean(dist2))
    violations = tuple(comfort_violations(ctrl, v0_mps))
    comfort = 1.0 - len(violations) / len(COMFORT_CHECKS)
    collided, step = False, -1
    if boxes is not None:
        from alpamayo_ros.eval.scene import plan_collides  # simulator imports: only when needed

        collided, step = plan_collides(plan[:, :3], boxes)
    if ade >= config.ade_fail_m:
        reward = config.fail_reward
    else:
        reward = (config.l2_weight * (1.0 - min(msd / config.ade_fail_m ** 2, 1.0))
                  + config.comfort_weight * comfort)
    reward -= config.collision_weight * float(collided)
    return TrajectoryScore(float(reward), ade, msd, comfort, violations, collided, step)


# --------------------------------------------------------------------------- combiner
@dataclass
class RolloutReward:
    """Total reward of one rollout and each component (for logging)."""

    total: float
    components: dict[str, float] = field(default_factory=dict)  # REWARD_NAMES, raw scales
    details: dict[str, float] = field(default_factory=dict)  # ade_m, collided, ...


def combine_rewards(components: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted sum of the components; reasoning enters as ``score / 5`` (all on ~[0, 1]).

    Components with zero weight are skipped (they may be missing); a weighted component
    that is missing raises KeyError.
    """
    total = 0.0
    for name, weight in weights.items():
        if name not in REWARD_NAMES:
            raise ValueError(f"unknown reward {name!r}; known: {REWARD_NAMES}")
        if weight == 0.0:
            continue
        value = float(components[name])
        total += weight * (value / REASONING_MAX if name == "reasoning" else value)
    return total
