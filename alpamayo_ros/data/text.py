"""Reasoning traces in varied natural language, composed from the label's components.

A trace is built from clause grammars, not templates per class: a noun phrase for each
critical component (kind, colour, distance, speed, light colour, advisory speed...), a
verb phrase for its state, a decision phrase per channel, and a sentence frame that joins
them ("X, so I ...", "I ... because X", "Since X, I ...", "With X, I ..."). Only the
label's components are mentioned. The decision phrases use the anchor words that
:mod:`alpamayo_ros.data.consistency` parses, so a trace always parses back to its label.
This is the expert's ground-truth trace; it is never presented as model output.
"""

from __future__ import annotations

import numpy as np

from alpamayo_ros.data.expert import Cause
from alpamayo_ros.taxonomy import ComponentType as CT
from alpamayo_ros.taxonomy import LateralDecision as Lat
from alpamayo_ros.taxonomy import LongitudinalDecision as Lon

MPS_TO_KMH = 3.6

_KIND_WORDS = {
    "car": ["car", "sedan", "hatchback", "car"], "van": ["van", "delivery van", "minivan"],
    "truck": ["truck", "lorry", "box truck"], "bus": ["bus", "city bus"],
    "ambulance": ["ambulance"], "pedestrian": ["pedestrian", "person on foot", "walker"],
    "cyclist": ["cyclist", "person on a bike", "bicycle rider"], "cone": ["row of cones"],
    "barrier": ["barrier"],
}
_LIGHT_WORDS = {"red": ["red"], "yellow": ["yellow", "amber"], "green": ["green"]}


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _kmh(v_mps: float) -> int:
    return int(round(v_mps * MPS_TO_KMH / 5.0) * 5) if v_mps > 2.0 else int(round(v_mps * 3.6))


def _dist(rng: np.random.Generator, d: float) -> str:
    d = max(1, int(round(d)))
    return _pick(rng, [f"{d} m", f"about {d} m", f"roughly {d} m", f"some {d} m"])


def noun_phrase(cause: Cause, rng: np.random.Generator) -> str:
    """A definite noun phrase for a component, with its attributes."""
    a = cause.attrs
    if cause.type == CT.CRITICAL_OBJECT:
        kind = a.get("agent_kind", cause.kind)
        word = _pick(rng, _KIND_WORDS.get(kind, [kind]))
        colour = a.get("colour", "")
        if kind in ("pedestrian", "cyclist"):
            return f"the {word}" if rng.random() < 0.5 else f"a {word}"
        det = "the" if rng.random() < 0.7 else "a"
        if det == "a" and colour and colour[0] in "aeiou":
            det = "an"
        if kind == "ambulance":
            return f"{'an' if det != 'the' else 'the'} ambulance"
        return f"{det} {colour} {word}" if colour and rng.random() < 0.85 else f"{det} {word}"
    if cause.type == CT.TRAFFIC_LIGHT:
        return _pick(rng, ["the traffic light", "the signal", "the light at the junction"])
    if cause.type == CT.YIELD_STOP_CONTROL:
        return _pick(rng, ["the stop sign", "a stop sign at the junction", "the stop sign"])
    if cause.type == CT.ROAD_EVENT:
        return {
            "curve": _pick(rng, ["a sharp bend", "a tight curve", "a sharp curve",
                                 "a tight bend"]),
            "turn": _pick(rng, ["the tight corner at the junction", "the corner ahead",
                                "the sharp corner of the junction"]),
            "speed_bump": _pick(rng, ["a speed bump", "a raised speed hump"]),
            "school_zone": _pick(rng, ["a school zone", "a signposted school zone",
                                       "a school zone marked on the road"]),
            "construction_zone": _pick(rng, ["a work zone lined with cones",
                                             "road works with cones along the lane"]),
        }.get(cause.kind, "a road event")
    if cause.kind == "lane_end":
        return _pick(rng, ["my lane", "the on-ramp lane", "the acceleration lane"])
    if cause.type == CT.ROUTING_INTENT:
        return "the route"
    if cause.type == CT.ODD_CONSTRAINT:  # no sign shows it: the limit, not its number
        return "the speed limit"
    return _pick(rng, ["my lane", "the lane ahead", "the road ahead"])


