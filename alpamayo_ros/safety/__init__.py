"""Trajectory safety monitor (pure core, no rclpy).

- :mod:`alpamayo_ros.safety.checks`: pure ``check_*(traj, limit) -> (value, passed)``.
- :mod:`alpamayo_ros.safety.collision`: oriented-box, constant-velocity collision check.
- :class:`SafetyLimits`: the limits and their sources; :class:`SafetyMonitor` runs every
  check and returns a :class:`SafetyReport` (maps to ``SafetyCheck`` / ``SafetyStatus``).
"""

from alpamayo_ros.safety.collision import Collision, EgoBox, Obstacle, ObstacleClass
from alpamayo_ros.safety.limits import SafetyLimits
from alpamayo_ros.safety.monitor import CheckResult, SafetyMonitor, SafetyReport, empty_report

__all__ = [
    "CheckResult", "Collision", "EgoBox", "Obstacle", "ObstacleClass", "SafetyLimits",
    "SafetyMonitor", "SafetyReport", "empty_report",
]
