"""Camera extrinsics and TF math, ROS-free: rigid transforms and where a calibration comes from.

TF carries a transform ``parent -> child`` as a translation and a unit quaternion
``(x, y, z, w)``: the pose of the child frame in the parent frame, i.e. the 4x4 matrix
that maps child coordinates to parent coordinates. The frames of this package:

- ``map -> base_link``: the ego pose (x, y, heading; z = 0 on the ground plane), what
  the odometry carries (:func:`ego_pose_matrix`);
- ``base_link -> <camera>``: a camera's mounting, the model's ``camera_to_ego`` (camera
  axes x right, y down, z forward: the optical frame, which images are stamped with).

:class:`CameraExtrinsics` holds the extrinsics the policy uses per camera: TF's when a
lookup gave a valid rigid transform, else the rig's (``camera_rig``), and says which and
why. Only the nodes import tf2_ros; they call :meth:`CameraExtrinsics.update`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# How the policy node gets camera extrinsics: "tf" looks them up (base frame -> camera
# frame) when tf2_ros is importable and falls back to the rig per camera; "rig" never does.
EXTRINSICS_MODES = ("tf", "rig")
SOURCE_TF = "tf"
SOURCE_RIG = "rig"
RIGID_TOLERANCE = 1e-6  # |R^T R - I| and |det R - 1| allowed in a transform from TF

Vector3 = tuple[float, float, float]
Quaternion = tuple[float, float, float, float]  # x, y, z, w (the geometry_msgs order)


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """3x3 rotation of a quaternion ``(x, y, z, w)``; normalized first.

    Raises ValueError for a non-finite or (near) zero quaternion.
    """
    x, y, z, w = (float(v) for v in q)
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"quaternion {tuple(q)} is not a rotation (norm {norm})")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(rotation: np.ndarray) -> Quaternion:
    """Unit quaternion ``(x, y, z, w)`` with ``w >= 0`` of a 3x3 rotation matrix."""
    r = np.asarray(rotation, dtype=np.float64)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:  # Shepperd's method: divide by the largest of the four candidates
        s = 2.0 * math.sqrt(trace + 1.0)
        q = (
            (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4)
    elif r[0, 0] >= r[1, 1] and r[0, 0] >= r[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 + r[0, 0] - r[1, 1] - r[2, 2], 0.0))
        q = (s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s)
    elif r[1, 1] >= r[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 + r[1, 1] - r[0, 0] - r[2, 2], 0.0))
        q = ((r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s)
    else:
        s = 2.0 * math.sqrt(max(1.0 + r[2, 2] - r[0, 0] - r[1, 1], 0.0))
        q = ((r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4, (r[1, 0] - r[0, 1]) / s)
    norm = math.sqrt(sum(v * v for v in q))
    sign = -1.0 if q[3] < 0 else 1.0
    x, y, z, w = (float(sign * v / norm) for v in q)
    return (x, y, z, w)


def transform_to_matrix(translation: Sequence[float], rotation: Sequence[float]) -> np.ndarray:
    """4x4 homogeneous matrix of a TF transform (translation, quaternion ``(x, y, z, w)``)."""
    t = np.asarray([float(v) for v in translation], dtype=np.float64)
    if t.shape != (3,) or not np.all(np.isfinite(t)):
        raise ValueError(f"translation must be 3 finite numbers, got {tuple(translation)}")
    m = np.eye(4)
    m[:3, :3] = quaternion_to_matrix(rotation)
    m[:3, 3] = t
    return m


def check_rigid(matrix: np.ndarray, tolerance: float = RIGID_TOLERANCE) -> np.ndarray:
    """``matrix`` as a float (4, 4) array if it is a finite rigid transform, else ValueError."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"a transform must be 4x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("a transform must be finite")
    r = m[:3, :3]
    if (np.abs(r.T @ r - np.eye(3)).max() > tolerance
            or abs(np.linalg.det(r) - 1.0) > tolerance
            or np.abs(m[3] - (0.0, 0.0, 0.0, 1.0)).max() > tolerance):
        raise ValueError("not a rigid transform (rotation not orthonormal with det +1, or "
                         "last row not 0 0 0 1)")
    return m


def matrix_to_transform(matrix: np.ndarray) -> tuple[Vector3, Quaternion]:
    """TF translation and quaternion ``(x, y, z, w)`` of a rigid 4x4 matrix."""
    m = check_rigid(matrix)
    x, y, z = (float(v) for v in m[:3, 3])
    return (x, y, z), matrix_to_quaternion(m[:3, :3])