def clause(cause: Cause, rng: np.random.Generator) -> str:
    """An independent clause about a component: noun phrase plus what it is doing."""
    a = cause.attrs
    np_ = noun_phrase(cause, rng)
    d = a.get("distance_m", 0.0)
    if cause.type == CT.CRITICAL_OBJECT:
        state = a.get("state", "moving")
        kmh = _kmh(a.get("speed_mps", 0.0))
        where = {"ahead": "ahead", "left": "on my left", "right": "on my right",
                 "behind": "to the rear"}.get(a.get("where", "ahead"), "ahead")
        if a.get("emerging"):
            return _pick(rng, [f"{np_} is stepping out from behind a parked vehicle",
                               f"{np_} has just appeared from behind a vehicle",
                               f"{np_} emerges onto the road from behind a parked vehicle"])
        if state == "crossing":
            side = "from the right" if a.get("side") == "right" else "from the left"
            return _pick(rng, [f"{np_} is crossing {side} {_dist(rng, d)} ahead",
                               f"{np_} is walking across my path {side}",
                               f"{np_} is entering the road {side}, {_dist(rng, d)} ahead"]
                         ).replace("walking", {"cyclist": "riding", "pedestrian": "walking"}
                                   .get(a.get("agent_kind"), "driving"))
        if state == "waiting":
            return f"{np_} is waiting at the edge of the road {_dist(rng, d)} ahead"
        if state == "siren":
            return _pick(rng, [f"{np_} with its emergency lights flashing is approaching "
                               "from the rear",
                               f"{np_} is coming up fast from the rear with lights flashing",
                               f"{np_}, an emergency vehicle, is closing in from the rear"])
        if state == "braking":
            hard = a.get("accel_mps2", 0.0) < -3.0
            return _pick(rng, [f"{np_} {_dist(rng, d)} ahead is braking"
                               + (" hard" if hard else ""),
                               f"{np_} ahead is slowing{' sharply' if hard else ''}, "
                               f"now {_dist(rng, d)} away",
                               f"the brake lights of {np_} {_dist(rng, d)} ahead are on"])
        if state == "stopped":
            return _pick(rng, [f"{np_} is stopped {_dist(rng, d)} ahead",
                               f"{np_} {_dist(rng, d)} ahead has come to a standstill"])
        if state == "cutting_in":
            return _pick(rng, [f"{np_} is cutting into the lane {_dist(rng, d)} ahead",
                               f"{np_} {where} is moving across into the lane",
                               f"{np_} swerves into the lane just ahead"])
        if state == "parked":
            return _pick(rng, [f"{np_} is parked {_dist(rng, d)} ahead and sticks into the lane",
                               f"{np_} is double-parked {_dist(rng, d)} ahead",
                               f"{np_} parked {_dist(rng, d)} ahead blocks part of the lane"])
        if state == "slow" or a.get("agent_kind") == "cyclist":
            return _pick(rng, [f"{np_} {_dist(rng, d)} ahead is only doing {kmh} km/h",
                               f"{np_} ahead is crawling along at {kmh} km/h",
                               f"{np_} {where} is much slower than traffic, at {kmh} km/h"])
        return _pick(rng, [f"{np_} is {_dist(rng, d)} {where} at {kmh} km/h",
                           f"{np_} {where} is doing {kmh} km/h",
                           f"{np_} is travelling {where}, {_dist(rng, d)} away"])
    if cause.type == CT.TRAFFIC_LIGHT:
        colour = _pick(rng, _LIGHT_WORDS.get(a.get("state", "red"), ["red"]))
        return _pick(rng, [f"{np_} {_dist(rng, d)} ahead has turned {colour}",
                           f"{np_} ahead is {colour}",
                           f"{np_} is showing {colour}, {_dist(rng, d)} ahead"])
    if cause.type == CT.YIELD_STOP_CONTROL:
        return _pick(rng, [f"there is {np_} {_dist(rng, d)} ahead",
                           f"{np_} {_dist(rng, d)} ahead requires a full stop",
                           f"{np_} controls the junction ahead"]).replace(
                               "there is the", "there is a")
    if cause.type == CT.ROAD_EVENT:
        if d > 1.0:
            return _pick(rng, [f"{np_} is coming up in {_dist(rng, d)}",
                               f"there is {np_} {_dist(rng, d)} ahead",
                               f"I am approaching {np_}"]).replace("there is the ", "there is a ")
        return _pick(rng, [f"I am in {np_}", f"I am now passing {np_}"])
    if cause.kind == "lane_end":
        return _pick(rng, [f"{np_} ends in {_dist(rng, d)}",
                           f"{np_} runs out {_dist(rng, d)} ahead"])
    if cause.type == CT.ROUTING_INTENT:
        note = a.get("note", "")
        if cause.kind == "exit":
            return _pick(rng, ["the route leaves at this exit", "my route takes the exit here"])
        if note:
            return note
        if "direction" in a and cause.id == "route" and a.get("distance_m") is not None:
            return _pick(rng, [f"the route goes {a['direction']} at this junction",
                               f"my route heads {a['direction']} here"])
        return f"the route heads {a.get('direction', 'on')}"
    if cause.type == CT.ODD_CONSTRAINT:
        return _pick(rng, [f"the road ahead is clear and {np_} applies",
                           f"nothing is in my way and {np_} holds",
                           f"the way ahead is open under {np_}"])
    return _pick(rng, ["the lane ahead is clear", "nothing is blocking my path",
                       "the road ahead is free"])


