"""CoC <-> action consistency: trajectory meta-actions, reasoning parser and the score.

AR1's RL stage rewards a trajectory that does what its reasoning says: the trajectory is
reduced to meta-actions (longitudinal: gentle/strong accelerate, gentle/strong decelerate,
maintain speed, stop, reverse; lateral: steer left/right, sharp steer left/right, reverse
left/right, go straight), the reasoning is parsed into one decision per channel, and the
two are rule-matched on both axes; unparseable reasoning scores 0.

Public API (training and evaluation reuse it):

- :func:`meta_actions_from_trajectory` -> :class:`MetaActions`
- :func:`parse_reasoning` -> :class:`ParsedCoc` (decisions and lateral direction from text)
- :func:`consistency_score` (text, :class:`~alpamayo_ros.sample.CocLabel` or
  :class:`ParsedCoc`, plus a trajectory) -> float in [0, 1]: the mean over the two axes of
  1 if the decision allows the derived meta-action (and its direction, when the text
  names one), else 0. A channel with no decision ("") accepts anything.

The decision phrases the parser recognises are the ones :mod:`alpamayo_ros.data.text`
composes; a test checks every generated trace parses back to its own decisions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from alpamayo_ros.sample import CocLabel
from alpamayo_ros.taxonomy import LateralDecision as Lat
from alpamayo_ros.taxonomy import LateralMetaAction as LatMA
from alpamayo_ros.taxonomy import LongitudinalDecision as Lon
from alpamayo_ros.taxonomy import LongitudinalMetaAction as LonMA
from alpamayo_ros.unicycle import DT_S


@dataclass(frozen=True)
class MetaActionConfig:
    """Thresholds that turn a trajectory into meta-actions."""

    lon_horizon_s: float = 3.0  # mean acceleration is measured over this window
    strong_accel_mps2: float = 1.5
    gentle_accel_mps2: float = 0.3
    strong_decel_mps2: float = 2.5  # magnitude
    gentle_decel_mps2: float = 0.3  # magnitude
    stop_speed_mps: float = 0.3  # reaching this speed within the horizon counts as a stop
    reverse_m: float = 0.5  # backward travel that counts as reversing
    steer_offset_m: float = 0.8  # lateral excursion that counts as steering
    sharp_heading_rad: float = 0.6  # heading change that counts as a sharp steer
    reference_window_s: float = 2.0  # the road direction is the median heading of the end

    def __post_init__(self) -> None:
        for name in ("lon_horizon_s", "strong_accel_mps2", "gentle_accel_mps2",
                     "strong_decel_mps2", "gentle_decel_mps2", "stop_speed_mps", "reverse_m",
                     "steer_offset_m", "sharp_heading_rad", "reference_window_s"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.gentle_accel_mps2 >= self.strong_accel_mps2:
            raise ValueError("gentle_accel_mps2 must be < strong_accel_mps2")
        if self.gentle_decel_mps2 >= self.strong_decel_mps2:
            raise ValueError("gentle_decel_mps2 must be < strong_decel_mps2")


@dataclass(frozen=True)
class MetaActions:
    """Meta-actions of one trajectory."""

    longitudinal: str  # taxonomy.LongitudinalMetaAction value
    lateral: str  # taxonomy.LateralMetaAction value


def meta_actions_from_trajectory(
    xy_m: np.ndarray,
    v0_mps: float | None = None,
    heading_rad: np.ndarray | None = None,
    dt_s: float = DT_S,
    config: MetaActionConfig = MetaActionConfig(),
) -> MetaActions:
    """Meta-actions of a future trajectory in the ego frame.

    ``xy_m`` is ``(T, 2)`` (or ``(T, >=2)``, extra columns such as heading are used as
    ``heading_rad`` when that is not given): positions at ``dt_s, 2 dt_s, ...`` relative
    to the ego at the origin facing +x. ``v0_mps`` is the current speed (estimated from
    the first step when omitted).
    """
    traj = np.asarray(xy_m, dtype=np.float64)
    if traj.ndim != 2 or traj.shape[1] < 2 or traj.shape[0] < 2:
        raise ValueError(f"trajectory must be (T>=2, >=2), got shape {traj.shape}")
    if not np.all(np.isfinite(traj[:, :2])):
        raise ValueError("trajectory contains NaN or inf")
    if heading_rad is None and traj.shape[1] >= 3:
        heading_rad = traj[:, 2]
    pts = np.vstack([[0.0, 0.0], traj[:, :2]])
    seg = np.diff(pts, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    if heading_rad is None:
        # Heading from the displacements, starting at 0 (the ego faces +x); a displacement
        # pointing more than 90 degrees away from the heading is the car backing up.
        heading = np.empty(len(seg))
        prev = 0.0
        for i, (sx, sy) in enumerate(seg):
            if seg_len[i] > 1e-3:
                ang = prev + float(np.angle(np.exp(1j * (np.arctan2(sy, sx) - prev))))
                if abs(ang - prev) > np.pi / 2:
                    ang -= np.pi * np.sign(ang - prev)
                prev = ang
            heading[i] = prev
    else:
        heading = np.unwrap(np.concatenate([[0.0], np.asarray(heading_rad, float)]))[1:]
    prev_heading = np.concatenate([[0.0], heading[:-1]])
    along = seg[:, 0] * np.cos(prev_heading) + seg[:, 1] * np.sin(prev_heading)
    speed = along / dt_s  # signed
    v0 = float(speed[0]) if v0_mps is None else float(v0_mps)
    # Longitudinal.
    if np.sum(np.minimum(along, 0.0)) < -config.reverse_m:
        lon = LonMA.REVERSE.value
    elif _stops(speed, v0, config.stop_speed_mps, int(round(1.0 / dt_s))):
        lon = LonMA.STOP.value
    else:
        n = max(1, min(len(speed), int(round(config.lon_horizon_s / dt_s))))
        mean_acc = (float(np.mean(speed[max(0, n - 3):n])) - v0) / (n * dt_s)
        if mean_acc >= config.strong_accel_mps2:
            lon = LonMA.STRONG_ACCELERATE.value
        elif mean_acc >= config.gentle_accel_mps2:
            lon = LonMA.GENTLE_ACCELERATE.value
        elif mean_acc <= -config.strong_decel_mps2:
            lon = LonMA.STRONG_DECELERATE.value
        elif mean_acc <= -config.gentle_decel_mps2:
            lon = LonMA.GENTLE_DECELERATE.value
        else:
            lon = LonMA.MAINTAIN_SPEED.value
    # Lateral: excursion across the road direction at the end of the horizon, taken as the
    # median heading of its last ``reference_window_s``: aligned with the road once a
    # manoeuvre is done (a lane change that has started still ends to the side it goes,
    # even while the car is already straightening out), and not turned by a manoeuvre
    # that only begins in the last moments (the instantaneous final heading would be).
    # The total heading change ``dh`` decides a sharp steer.
    dh = float(heading[-1])
    tail = max(1, min(len(heading), int(round(config.reference_window_s / dt_s))))
    ref = float(np.median(heading[-tail:]))
    y = -np.sin(ref) * traj[:, 0] + np.cos(ref) * traj[:, 1]
    extreme = float(y[int(np.argmax(np.abs(y)))])
    side = "left" if (abs(dh) > config.sharp_heading_rad and dh > 0) or \
        (abs(dh) <= config.sharp_heading_rad and extreme > 0) else "right"
    if lon == LonMA.REVERSE.value and (abs(extreme) > config.steer_offset_m or
                                       abs(dh) > config.sharp_heading_rad):
        lat = LatMA.REVERSE_LEFT.value if extreme > 0 else LatMA.REVERSE_RIGHT.value
    elif abs(dh) > config.sharp_heading_rad:
        lat = LatMA.SHARP_STEER_LEFT.value if side == "left" else LatMA.SHARP_STEER_RIGHT.value
    elif abs(extreme) > config.steer_offset_m:
        lat = LatMA.STEER_LEFT.value if side == "left" else LatMA.STEER_RIGHT.value
    else:
        lat = LatMA.GO_STRAIGHT.value
    return MetaActions(lon, lat)


def _stops(speed: np.ndarray, v0: float, stop_mps: float, hold_steps: int) -> bool:
    """A moving car comes to rest, or a car at rest stays at rest for ``hold_steps``."""
    if v0 >= stop_mps:
        return bool(np.min(speed) < stop_mps)
    return bool(np.all(speed[:hold_steps] < stop_mps))


# --------------------------------------------------------------------------- parsing
# Decision phrases. Each decision has its own anchor words; text.py composes from these.
LONGITUDINAL_PATTERNS: dict[str, re.Pattern] = {
    Lon.SET_SPEED_TRACKING.value: re.compile(r"\bcruis(?:e|ing)\b|\bset speed\b"),
    Lon.LEAD_OBSTACLE_FOLLOWING.value: re.compile(
        r"\bfollow(?:s|ing)?\b|\bstay(?:ing)? behind\b|\bgap behind\b"),
    Lon.SPEED_ADAPTATION.value: re.compile(
        r"\badapt\w* (?:my |the )?speed\b|\bslow(?:ing)? down for\b|\bease off\b"
        r"|\breduc\w+ (?:my )?speed for\b"),
    Lon.GAP_SEARCHING.value: re.compile(
        r"\b(?:look|search|wait|hunt)(?:ing)? for an? (?:\w+ )?(?:gap|opening)\b"),
    Lon.ACCELERATE_TO_PASS.value: re.compile(
        r"\b(?:accelerat\w*|speed(?:ing)? up) (?:to (?:pass|overtake|get past|clear)|past)\b"),
    Lon.YIELD.value: re.compile(
        r"\byield(?:s|ing)?\b|\bgiv(?:e|ing) way\b"
        r"|\blet(?:ting)? (?:it|them|him|her|the \w+) (?:cross|pass|go)\b"),
    Lon.STOP_FOR_STATIC_CONSTRAINT.value: re.compile(
        r"\b(?:stop|halt)\w* (?:at|before|short of) the (?:stop |white )?line\b"
        r"|\bcome to a (?:full |complete )?stop at the (?:stop )?line\b"),
}
LATERAL_PATTERNS: dict[str, re.Pattern] = {
    Lat.LANE_KEEPING.value: re.compile(
        r"\b(?:keep|stay|remain)\w* (?:centred |centered )?(?:in|to|within) "
        r"(?:the|my|this) lane\b"),
    Lat.MERGE_SPLIT.value: re.compile(r"\bmerg\w*\b|\bsplit\w* off\b|\btake the exit\b"),
    Lat.OUT_OF_LANE_NUDGE.value: re.compile(
        r"\bnudg\w* out of (?:my|the) lane\b|\bedg\w* (?:partly |briefly )?into the \w+ lane\b"
        r"|\bswing\w* (?:out|wide) into the\b"),
    Lat.IN_LANE_NUDGE.value: re.compile(
        r"\b(?:nudg|shift|bias)\w* [\w ]{0,25}?\b(?:within|inside) (?:my|the) lane\b"),
    Lat.LANE_CHANGE.value: re.compile(
        r"\bchang\w* (?:in)?to the (?:left|right)(?: |-hand )?lane\b"
        r"|\bmov\w* over (?:in)?to the (?:left|right) lane\b"
        r"|\bswitch\w* lanes? to the (?:left|right)\b"),
    Lat.PULL_OVER.value: re.compile(
        r"\bpull\w* (?:over|to the (?:curb|kerb|side|shoulder)|onto the shoulder)\b"),
    Lat.TURN.value: re.compile(r"\bturn(?:ing)? (?:left|right)\b|\b(?:left|right) turn\b"
                               r"|\bu-turn\b"),
    Lat.LATERAL_MANEUVER_ABORT.value: re.compile(
        r"\b(?:abort|abandon|cancel|call off)\w* (?:the|my) "
        r"(?:lane change|manoeuvre|maneuver|pass)\b"),
}
_DIRECTION = re.compile(r"\b(left|right)\b")


@dataclass(frozen=True)
class ParsedCoc:
    """Decisions recovered from reasoning text ("" = none, None = ambiguous)."""

    longitudinal: str | None
    lateral: str | None
    lateral_direction: str | None = None  # "left" | "right" when the text names one

    @property
    def parseable(self) -> bool:
        """At least one channel named exactly one decision and none was ambiguous."""
        return (self.longitudinal is not None and self.lateral is not None
                and (self.longitudinal != "" or self.lateral != ""))


def _match_one(text: str, patterns: dict[str, re.Pattern]) -> tuple[str | None, re.Match | None]:
    hits = [(name, m) for name, p in patterns.items() if (m := p.search(text))]
    if not hits:
        return "", None
    if len({name for name, _ in hits}) > 1:
        return None, None
    return hits[0]


def decision_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of every decision phrase in ``text``, both channels.

    The phrases are the ones :func:`parse_reasoning` reads (case-insensitive), in order of
    their start; training weights the tokens inside them (``decision_token_weight``).
    """
    if not isinstance(text, str):
        return []
    low = text.lower()
    spans = {(m.start(), m.end())
             for patterns in (LONGITUDINAL_PATTERNS, LATERAL_PATTERNS)
             for pattern in patterns.values() for m in pattern.finditer(low)}
    return sorted(spans)


