"""Closed-loop simulator: the data engine's world with an ego driven by AR1 commands.

Pure core (no rclpy): :class:`SimConfig`, :class:`ClosedLoopSim`, the ego's world pose
and Frenet conversion (:mod:`alpamayo_ros.sim.ego`) and wall-clock pacing
(:class:`Pacer`). The ROS node is :mod:`alpamayo_ros.nodes.sim_node`.
"""

from alpamayo_ros.sim.config import SimConfig
from alpamayo_ros.sim.ego import EgoPose, frenet_from_world, step_ego, world_from_frenet
from alpamayo_ros.sim.pacing import Pacer
from alpamayo_ros.sim.simulator import (
    ClosedLoopSim,
    CommandMode,
    ObstacleState,
    SimEvent,
    SimStatus,
)

__all__ = [
    "ClosedLoopSim", "CommandMode", "EgoPose", "ObstacleState", "Pacer", "SimConfig",
    "SimEvent", "SimStatus", "frenet_from_world", "step_ego", "world_from_frenet",
]