def _pronoun(cause: Cause) -> str:
    if cause.type == CT.CRITICAL_OBJECT and cause.attrs.get("agent_kind") in (
            "pedestrian", "cyclist"):
        return "them"
    return "it"


def decision_phrase(decision: str, causes: list[Cause], rng: np.random.Generator,
                    speed_mps: float = 0.0) -> str:
    """A verb phrase stating a decision, with the anchor words the parser knows."""
    c = causes[0] if causes else None
    it = _pronoun(c) if c else "it"
    direction = next((x.attrs["direction"] for x in causes if "direction" in x.attrs), "left")
    v = _kmh(next((x.attrs["speed_mps"] for x in causes if "speed_mps" in x.attrs), speed_mps))
    if c is not None and c.kind == "lane_end":
        direction = c.attrs.get("direction", "left")
    options = {
        Lon.SET_SPEED_TRACKING.value: [f"cruise at about {v} km/h", "keep cruising",
                                       f"hold the set speed of {v} km/h", "continue cruising"],
        Lon.LEAD_OBSTACLE_FOLLOWING.value: [f"follow {it} at a safe distance",
                                            f"keep following {it}",
                                            f"stay behind {it} and match its pace",
                                            f"keep a safe gap behind {it}"],
        Lon.SPEED_ADAPTATION.value: [f"slow down for {it}", f"ease off to about {v} km/h",
                                     f"adapt my speed to about {v} km/h",
                                     f"reduce speed for {it}"],
        Lon.GAP_SEARCHING.value: [f"look for a gap in the {direction} lane",
                                  f"wait for an opening in the {direction} lane",
                                  "search for a usable gap", "hang back and look for a gap"],
        Lon.ACCELERATE_TO_PASS.value: [f"speed up to pass {it}", f"accelerate past {it}",
                                       f"accelerate to overtake {it}",
                                       f"speed up to get past {it}"],
        Lon.YIELD.value: [f"yield to {it}", f"give way to {it}",
                          f"slow and let {it} {'cross' if it == 'them' else 'pass'} first",
                          f"hold back and yield to {it}"],
        Lon.STOP_FOR_STATIC_CONSTRAINT.value: ["stop at the stop line",
                                               "come to a stop at the line",
                                               "halt before the stop line",
                                               "stop short of the line"],
        Lat.LANE_KEEPING.value: ["keep to my lane", "stay in my lane",
                                 "remain centred in the lane", "stay centered in my lane"],
        Lat.MERGE_SPLIT.value: ([f"merge {direction} into the main lane",
                                 f"merge into the {direction} lane", "merge over"]
                                if c is None or c.kind != "exit" else
                                [f"split off to the {direction} onto the exit",
                                 f"take the exit lane on the {direction}"]),
        Lat.OUT_OF_LANE_NUDGE.value: [f"nudge out of my lane to the {direction} to pass {it}",
                                      f"edge partly into the {_adjacent(causes, direction)}"
                                      f" lane to go around {it}",
                                      f"swing out into the {_adjacent(causes, direction)} "
                                      f"lane to clear {it}"],
        Lat.IN_LANE_NUDGE.value: [f"nudge to the {direction} within my lane",
                                  f"shift slightly {direction} inside the lane",
                                  f"bias to the {direction} within the lane"],
        Lat.LANE_CHANGE.value: [f"change into the {direction} lane",
                                f"move over to the {direction} lane",
                                f"switch lanes to the {direction}"],
        Lat.PULL_OVER.value: ["pull over to the right", "pull to the kerb",
                              "pull onto the shoulder"],
        Lat.TURN.value: [f"turn {direction}", f"make the {direction} turn",
                         f"take the {direction} turn"],
        Lat.LATERAL_MANEUVER_ABORT.value: ["abort the lane change and return to the original "
                                           "lane", "abandon the lane change and move back",
                                           "call off the manoeuvre and steer back"],
    }
    if decision not in options:
        raise ValueError(f"unknown decision {decision!r}")
    return _pick(rng, options[decision])


