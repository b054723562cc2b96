"""Perception targets: what the vision tokens are trained to know about the scene.

AR1 gets perception from a VLM pre-trained on driving video; our policy gets it from the
simulator's privileged state. Every training sample carries a fixed-length vector of
targets (ego frame at the sample's time, x forward, y left) with a validity mask, and the
model has an auxiliary head on its vision tokens that predicts them (``binary`` entries
with a logistic loss, ``real`` entries with a smooth-L1 loss on the scaled value).

The fields are chosen from what the expert's decisions depend on: the lead vehicle and
its brake lights, the traffic light and its state, stop lines, agents crossing the path,
road events, lane ends and neighbouring lanes, emergency vehicles behind, and the
``AGENT_SLOTS`` nearest agents (box, velocity, brake lights and turn indicators).
The data engine fills the vector (:mod:`alpamayo_ros.data.perception_targets`); the model
only needs :data:`PERCEPTION_FIELDS`. Fields are only ever appended: a model's head
predicts the first ``PolicyConfig.perception_dim`` entries (recorded in its weights), so
weights trained before a field was added still read their own fields from a newer vector
(:func:`model_fields`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PerceptionField:
    """One entry of the target vector: its name, kind and the scale it is divided by."""

    name: str
    kind: str  # "binary" (0/1, logistic loss) | "real" (value / scale, smooth-L1 loss)
    scale: float = 1.0  # real values are stored divided by this (about unit range)


AGENT_SLOTS = 6  # nearest agents within AGENT_RANGE_M, sorted by distance
AGENT_RANGE_M = 60.0
_AGENT_FIELDS = (
    ("present", "binary", 1.0),
    ("x", "real", 50.0),  # box centre, m
    ("y", "real", 10.0),
    ("vx", "real", 20.0),  # velocity in the ego frame, m/s
    ("vy", "real", 5.0),
    ("length", "real", 10.0),  # m
    ("width", "real", 3.0),
    ("braking", "binary", 1.0),  # brake lights on
    ("indicator_left", "binary", 1.0),
    ("indicator_right", "binary", 1.0),
)

LANE_CENTER_AHEAD_M = (10.0, 20.0, 40.0)  # along the road, the lane_center_y_* fields


def lane_center_field(ahead_m: float) -> str:
    """Name of the field holding the lane centre's lateral position ``ahead_m`` ahead."""
    return f"lane_center_y_{ahead_m:g}m"


PERCEPTION_FIELDS: tuple[PerceptionField, ...] = (
    PerceptionField("lead_present", "binary"),
    PerceptionField("lead_gap", "real", 50.0),  # bumper to bumper, m
    PerceptionField("lead_speed", "real", 20.0),  # m/s
    PerceptionField("lead_braking", "binary"),
    PerceptionField("light_present", "binary"),  # a traffic light for the ego's road ahead
    PerceptionField("light_red", "binary"),
    PerceptionField("light_yellow", "binary"),
    PerceptionField("light_green", "binary"),
    PerceptionField("light_distance", "real", 100.0),  # to its stop line, m
    PerceptionField("stop_sign_present", "binary"),
    PerceptionField("stop_sign_distance", "real", 100.0),
    PerceptionField("crossing_present", "binary"),  # an active across-mover within range
    PerceptionField("crossing_distance", "real", 50.0),
    PerceptionField("crossing_lateral", "real", 10.0),
    PerceptionField("event_present", "binary"),  # curve, bump, school or work zone
    PerceptionField("event_distance", "real", 100.0),
    PerceptionField("event_speed", "real", 20.0),  # its advisory speed, m/s
    PerceptionField("lane_end_present", "binary"),
    PerceptionField("lane_end_distance", "real", 100.0),
    PerceptionField("left_lane", "binary"),  # a same-direction lane on the left exists
    PerceptionField("right_lane", "binary"),
    PerceptionField("oncoming_left", "binary"),  # the lane on the left is oncoming
    PerceptionField("siren_behind", "binary"),
    PerceptionField("ego_lateral_offset", "real", 2.0),  # from the lane centre, m (left +)
    PerceptionField("curvature_20m", "real", 0.1),  # road curvature 20 m ahead, 1/m
    PerceptionField("curvature_50m", "real", 0.1),
) + tuple(PerceptionField(f"agent{i}_{name}", kind, scale)
          for i in range(AGENT_SLOTS) for name, kind, scale in _AGENT_FIELDS) + (
    # Appended in session 17 (weights before it have 86 fields). The ego's heading minus
    # the road's at its position, rad (left +): with the lateral offset it says where the
    # car is going in its lane, the quantity that shows a drift before the offset does.
    PerceptionField("ego_heading_error", "real", 0.1),
) + tuple(
    # Appended in session 18 (weights before it have 86 or 87 fields). Where the centre of
    # the ego's lane is LANE_CENTER_AHEAD_M metres ahead along the road: its lateral
    # position in the ego frame, m (left +). One quantity for offset, heading and bend
    # together, and a larger one than each of them (a heading error of 0.02 rad moves it
    # 0.8 m at 40 m, a 0.01 1/m bend 8 m): what the lane lines show in the image.
    PerceptionField(lane_center_field(ahead), "real", 2.0 if ahead <= 20.0 else 5.0)
    for ahead in LANE_CENTER_AHEAD_M
)

PERCEPTION_DIM = len(PERCEPTION_FIELDS)
PERCEPTION_INDEX = {f.name: i for i, f in enumerate(PERCEPTION_FIELDS)}
BINARY_MASK = tuple(f.kind == "binary" for f in PERCEPTION_FIELDS)
SCENE_FIELD_NAMES = tuple(f.name for f in PERCEPTION_FIELDS
                          if not f.name.startswith("agent"))  # all but the agent slots


def model_fields(perception_dim: int) -> tuple[PerceptionField, ...]:
    """The fields a perception head of ``perception_dim`` outputs predicts (the first ones).

    A ``ValueError`` for a size above :data:`PERCEPTION_DIM` (weights from a newer list).
    """
    if not 0 <= perception_dim <= PERCEPTION_DIM:
        raise ValueError(f"perception_dim {perception_dim} is outside 0..{PERCEPTION_DIM} "
                         f"(the fields this version knows)")
    return PERCEPTION_FIELDS[:perception_dim]


def field_weight_vector(weights: dict[str, float]) -> tuple[float, ...]:
    """Per-entry loss weights of the perception vector: the named fields' weights, else 1.

    ``weights`` maps field names (:data:`PERCEPTION_FIELDS`) to numbers >= 0; an unknown
    name or a bad weight is a ``ValueError`` naming it.
    """
    vector = [1.0] * PERCEPTION_DIM
    for name, weight in weights.items():
        if name not in PERCEPTION_INDEX:
            raise ValueError(f"unknown perception field {name!r}; choose from "
                             f"{sorted(PERCEPTION_INDEX)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"perception field {name!r}: weight must be a number >= 0, "
                             f"got {weight!r}")
        vector[PERCEPTION_INDEX[name]] = float(weight)
    return tuple(vector)
