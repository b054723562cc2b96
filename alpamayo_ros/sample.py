"""The training/inference sample: what the data engine produces and the policy reads.

One :class:`DrivingSample` is one step of driving (a CoC keyframe or any other step): the
multi-camera video of the history window, the ego-motion history, the Chain-of-Causality
label and the future plan. All geometry is in the ego frame at that step (x forward, y
left, z up; metres, radians). Arrays are numpy; the model's processor turns a batch of
samples into tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alpamayo_ros.unicycle import DT_S, NUM_WAYPOINTS

EGO_HISTORY_STEPS = 16  # AR1: 16 poses at 10 Hz (1.6 s)
HISTORY_DT_S = DT_S
FUTURE_STEPS = NUM_WAYPOINTS  # 64 waypoints at 10 Hz (6.4 s)


@dataclass
class CameraGeometry:
    """Pinhole camera: intrinsics and mounting on the ego vehicle."""

    name: str
    width_px: int
    height_px: int
    intrinsics: np.ndarray  # (3, 3) K, pixels
    camera_to_ego: np.ndarray  # (4, 4) homogeneous; camera axes: x right, y down, z forward


@dataclass
class CriticalComponentLabel:
    """A cause cited by the reasoning (see :mod:`alpamayo_ros.taxonomy`)."""

    type: int  # taxonomy.ComponentType
    uncertainty: int  # taxonomy.Uncertainty
    id: str
    description: str
    position_m: tuple[float, float, float] = (float("nan"),) * 3  # ego frame


@dataclass
class CocLabel:
    """Chain-of-Causality label of one keyframe."""

    longitudinal_decision: str  # taxonomy.LongitudinalDecision value, or "" for none
    lateral_decision: str  # taxonomy.LateralDecision value, or "" for none
    components: list[CriticalComponentLabel]
    text: str  # reasoning trace that cites only ``components``
    longitudinal_meta_action: str = ""
    lateral_meta_action: str = ""


@dataclass
class DrivingSample:
    """One keyframe of driving: inputs and targets."""

    stamp_ns: int
    images: np.ndarray  # uint8 (frames, cameras, H, W, 3) RGB, oldest frame first
    cameras: list[CameraGeometry]
    ego_history: np.ndarray  # float32 (16, 4): x, y, heading, speed; oldest first, last at t=0
    future_xyh: np.ndarray  # float32 (64, 3): x, y, heading at 0.1 .. 6.4 s
    future_controls: np.ndarray  # float32 (64, 2): acceleration m/s^2, curvature 1/m
    speed_mps: float  # ego speed at t=0
    coc: CocLabel | None = None
    navigation: str = ""  # optional route command, e.g. "turn left at the next intersection"
    meta: dict = field(default_factory=dict)  # scenario family, seed, ...
    # Training-only labels (None/False where unknown, e.g. on a vehicle):
    keyframe: bool = False  # a CoC keyframe (decision change): the evaluation points
    decisions: tuple[str, str] | None = None  # the expert's (lon, lat) decision at this step
    perception: np.ndarray | None = None  # float32 (PERCEPTION_DIM,), alpamayo_ros.perception
    perception_mask: np.ndarray | None = None  # bool (PERCEPTION_DIM,): which entries are known
    # Only the perception targets hold (a signal counterfactual: the frames do not show what
    # the trajectory reacted to), so training leaves out every other loss of the sample.
    perception_only: bool = False
