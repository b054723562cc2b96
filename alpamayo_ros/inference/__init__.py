"""Online inference core of the policy node (no rclpy): config, runner, latest-only worker."""