def ego_pose_matrix(x_m: float, y_m: float, heading_rad: float, z_m: float = 0.0
                    ) -> np.ndarray:
    """``map -> base_link``: the ego at ``(x, y)`` heading ``heading_rad`` (CCW from map x)."""
    c, s = math.cos(heading_rad), math.sin(heading_rad)
    m = np.eye(4)
    m[:2, :2] = ((c, -s), (s, c))
    m[:3, 3] = (x_m, y_m, z_m)
    return m


@dataclass(frozen=True)
class ExtrinsicsConfig:
    """Where the policy node takes camera extrinsics from (ROS parameter names = fields).

    - ``camera_extrinsics``: ``"tf"`` looks each model camera up in TF (``frame_id`` of
      the plan, the ego frame, to the camera's image ``frame_id``, or its name when that
      is empty) when tf2_ros is importable, so the vehicle's own calibration is used, and
      falls back to ``camera_rig`` per camera while a frame is missing; ``"rig"`` always
      uses ``camera_rig``.
    """

    camera_extrinsics: str = "tf"

    def __post_init__(self) -> None:
        if self.camera_extrinsics not in EXTRINSICS_MODES:
            raise ValueError(f"camera_extrinsics must be one of {EXTRINSICS_MODES}, "
                             f"got {self.camera_extrinsics!r}")


@dataclass(frozen=True)
class ExtrinsicsState:
    """One camera's extrinsics in use and where they come from."""

    camera: str
    camera_to_ego: np.ndarray  # (4, 4)
    source: str  # SOURCE_TF or SOURCE_RIG
    tf_frame: str  # the TF frame looked up last ("" when TF is not used)
    detail: str  # why the rig is used ("" when TF's is)


class CameraExtrinsics:
    """Per-camera ``camera_to_ego``: TF's when the last lookup succeeded, else the rig's.

    ``tf_available`` false (mode ``rig``, or tf2_ros not importable) keeps the rig's for
    every camera and says why in :meth:`states`. Thread-safe: the inference thread
    updates, the diagnostics timer reads.
    """

    def __init__(self, rig: Mapping[str, np.ndarray], tf_available: bool,
                 unavailable_reason: str = "") -> None:
        self._rig = {name: check_rigid(m).copy() for name, m in rig.items()}
        if not self._rig:
            raise ValueError("rig must hold at least one camera")
        self.tf_available = bool(tf_available)
        reason = "" if tf_available else (unavailable_reason or "TF not used")
        self._states = {name: ExtrinsicsState(name, m, SOURCE_RIG, "", reason or
                                              "no TF lookup yet")
                        for name, m in self._rig.items()}
        self._lock = threading.Lock()

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras, in rig order."""
        return tuple(self._rig)

    def update(self, camera: str, tf_frame: str, matrix: np.ndarray | None,
               error: str = "") -> ExtrinsicsState:
        """Record a TF lookup of ``camera`` (``matrix`` None: it failed with ``error``).

        A matrix that is not a finite rigid transform is refused like a failed lookup.
        Returns the camera's new state; the previous one is replaced.
        """
        if camera not in self._rig:
            raise KeyError(f"unknown camera {camera!r}; known: {self.cameras}")
        if not self.tf_available:
            raise RuntimeError("TF is not used for these extrinsics (tf_available is false)")
        state = None
        if matrix is not None:
            try:
                state = ExtrinsicsState(camera, check_rigid(matrix).copy(), SOURCE_TF,
                                        tf_frame, "")
            except ValueError as exc:
                error = f"TF transform refused: {exc}"
        if state is None:
            state = ExtrinsicsState(camera, self._rig[camera], SOURCE_RIG, tf_frame,
                                    error or "TF lookup failed")
        with self._lock:
            self._states[camera] = state
        return state

    def camera_to_ego(self, camera: str) -> np.ndarray:
        """The extrinsics in use for ``camera`` (a copy)."""
        with self._lock:
            return self._states[camera].camera_to_ego.copy()

    def states(self) -> dict[str, ExtrinsicsState]:
        """Every camera's state, in rig order."""
        with self._lock:
            return dict(self._states)

    def summary(self) -> str:
        """``tf`` (every camera from TF), ``rig`` (none) or ``mixed``."""
        sources = {s.source for s in self.states().values()}
        return sources.pop() if len(sources) == 1 else "mixed"
