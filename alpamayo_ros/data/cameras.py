"""Pinhole camera rigs: configuration, AR1's 7-camera default and smaller presets.

A :class:`CameraConfig` gives the horizontal field of view, the resolution and the
mounting (position on the ego in metres, yaw/pitch in degrees; ego frame x forward,
y left, z up). :meth:`CameraConfig.geometry` turns it into the
:class:`~alpamayo_ros.sample.CameraGeometry` the model reads (intrinsics K and the
camera-to-ego transform; camera axes x right, y down, z forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from alpamayo_ros.sample import CameraGeometry

# AR1: images are 448x280 (160 vision tokens each); cameras run at 10 Hz.
AR1_WIDTH_PX = 448
AR1_HEIGHT_PX = 280
CAMERA_RATE_HZ = 10.0


@dataclass
class CameraConfig:
    """One pinhole camera."""

    name: str
    hfov_deg: float
    width_px: int = AR1_WIDTH_PX
    height_px: int = AR1_HEIGHT_PX
    x_m: float = 1.5
    y_m: float = 0.0
    z_m: float = 1.6
    yaw_deg: float = 0.0  # 0 looks forward, +90 looks left
    pitch_deg: float = 0.0  # positive looks down

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty topic-safe string, got {self.name!r}")
        if not 1.0 <= self.hfov_deg <= 170.0:
            raise ValueError(f"hfov_deg must be in [1, 170], got {self.hfov_deg}")
        if self.width_px < 8 or self.height_px < 8:
            raise ValueError(f"width_px/height_px must be >= 8, got "
                             f"{self.width_px}x{self.height_px}")
        if not -60.0 <= self.pitch_deg <= 60.0:
            raise ValueError(f"pitch_deg must be in [-60, 60], got {self.pitch_deg}")

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (square pixels)."""
        return 0.5 * self.width_px / math.tan(math.radians(self.hfov_deg) / 2.0)

    def intrinsics(self) -> np.ndarray:
        """3x3 K matrix."""
        f = self.focal_px
        return np.array([[f, 0.0, self.width_px / 2.0], [0.0, f, self.height_px / 2.0],
                         [0.0, 0.0, 1.0]])

    def rotation_camera_to_ego(self) -> np.ndarray:
        """3x3 rotation taking camera-axis vectors to the ego frame."""
        # Camera axes in ego coordinates when looking straight ahead.
        base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        yaw, pitch = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0],
                       [0, 0, 1]])
        ry = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0],
                       [-math.sin(pitch), 0, math.cos(pitch)]])
        return rz @ ry @ base

    def geometry(self) -> CameraGeometry:
        """The camera as the model sees it."""
        t = np.eye(4)
        t[:3, :3] = self.rotation_camera_to_ego()
        t[:3, 3] = (self.x_m, self.y_m, self.z_m)
        return CameraGeometry(self.name, self.width_px, self.height_px, self.intrinsics(), t)


@dataclass
class RigConfig:
    """A set of cameras sharing one frame rate."""

    cameras: list[CameraConfig] = field(default_factory=list)
    rate_hz: float = CAMERA_RATE_HZ

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("cameras must not be empty")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"cameras: names must be unique, got {names}")
        if self.rate_hz <= 0.0 or abs(10.0 / self.rate_hz - round(10.0 / self.rate_hz)) > 1e-6:
            raise ValueError(f"rate_hz must divide the 10 Hz simulation, got {self.rate_hz}")


def ar1_rig(width_px: int = AR1_WIDTH_PX, height_px: int = AR1_HEIGHT_PX) -> RigConfig:
    """AR1's 7 cameras: front-wide 120 deg, front-tele 30 deg, cross, rear and rear-tele."""
    w, h = width_px, height_px
    return RigConfig([
        CameraConfig("front_wide", 120.0, w, h, 1.6, 0.0, 1.55, 0.0, 3.0),
        CameraConfig("front_tele", 30.0, w, h, 1.6, 0.0, 1.55, 0.0, 0.5),
        CameraConfig("cross_left", 120.0, w, h, 1.2, 0.8, 1.5, 70.0, 3.0),
        CameraConfig("cross_right", 120.0, w, h, 1.2, -0.8, 1.5, -70.0, 3.0),
        CameraConfig("rear_left", 70.0, w, h, 0.5, 0.9, 1.3, 150.0, 3.0),
        CameraConfig("rear_right", 70.0, w, h, 0.5, -0.9, 1.3, -150.0, 3.0),
        CameraConfig("rear_tele", 30.0, w, h, -2.2, 0.0, 1.5, 180.0, 1.0),
    ])


def release_rig(width_px: int = 224, height_px: int = 140) -> RigConfig:
    """The 4 cameras of NVIDIA's release (cross-left, front-wide, cross-right, front-tele)."""
    full = {c.name: c for c in ar1_rig(width_px, height_px).cameras}
    return RigConfig([full[n] for n in ("cross_left", "front_wide", "cross_right",
                                        "front_tele")])


RIG_PRESETS = {
    "ar1": ar1_rig,  # 7 x 448x280
    "train_small": release_rig,  # 4 x 224x140 for training on small machines
    "tiny": lambda: release_rig(96, 60),  # tests
}


def make_rig(preset: str) -> RigConfig:
    """A rig by preset name (see :data:`RIG_PRESETS`)."""
    if preset not in RIG_PRESETS:
        raise ValueError(f"preset must be one of {sorted(RIG_PRESETS)}, got {preset!r}")
    return RIG_PRESETS[preset]()
