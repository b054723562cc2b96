"""Controller core (pure, no rclpy): tracking, fallback and the combined ControllerCore.

- :class:`TrajectoryTracker`: samples the active plan by its camera stamp, speed feedback.
- :class:`FallbackManager`: OK / DEGRADED (soft stop) / FALLBACK (minimal-risk stop).
- :class:`ControllerCore`: ``submit_plan`` / ``update_obstacles`` / ``step``.
"""

from alpamayo_ros.control.config import ControllerConfig
from alpamayo_ros.control.core import ControllerCore, ControllerStatus
from alpamayo_ros.control.fallback import (
    Command,
    CommandSource,
    FallbackInputs,
    FallbackManager,
    SafetyState,
)
from alpamayo_ros.control.tracker import TrackingTarget, TrajectoryTracker

__all__ = [
    "Command", "CommandSource", "ControllerConfig", "ControllerCore", "ControllerStatus",
    "FallbackInputs", "FallbackManager", "SafetyState", "TrackingTarget", "TrajectoryTracker",
]