def _adjacent(causes: list[Cause], direction: str) -> str:
    for c in causes:
        if c.attrs.get("adjacent_lane") == "oncoming":
            return "oncoming"
    return direction


def _capital(s: str) -> str:
    return s[:1].upper() + s[1:]


def _sentence(reasons: list[str], decisions: list[str], rng: np.random.Generator) -> str:
    why = reasons[0] if len(reasons) == 1 else ", and ".join(reasons) if rng.random() < 0.5 \
        else f"{reasons[0]}, while {reasons[1]}"
    do = " and ".join(decisions)
    frame = int(rng.integers(5))
    if frame == 0:
        return _capital(f"{why}, so I {do}.")
    if frame == 1:
        return _capital(f"I {do} because {why}.")
    if frame == 2:
        return _capital(f"since {why}, I {do}.")
    if frame == 3:
        return _capital(f"{why}; I will {do}.")
    return _capital(f"{why}. The right move is to {do}.")


def reasoning_text(longitudinal: str, lateral: str, long_causes: list[Cause],
                   lat_causes: list[Cause], rng: np.random.Generator,
                   speed_mps: float = 0.0) -> str:
    """Compose the trace for a keyframe; it mentions only ``long_causes + lat_causes``."""
    parts = []
    same = bool(long_causes and lat_causes) and \
        {c.id for c in long_causes} == {c.id for c in lat_causes}
    if same and longitudinal and lateral:
        reasons = [clause(c, rng) for c in long_causes]
        decisions = [decision_phrase(lateral, lat_causes, rng, speed_mps),
                     decision_phrase(longitudinal, long_causes, rng, speed_mps)]
        if rng.random() < 0.5:
            decisions.reverse()
        return _sentence(reasons, decisions, rng)
    if longitudinal:
        reasons = [clause(c, rng) for c in long_causes] or ["the road ahead is free"]
        parts.append(_sentence(reasons, [decision_phrase(longitudinal, long_causes, rng,
                                                         speed_mps)], rng))
    if lateral:
        if lateral == Lat.LANE_KEEPING.value and rng.random() < 0.5:
            parts.append(_capital(f"I {decision_phrase(lateral, lat_causes, rng)}."))
        else:
            reasons = [clause(c, rng) for c in lat_causes] or ["the lane ahead is clear"]
            parts.append(_sentence(reasons, [decision_phrase(lateral, lat_causes, rng)], rng))
    if lateral and lateral != Lat.LANE_KEEPING.value and rng.random() < 0.6:
        parts.reverse()  # lead with the manoeuvre
    return " ".join(parts)
