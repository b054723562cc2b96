"""The Chain-of-Causality taxonomy of Alpamayo-R1, shared by data, model and ROS layers.

Decision and component names are the string values carried by ``msg/Reasoning.msg`` and
``msg/CriticalComponent.msg`` (the constants there must stay equal to these; a test
checks it). Source: AR1 paper (arXiv 2511.00088), "Chain-of-Causality labels".
"""

from __future__ import annotations

from enum import Enum, IntEnum


class LongitudinalDecision(str, Enum):
    """The 7 longitudinal driving decisions."""

    SET_SPEED_TRACKING = "set_speed_tracking"
    LEAD_OBSTACLE_FOLLOWING = "lead_obstacle_following"
    SPEED_ADAPTATION = "speed_adaptation"  # road events: curves, bumps, school zones
    GAP_SEARCHING = "gap_searching"  # for a lane change, merge or zipper
    ACCELERATE_TO_PASS = "accelerate_to_pass"
    YIELD = "yield"  # to an agent with right of way
    STOP_FOR_STATIC_CONSTRAINT = "stop_for_static_constraint"  # red light, stop line


class LateralDecision(str, Enum):
    """The 8 lateral driving decisions."""

    LANE_KEEPING = "lane_keeping"  # lane keeping and centering
    MERGE_SPLIT = "merge_split"
    OUT_OF_LANE_NUDGE = "out_of_lane_nudge"
    IN_LANE_NUDGE = "in_lane_nudge"
    LANE_CHANGE = "lane_change"
    PULL_OVER = "pull_over"  # pull-over / curb approach
    TURN = "turn"  # including U-turns
    LATERAL_MANEUVER_ABORT = "lateral_maneuver_abort"


class ComponentType(IntEnum):
    """Critical component types; values equal the TYPE_* constants of CriticalComponent."""

    CRITICAL_OBJECT = 0
    TRAFFIC_LIGHT = 1
    YIELD_STOP_CONTROL = 2
    ROAD_EVENT = 3
    LANE = 4
    ROUTING_INTENT = 5
    ODD_CONSTRAINT = 6


class Uncertainty(IntEnum):
    """Uncertainty tag of a critical component (UNCERTAINTY_* constants)."""

    LOW = 0
    HIGH = 1


class LongitudinalMetaAction(str, Enum):
    """Meta-actions derived from a trajectory, used to check CoC-action consistency."""

    GENTLE_ACCELERATE = "gentle_accelerate"
    STRONG_ACCELERATE = "strong_accelerate"
    GENTLE_DECELERATE = "gentle_decelerate"
    STRONG_DECELERATE = "strong_decelerate"
    MAINTAIN_SPEED = "maintain_speed"
    STOP = "stop"
    REVERSE = "reverse"


class LateralMetaAction(str, Enum):
    """Lateral meta-actions derived from a trajectory."""

    STEER_LEFT = "steer_left"
    STEER_RIGHT = "steer_right"
    SHARP_STEER_LEFT = "sharp_steer_left"
    SHARP_STEER_RIGHT = "sharp_steer_right"
    REVERSE_LEFT = "reverse_left"
    REVERSE_RIGHT = "reverse_right"
    GO_STRAIGHT = "go_straight"


# Class ids of the decision channels (auxiliary decision heads, confusion tables):
# index 0 is "no decision on this channel", then the enum values in declaration order.
LONGITUDINAL_CLASSES: tuple[str, ...] = ("",) + tuple(d.value for d in LongitudinalDecision)
LATERAL_CLASSES: tuple[str, ...] = ("",) + tuple(d.value for d in LateralDecision)


def decision_class_ids(longitudinal: str, lateral: str) -> tuple[int, int]:
    """Class ids of a (longitudinal, lateral) decision pair; unknown names raise ValueError."""
    try:
        return LONGITUDINAL_CLASSES.index(longitudinal), LATERAL_CLASSES.index(lateral)
    except ValueError as exc:
        raise ValueError(f"unknown decision pair ({longitudinal!r}, {lateral!r})") from exc
