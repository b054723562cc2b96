"""Topic names of the alpamayo_ros graph (Autoware-style namespaces).

Shared by every node, the bag writer/reader, the launch graph and the RViz config.

Pure constants: importing this module loads no ROS package.
"""

from __future__ import annotations

CAMERA_NAMESPACE = "/sensing/camera"
ODOMETRY = "/localization/kinematic_state"  # nav_msgs/Odometry, frame map
OBSTACLES = "/perception/obstacles"  # alpamayo_ros/ObstacleArray
SIM_MARKERS = "/simulation/markers"  # visualization_msgs/MarkerArray: sim obstacles + ego (RViz)
# Route command for the policy ("turn left at the next junction"): std_msgs/String,
# latched (transient-local), so a policy that starts late still gets the current route.
NAVIGATION = "/planning/navigation_command"
# Policy outputs.
TRAJECTORY = "/planning/alpamayo/trajectory"  # alpamayo_ros/Trajectory
REASONING = "/planning/alpamayo/reasoning"  # alpamayo_ros/Reasoning
PATH = "/planning/alpamayo/path"  # nav_msgs/Path (RViz)
MARKERS = "/planning/alpamayo/markers"  # visualization_msgs/MarkerArray (RViz)
# Data-engine labels written into generated bags.
REFERENCE_TRAJECTORY = "/planning/reference_trajectory"
REFERENCE_REASONING = "/planning/reference_reasoning"
# Controller outputs.
CONTROL_COMMAND = "/control/command"  # alpamayo_ros/ControlCommand
SAFETY_STATUS = "/control/safety_status"  # alpamayo_ros/SafetyStatus
SAFETY_MARKERS = "/control/safety_markers"  # visualization_msgs/MarkerArray (RViz text)
DIAGNOSTICS = "/diagnostics"  # diagnostic_msgs/DiagnosticArray
CLOCK = "/clock"  # rosgraph_msgs/Clock

MAP_FRAME = "map"
EGO_FRAME = "base_link"


def image_topic(camera: str, compressed: bool) -> str:
    """``/sensing/camera/<camera>/image_raw`` or ``.../image_raw/compressed``."""
    base = f"{CAMERA_NAMESPACE}/{camera}/image_raw"
    return f"{base}/compressed" if compressed else base


def camera_info_topic(camera: str) -> str:
    """``/sensing/camera/<camera>/camera_info``."""
    return f"{CAMERA_NAMESPACE}/{camera}/camera_info"
