"""The ROS 2 boundary: message conversions, parameters, QoS and DDS transport settings.

Only this package and :mod:`alpamayo_ros.nodes` import rclpy or message packages.
"""