def parse_reasoning(text: str) -> ParsedCoc:
    """Parse a reasoning trace into one decision per channel (and the lateral direction)."""
    if not isinstance(text, str):
        return ParsedCoc(None, None)
    low = text.lower()
    lon, _ = _match_one(low, LONGITUDINAL_PATTERNS)
    lat, match = _match_one(low, LATERAL_PATTERNS)
    direction = None
    if match is not None:
        window = low[match.start(): match.end() + 25]
        found = _DIRECTION.findall(window)
        direction = found[0] if found else None
    return ParsedCoc(lon, lat, direction)


# --------------------------------------------------------------------------- rules
ALLOWED_LONGITUDINAL: dict[str, frozenset[str]] = {
    Lon.SET_SPEED_TRACKING.value: frozenset({
        LonMA.MAINTAIN_SPEED.value, LonMA.GENTLE_ACCELERATE.value, LonMA.GENTLE_DECELERATE.value}),
    Lon.LEAD_OBSTACLE_FOLLOWING.value: frozenset({
        LonMA.MAINTAIN_SPEED.value, LonMA.GENTLE_ACCELERATE.value, LonMA.GENTLE_DECELERATE.value,
        LonMA.STRONG_DECELERATE.value, LonMA.STOP.value}),
    Lon.SPEED_ADAPTATION.value: frozenset({
        LonMA.GENTLE_DECELERATE.value, LonMA.STRONG_DECELERATE.value, LonMA.MAINTAIN_SPEED.value}),
    Lon.GAP_SEARCHING.value: frozenset({
        LonMA.GENTLE_DECELERATE.value, LonMA.STRONG_DECELERATE.value, LonMA.MAINTAIN_SPEED.value,
        LonMA.GENTLE_ACCELERATE.value}),
    Lon.ACCELERATE_TO_PASS.value: frozenset({
        LonMA.GENTLE_ACCELERATE.value, LonMA.STRONG_ACCELERATE.value}),
    Lon.YIELD.value: frozenset({
        LonMA.GENTLE_DECELERATE.value, LonMA.STRONG_DECELERATE.value, LonMA.STOP.value,
        LonMA.MAINTAIN_SPEED.value}),
    Lon.STOP_FOR_STATIC_CONSTRAINT.value: frozenset({
        LonMA.GENTLE_DECELERATE.value, LonMA.STRONG_DECELERATE.value, LonMA.STOP.value}),
}
_FORWARD_LATERAL = frozenset({LatMA.GO_STRAIGHT.value, LatMA.STEER_LEFT.value,
                              LatMA.STEER_RIGHT.value, LatMA.SHARP_STEER_LEFT.value,
                              LatMA.SHARP_STEER_RIGHT.value})
