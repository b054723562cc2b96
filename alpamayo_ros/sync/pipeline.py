"""Camera synchronization pipeline: synchronizer + monitor + frame history from a config.

This is the object the rclpy camera node holds: per image callback it calls
:meth:`CameraSync.add` with the camera's name, the header stamp in ns and the image;
on a timer it publishes :meth:`CameraSync.report`; before inference it reads
:meth:`CameraSync.window`. The grouping backend is this package's
:class:`~alpamayo_ros.sync.synchronizer.ApproximateTimeSynchronizer` unless another
:class:`~alpamayo_ros.sync.synchronizer.Synchronizer` is given (the node passes an adapter
around message_filters'); the monitor's accounting does not depend on which.
"""

from __future__ import annotations

import math
from typing import Any

from alpamayo_ros.sync.config import SyncConfig
from alpamayo_ros.sync.history import FrameHistory, HistoryWindow
from alpamayo_ros.sync.monitor import SyncMonitor, SyncReport
from alpamayo_ros.sync.synchronizer import ApproximateTimeSynchronizer, SyncedSet, Synchronizer


class CameraSync:
    """Synchronize named cameras, keep the model's history and report health."""

    def __init__(self, config: SyncConfig, synchronizer: Synchronizer | None = None) -> None:
        """Wire a synchronizer, the monitor and the history from ``config``.

        ``synchronizer``: a fresh backend over ``len(config.camera_names)`` inputs with
        ``config.queue_size`` and ``config.slop_s`` (default: the built-in one).
        """
        self.config = config
        self._index = {name: i for i, name in enumerate(config.camera_names)}
        self.synchronizer = synchronizer if synchronizer is not None else (
            ApproximateTimeSynchronizer(len(config.camera_names), config.queue_size,
                                        config.slop_s))
        self.monitor = SyncMonitor(config.camera_names, config.source_timeout_s,
                                   config.skew_window, config.queue_size, config.slop_s,
                                   config.frozen_camera_timeout_s or math.inf,
                                   config.frozen_camera_min_speed_mps)
        self.history = FrameHistory(
            config.history_frames, config.history_stride_s, config.history_tolerance_s,
            config.history_incomplete)
        self.synchronizer.register_callback(self.monitor.on_set)
        self.synchronizer.register_callback(self.history.push)

    def camera_index(self, camera: str | int) -> int:
        """Index of a camera given by name or index."""
        if isinstance(camera, str):
            if camera not in self._index:
                raise KeyError(f"unknown camera {camera!r}; known: {self.config.camera_names}")
            return self._index[camera]
        if not 0 <= camera < len(self._index):
            raise IndexError(f"camera index {camera} outside 0..{len(self._index) - 1}")
        return camera

    def add(self, camera: str | int, stamp_ns: int, item: Any, now_ns: int,
            digest: int | None = None, ego_speed_mps: float | None = None
            ) -> SyncedSet | None:
        """Feed one frame; return the set it completed, if any.

        With a ``digest`` (:func:`~alpamayo_ros.sync.frames.frame_digest` of its bytes) the
        frame is first checked for a frozen camera and refused (None) while it is frozen.
        """
        index = self.camera_index(camera)
        if digest is not None and not self.monitor.accept_content(
                index, stamp_ns, digest, now_ns, ego_speed_mps):
            return None
        self.monitor.on_frame(index, stamp_ns, now_ns)  # first: it mirrors the queues
        return self.synchronizer.add(index, stamp_ns, item)

    def reject(self, camera: str | int, now_ns: int) -> None:
        """Count a frame of ``camera`` refused as malformed before synchronization."""
        self.monitor.on_malformed(self.camera_index(camera), now_ns)

    def window(self) -> HistoryWindow | None:
        """The model's multi-frame history (None: not ready, see FrameHistory)."""
        return self.history.window()

    def report(self, now_ns: int) -> SyncReport:
        """Synchronization health at ``now_ns``."""
        return self.monitor.report(now_ns)
