"""Synthetic DrivingSamples with a plausible camera rig, for tests and benchmarks.

Random images (the policy's speed does not depend on pixel values), a forward-facing
rig of up to 7 pinhole cameras at distinct yaws, smooth ego history and controls drawn
within the AR1 bounds. Not training data: the data engine produces that.
"""

from __future__ import annotations

import numpy as np

from alpamayo_ros.sample import CameraGeometry, CocLabel, DrivingSample
from alpamayo_ros.unicycle import integrate

# Camera -> ego rotation for a forward camera (camera x right, y down, z forward).
_CAM_TO_EGO_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_CAMERA_YAWS_RAD = (0.0, 0.9, -0.9, 0.0, 1.8, -1.8, 3.14)


def camera_rig(num_cameras: int, width_px: int, height_px: int) -> list[CameraGeometry]:
    """Pinhole cameras on the roof (1.5 m forward, 1.6 m up), at distinct yaws."""
    if not 1 <= num_cameras <= len(_CAMERA_YAWS_RAD):
        raise ValueError(f"num_cameras must be 1..{len(_CAMERA_YAWS_RAD)}, got {num_cameras}")
    rig = []
    for i in range(num_cameras):
        focal = width_px * (1.5 if i == 3 else 0.6)  # camera 3 is a tele
        k = np.array([[focal, 0.0, width_px / 2], [0.0, focal, height_px / 2], [0, 0, 1.0]])
        yaw = _CAMERA_YAWS_RAD[i]
        rz = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0],
                       [0.0, 0.0, 1.0]])
        pose = np.eye(4)
        pose[:3, :3] = rz @ _CAM_TO_EGO_FORWARD
        pose[:3, 3] = (1.5, 0.0, 1.6)
        rig.append(CameraGeometry(f"camera_{i}", width_px, height_px, k, pose))
    return rig


def synthetic_sample(rng: np.random.Generator, num_cameras: int = 2, num_frames: int = 2,
                     height_px: int = 96, width_px: int = 160, text: str = "",
                     navigation: str = "") -> DrivingSample:
    """One random keyframe; ``text`` becomes the CoC label's reasoning when given."""
    speed = float(rng.uniform(0.0, 15.0))
    acc = np.cumsum(rng.normal(0.0, 0.1, 64)).clip(-3.0, 2.0)
    curv = np.cumsum(rng.normal(0.0, 0.002, 64)).clip(-0.2, 0.2)
    st = integrate(acc, curv, speed)
    t = np.arange(-15, 1) * 0.1
    history = np.stack([speed * t, np.zeros(16), np.zeros(16), np.full(16, speed)], axis=1)
    return DrivingSample(
        stamp_ns=0,
        images=rng.integers(0, 256, (num_frames, num_cameras, height_px, width_px, 3),
                            dtype=np.uint8),
        cameras=camera_rig(num_cameras, width_px, height_px),
        ego_history=history.astype(np.float32),
        future_xyh=np.stack([st.x_m, st.y_m, st.heading_rad], axis=1).astype(np.float32),
        future_controls=np.stack([acc, curv], axis=1).astype(np.float32),
        speed_mps=speed,
        coc=CocLabel("", "", [], text) if text else None,
        navigation=navigation,
    )