_STEER = frozenset({LatMA.STEER_LEFT.value, LatMA.STEER_RIGHT.value})
ALLOWED_LATERAL: dict[str, frozenset[str]] = {
    Lat.LANE_KEEPING.value: _FORWARD_LATERAL,  # following a curved lane steers too
    Lat.MERGE_SPLIT.value: _STEER,
    Lat.OUT_OF_LANE_NUDGE.value: _STEER,
    Lat.IN_LANE_NUDGE.value: _STEER | {LatMA.GO_STRAIGHT.value},
    Lat.LANE_CHANGE.value: _STEER,
    Lat.PULL_OVER.value: _STEER,
    Lat.TURN.value: _STEER | {LatMA.SHARP_STEER_LEFT.value, LatMA.SHARP_STEER_RIGHT.value},
    Lat.LATERAL_MANEUVER_ABORT.value: _STEER | {LatMA.GO_STRAIGHT.value},
}
# Decisions whose direction word must match the side of the steer.
_DIRECTIONAL = frozenset({Lat.MERGE_SPLIT.value, Lat.OUT_OF_LANE_NUDGE.value,
                          Lat.IN_LANE_NUDGE.value, Lat.LANE_CHANGE.value, Lat.PULL_OVER.value,
                          Lat.TURN.value})


