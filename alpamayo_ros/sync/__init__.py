"""Multi-camera synchronization (pure core, no rclpy).

- :class:`ApproximateTimeSynchronizer`: message_filters' approximate-time policy on
  ``(input_index, stamp_ns, item)``.
- :class:`SyncMonitor`: dropped sets, inter-camera skew, staleness, stopped cameras.
- :class:`FrameHistory`: the model's multi-frame history at a fixed stride.
- :class:`CameraSync`: the three wired together from a :class:`SyncConfig`.
"""

from alpamayo_ros.sync.config import SyncConfig
from alpamayo_ros.sync.history import FrameHistory, HistoryWindow
from alpamayo_ros.sync.monitor import CameraHealth, SyncMonitor, SyncReport
from alpamayo_ros.sync.pipeline import CameraSync
from alpamayo_ros.sync.synchronizer import ApproximateTimeSynchronizer, SyncedSet

__all__ = [
    "ApproximateTimeSynchronizer", "CameraHealth", "CameraSync", "FrameHistory",
    "HistoryWindow", "SyncConfig", "SyncMonitor", "SyncReport", "SyncedSet",
]
