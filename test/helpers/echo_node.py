"""Child process for test_ros_messages: echo every custom message type back.

Subscribes ``/echo/in/<Type>`` for each type named on the command line and republishes
what it receives on ``/echo/out/<Type>`` from this separate process.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy

import alpamayo_ros.msg as alpamayo_msgs


def main(type_names: list[str]) -> None:
    """Run the echo node until shut down."""
    rclpy.init()
    node = rclpy.create_node("alpamayo_echo")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    keep = []
    for name in type_names:
        cls = getattr(alpamayo_msgs, name)
        pub = node.create_publisher(cls, f"/echo/out/{name}", qos)
        keep.append(node.create_subscription(cls, f"/echo/in/{name}", pub.publish, qos))
    node.get_logger().info(f"echoing {len(type_names)} types")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
