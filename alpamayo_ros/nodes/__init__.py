"""Thin rclpy nodes: declare parameters, build core objects, convert and publish."""
