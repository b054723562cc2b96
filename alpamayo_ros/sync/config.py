"""Parameters of the camera synchronizer, its monitor and the frame history."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Cameras of NVIDIA's Alpamayo-R1 release: 4 cameras x 4 frames (ar1-facts.md, "Cameras").
AR1_CAMERA_NAMES = ("cross_left", "front_wide", "cross_right", "front_tele")
# The AR1 vehicle rig: 7 cameras (ar1-facts.md, "Cameras"); names as in data/cameras.py.
AR1_RIG_CAMERA_NAMES = ("front_wide", "front_tele", "cross_left", "cross_right", "rear_left",
                        "rear_right", "rear_tele")
# openpilot modeld: the two cameras of one model input must be within 10 ms (ar1-facts.md).
DEFAULT_SLOP_S = 0.01
# AR1 release: 4 frames, 0.4 s of history at 10 Hz (ar1-facts.md, "Cameras").
AR1_HISTORY_FRAMES = 4
AR1_HISTORY_STRIDE_S = 0.1

INCOMPLETE_POLICIES = ("skip", "pad")
# Who groups the frames: message_filters when importable ("auto"), or one of the two.
SYNC_BACKENDS = ("auto", "message_filters", "builtin")


@dataclass(frozen=True)
class SyncConfig:
    """Camera synchronization parameters (ROS parameter names = field names).

    - ``queue_size``: frames kept per camera while waiting for a set (message_filters'
      ``queue_size``).
    - ``slop_s``: a set is emitted when max - min of its stamps is strictly below it
      (message_filters' ``slop``).
    - ``source_timeout_s``: a camera whose newest stamp is older than this is reported
      stale (design choice: 5 frame periods at 10 Hz).
    - ``history_frames`` / ``history_stride_s``: the model's multi-frame input, oldest
      first, one set every stride; ``history_tolerance_s`` is how far a stored set may be
      from its slot's target time (below half the stride so slots never share a set).
    - ``history_incomplete``: ``"skip"`` gives no window until every slot is filled
      (like alpamayo-autoware's ``skip_on_bad_history``); ``"pad"`` repeats the nearest
      available set into empty slots and says which.
    - ``skew_window``: emitted sets over which the skew statistics are computed.
    - ``frozen_camera_timeout_s``: a camera delivering byte-identical images (new stamps)
      for this long, by header stamps, is *frozen*: its frames are not synchronized until
      the content changes again. A real camera's sensor noise changes every frame, so
      identical bytes are a fault (a frozen driver re-sending its buffer, a blind camera).
      0 turns the check off, the default here: every image source of this repository is
      noiseless and repeats frames legitimately (the simulator's renderer shows a uniform
      road or sky unchanged while the ego drives, rendered bags, the latency bench's
      constant images for the cameras the model does not read). The vehicle bring-up
      turns it on (``config/sync_vehicle.yaml``: 1.0 s, 10 frames at 10 Hz).
    - ``frozen_camera_min_speed_mps``: when > 0, identical images count toward the
      timeout only while the odometry says the ego moves at least this fast (for a
      noiseless source that repeats a static scene while the ego stands; none without
      odometry); 0 (default): they always count.
    """

    camera_names: tuple[str, ...] = AR1_RIG_CAMERA_NAMES
    queue_size: int = 10
    slop_s: float = DEFAULT_SLOP_S
    source_timeout_s: float = 0.5
    history_frames: int = AR1_HISTORY_FRAMES
    history_stride_s: float = AR1_HISTORY_STRIDE_S
    history_tolerance_s: float = 0.03
    history_incomplete: str = "skip"
    skew_window: int = 100
    frozen_camera_timeout_s: float = 0.0
    frozen_camera_min_speed_mps: float = 0.0

    def __post_init__(self) -> None:
        names = self.camera_names
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"camera_names must be a list of non-empty names, got {names!r}")
        names = tuple(names)
        if not names:
            raise ValueError("camera_names must name at least one camera")
        if len(set(names)) != len(names):
            raise ValueError(f"camera_names must be unique, got {names}")
        object.__setattr__(self, "camera_names", names)
        for name in ("queue_size", "history_frames", "skew_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("slop_s", "source_timeout_s", "history_stride_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 s, got {value!r}")
        frozen = self.frozen_camera_timeout_s
        if isinstance(frozen, bool) or not (isinstance(frozen, (int, float))
                                            and math.isfinite(frozen) and frozen >= 0):
            raise ValueError(f"frozen_camera_timeout_s must be a finite number >= 0 s "
                             f"(0: off), got {frozen!r}")
        speed = self.frozen_camera_min_speed_mps
        if isinstance(speed, bool) or not (isinstance(speed, (int, float))
                                           and math.isfinite(speed) and speed >= 0):
            raise ValueError(f"frozen_camera_min_speed_mps must be a finite number >= 0 m/s, "
                             f"got {speed!r}")
        tol = self.history_tolerance_s
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"history_tolerance_s must be a finite number >= 0 s, got {tol!r}")
        if self.history_frames > 1 and not tol < self.history_stride_s / 2:
            raise ValueError(
                f"history_tolerance_s ({tol}) must be below half of history_stride_s "
                f"({self.history_stride_s}) so that history slots never share a set")
        if self.history_incomplete not in INCOMPLETE_POLICIES:
            raise ValueError(f"history_incomplete must be one of {INCOMPLETE_POLICIES}, "
                             f"got {self.history_incomplete!r}")


@dataclass(frozen=True)
class CameraInputConfig:
    """How the camera sync node receives its inputs (ROS parameter names = field names).

    - ``compressed``: subscribe ``.../image_raw/compressed`` (sensor_msgs/CompressedImage,
      decoded only for the frames the model reads) instead of ``.../image_raw``.
    - ``report_period_s``: period of the synchronization diagnostics.
    - ``odometry_horizon_s``: ego poses kept for the model's 1.5 s ego history.
    - ``clock_jump_reset_s``: a camera stamp this far behind the newest one (bag loop,
      simulator restart) resets the synchronizer, history and odometry instead of
      mixing two timelines.
    - ``sync_backend``: ``"message_filters"`` groups frames with
      ``message_filters.ApproximateTimeSynchronizer`` (an error when it is not
      importable), ``"builtin"`` with :class:`~alpamayo_ros.sync.ApproximateTimeSynchronizer`
      (same semantics, no ROS package needed), ``"auto"`` the first when importable.
      Drop, skew and staleness accounting is the same for both.
    - ``max_image_bytes``: an image message with more data than this is rejected on
      arrival (counted as malformed): 32 MiB holds a 4K (3840 x 2160) rgb8 frame (24.9 MB)
      with room; far more is a sender fault that would stall decoding.
    """

    compressed: bool = False
    report_period_s: float = 1.0
    odometry_horizon_s: float = 5.0
    clock_jump_reset_s: float = 1.0
    sync_backend: str = "auto"
    max_image_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        if not isinstance(self.compressed, bool):
            raise ValueError(f"compressed must be true or false, got {self.compressed!r}")
        if self.sync_backend not in SYNC_BACKENDS:
            raise ValueError(f"sync_backend must be one of {SYNC_BACKENDS}, "
                             f"got {self.sync_backend!r}")
        for name in ("report_period_s", "odometry_horizon_s", "clock_jump_reset_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 s, got {value!r}")
        size = self.max_image_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_image_bytes must be an integer >= 1, got {size!r}")