def longitudinal_consistent(decision: str, meta_action: str) -> bool:
    """Whether a longitudinal decision allows the trajectory's meta-action."""
    if decision == "":
        return True
    return meta_action in ALLOWED_LONGITUDINAL.get(decision, frozenset())


def lateral_consistent(decision: str, meta_action: str, direction: str | None = None) -> bool:
    """Whether a lateral decision (and its named direction) allows the meta-action."""
    if decision == "":
        return True
    if meta_action not in ALLOWED_LATERAL.get(decision, frozenset()):
        return False
    if direction and decision in _DIRECTIONAL and meta_action != LatMA.GO_STRAIGHT.value:
        return meta_action.endswith(direction)
    return True


def consistency_score(
    reasoning: str | CocLabel | ParsedCoc,
    trajectory_xy_m: np.ndarray,
    v0_mps: float | None = None,
    config: MetaActionConfig = MetaActionConfig(),
) -> float:
    """CoC-action consistency in [0, 1]: mean over the two axes; unparseable text -> 0.

    ``reasoning`` is the generated text, a structured label (its decisions are used, the
    lateral direction is parsed from its text) or an already parsed result.
    ``trajectory_xy_m`` is the future ``(T, 2)`` or ``(T, 3)`` (x, y, heading) in the
    ego frame at 10 Hz.
    """
    if isinstance(reasoning, CocLabel):
        direction = parse_reasoning(reasoning.text).lateral_direction
        parsed = ParsedCoc(reasoning.longitudinal_decision, reasoning.lateral_decision,
                           direction)
    elif isinstance(reasoning, ParsedCoc):
        parsed = reasoning
    else:
        parsed = parse_reasoning(reasoning)
    if not parsed.parseable:
        return 0.0
    meta = meta_actions_from_trajectory(trajectory_xy_m, v0_mps, config=config)
    lon_ok = longitudinal_consistent(parsed.longitudinal, meta.longitudinal)
    lat_ok = lateral_consistent(parsed.lateral, meta.lateral, parsed.lateral_direction)
    return 0.5 * (float(lon_ok) + float(lat_ok))
