"""Controller node: safety monitor + trajectory tracking at 50 Hz + safe fallback.

Subscribes the policy's ``Trajectory``, ``/perception/obstacles`` and the ego odometry;
publishes ``ControlCommand`` and ``SafetyStatus`` every control cycle (``control_rate_hz``)
and never stops publishing them. All decisions are the pure
:class:`~alpamayo_ros.control.core.ControllerCore`'s:

- every trajectory is checked before acceptance (NaN/inf, staleness, acceleration, jerk,
  lateral acceleration, curvature, yaw rate, time to collision); a failed plan is never
  executed: the last valid plan is followed with a soft stop (DEGRADED), or a
  jerk-limited minimal-risk stop runs when nothing valid is left or the policy is
  silent for ``policy_timeout_s`` (FALLBACK);
- obstacles arrive in the map frame and are brought into a plan's frame (the ego frame at
  the plan's camera stamp) with the odometry pose at that stamp. Without odometry at
  that stamp the plan cannot be checked for collisions and is rejected (failed check
  ``localization_at_plan_stamp``);
- a malformed obstacle message (non-finite or negative size/pose) is discarded and
  counted; the previous obstacle set stays in force;
- odometry or obstacles that stop arriving (``odometry_timeout_s``,
  ``obstacles_timeout_s``) are reported in ``failed_checks`` and force a minimal-risk
  stop (odometry) or a soft stop (obstacles) until they resume; an odometry stamp more
  than ``clock_jump_reset_s`` behind the newest (bag loop, simulator restart) clears the
  odometry buffer (counted in ``odometry_resets``) so the stream is accepted again;
- an odometry position more than ``max_odometry_jump_m`` from where the previous sample
  predicts is a localization fault (counted in ``odometry_jumps``): the buffer restarts
  at the new pose and the core drops the plan anchored to the old one (minimal-risk stop,
  ``max_odometry_jump_m`` in ``failed_checks``) until a plan stamped after the jump passes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from visualization_msgs.msg import MarkerArray

from alpamayo_ros import topics
from alpamayo_ros.control import ControllerConfig, ControllerCore
from alpamayo_ros.control.schedule import FixedRateSchedule, describe_overrun
from alpamayo_ros.msg import ControlCommand, ObstacleArray, SafetyStatus
from alpamayo_ros.msg import Trajectory as TrajectoryMsg
from alpamayo_ros.ros import diagnostics
from alpamayo_ros.ros.conversions import (
    command_to_msg,
    controller_status_to_msg,
    msg_to_trajectory,
    obstacles_from_msg,
    odometry_to_pose,
    safety_markers,
)
from alpamayo_ros.ros.lifetime import set_process_nice
from alpamayo_ros.ros.params import declare_config
from alpamayo_ros.ros.qos import plan_qos, sensor_qos
from alpamayo_ros.safety import SafetyLimits
from alpamayo_ros.safety.collision import Obstacle, obstacles_in_frame
from alpamayo_ros.sync.odometry import OdometryBuffer

LOCALIZATION_CHECK = "localization_at_plan_stamp"


class ControllerNode(Node):
    """Checks plans, tracks the accepted one, falls back safely."""

    def __init__(self, node_name: str = "alpamayo_controller", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.limits = declare_config(self, SafetyLimits)
        self.config = declare_config(self, ControllerConfig)
        self.core = ControllerCore(self.config, self.limits)
        if self.config.process_nice:  # 0: keep the inherited priority
            not_set = set_process_nice(self.config.process_nice)
            if not_set:
                self.get_logger().warning(not_set)
        self.odometry = OdometryBuffer(horizon_s=10.0,
                                       max_jump_m=self.config.max_odometry_jump_m,
                                       max_jump_gap_s=self.config.odometry_timeout_s)
        self._lock = threading.Lock()
        self._obstacles_map: list[Obstacle] = []
        self._obstacles_stamp_ns: int | None = None
        self._last_odometry_ns: int | None = None
        self.counts = {"plans": 0, "accepted": 0, "rejected": 0, "malformed_plans": 0,
                       "malformed_obstacles": 0, "commands": 0, "odometry_resets": 0,
                       "odometry_jumps": 0}
        self._last_status = None
        inputs = MutuallyExclusiveCallbackGroup()
        self.create_subscription(TrajectoryMsg, topics.TRAJECTORY, self._on_trajectory,
                                 plan_qos(), callback_group=inputs)
        self.create_subscription(ObstacleArray, topics.OBSTACLES, self._on_obstacles,
                                 plan_qos(), callback_group=inputs)
        self.create_subscription(Odometry, topics.ODOMETRY, self._on_odometry, sensor_qos(),
                                 callback_group=inputs)
        self._cmd_pub = self.create_publisher(ControlCommand, topics.CONTROL_COMMAND,
                                              plan_qos())
        self._status_pub = self.create_publisher(SafetyStatus, topics.SAFETY_STATUS, plan_qos())
        self._marker_pub = self.create_publisher(MarkerArray, topics.SAFETY_MARKERS,
                                                 plan_qos())
        self._diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        # One cycle per passed deadline (alpamayo_ros/control/schedule.py): a timer on
        # /clock fires only when a clock message crosses its deadline and skips cycles;
        # the schedule runs the ones it skipped. (Polling at 100 Hz instead measured worse
        # in a MultiThreadedExecutor: 19-39 Hz of commands next to 50 Hz odometry.)
        self.schedule = FixedRateSchedule(int(round(self.config.period_s * 1e9)))
        self._last_poll: tuple[int, float] | None = None  # node ns, wall s of the last call
        self._last_overrun: tuple[float, float] | None = None  # node, wall gap (s)
        self.create_timer(self.config.period_s, self._poll,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0, self._publish_diagnostics)
        self.create_timer(0.2, self._publish_markers)
        self.get_logger().info(f"controller at {self.config.control_rate_hz} Hz, policy "
                               f"timeout {self.config.policy_timeout_s} s")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_odometry(self, msg: Odometry) -> None:
        pose = odometry_to_pose(msg)
        jump_ns = int(self.config.clock_jump_reset_s * 1e9)
        with self._lock:
            # a jump between two consecutive messages, not a stream drifting backwards
            previous, self._last_odometry_ns = self._last_odometry_ns, pose.stamp_ns
            if previous is not None and pose.stamp_ns < previous - jump_ns:
                self.odometry.clear()
                self.counts["odometry_resets"] += 1
                self.get_logger().warning(
                    f"odometry time jumped back by {(previous - pose.stamp_ns) / 1e9:.2f}"
                    " s: odometry buffer cleared")
            jumps = self.odometry.jumps
            accepted = self.odometry.add(pose)
            jumped = self.odometry.jumps != jumps
            if jumped:
                self.counts["odometry_jumps"] += 1
        if jumped:
            self.core.note_odometry_jump(pose.stamp_ns, self.odometry.last_jump_m)
            self.get_logger().warning(
                f"odometry position jumped {self.odometry.last_jump_m:.2f} m at "
                f"{pose.stamp_ns}: plan dropped until one stamped after the jump passes")
        if accepted:
            self.core.note_input("odometry", self._now_ns())

    def _obstacles_for(self, stamp_ns: int) -> list[Obstacle] | None:
        """Obstacles in the ego frame at ``stamp_ns`` (None: no pose there)."""
        with self._lock:
            obstacles = list(self._obstacles_map)
            pose = self.odometry.pose_at(stamp_ns)
        if not obstacles:
            return []
        if pose is None:
            return None
        return obstacles_in_frame(obstacles, pose.x_m, pose.y_m, pose.heading_rad)

    def _on_trajectory(self, msg: TrajectoryMsg) -> None:
        now_ns = self._now_ns()
        self.counts["plans"] += 1
        try:
            plan = msg_to_trajectory(msg)
        except (ValueError, TypeError) as exc:  # no points, ragged arrays
            self.counts["malformed_plans"] += 1
            self.get_logger().warning(f"discarding malformed trajectory: {exc}",
                                      throttle_duration_sec=5.0)
            return
        obstacles = self._obstacles_for(plan.stamp_ns)
        if obstacles is None:
            report = self.core.reject_plan(plan, now_ns, LOCALIZATION_CHECK,
                                           "no odometry at the plan's stamp to place obstacles")
            accepted = False
            summary = report.summary()
        else:
            report, accepted = self.core.submit_plan(plan, now_ns, obstacles,
                                                     self._obstacles_stamp_ns)
            summary = report.summary()
        self.counts["accepted" if accepted else "rejected"] += 1
        if not accepted:
            self.get_logger().warning(f"plan {plan.stamp_ns} not adopted: {summary}",
                                      throttle_duration_sec=2.0)

    def _on_obstacles(self, msg: ObstacleArray) -> None:
        try:
            obstacles, stamp_ns = obstacles_from_msg(msg)
        except ValueError as exc:
            self.counts["malformed_obstacles"] += 1
            self.get_logger().warning(f"discarding malformed obstacles: {exc}",
                                      throttle_duration_sec=5.0)
            return
        with self._lock:
            self._obstacles_map, self._obstacles_stamp_ns = obstacles, stamp_ns
        self.core.note_input("obstacles", self._now_ns())
        active = self.core.active_plan
        if active is not None:
            in_plan_frame = self._obstacles_for(active.stamp_ns)
            if in_plan_frame is not None:
                self.core.update_obstacles(in_plan_frame, self._now_ns(), stamp_ns)

    def _poll(self) -> None:
        now_ns, wall_s = self._now_ns(), time.monotonic()
        overruns = self.schedule.overruns
        for deadline_ns in self.schedule.due(now_ns):
            self._step(deadline_ns)
        if self.schedule.overruns != overruns and self._last_poll is not None:
            node_gap_s = (now_ns - self._last_poll[0]) / 1e9
            wall_gap_s = wall_s - self._last_poll[1]
            self._last_overrun = (node_gap_s, wall_gap_s)
            self.get_logger().warning(describe_overrun(node_gap_s, wall_gap_s))
        self._last_poll = (now_ns, wall_s)

    def _step(self, now_ns: int) -> None:
        with self._lock:
            latest = self.odometry.latest
        speed = latest.speed_mps if latest is not None else float("nan")
        command, status = self.core.step(now_ns, speed)
        self._cmd_pub.publish(command_to_msg(command))
        self._status_pub.publish(controller_status_to_msg(status))
        self.counts["commands"] += 1
        self._last_status = status

    def _publish_markers(self) -> None:
        if self._last_status is not None:
            self._marker_pub.publish(safety_markers(self._last_status))

    def _publish_diagnostics(self) -> None:
        status = self._last_status
        values: dict[str, object] = dict(self.counts)
        if status is None:
            level, message = diagnostics.WARN, "starting"
        else:
            values["schedule_overruns"] = self.schedule.overruns
            if self._last_overrun is not None:  # node and wall time of the latest one
                values["last_overrun_node_gap_s"] = round(self._last_overrun[0], 3)
                values["last_overrun_wall_gap_s"] = round(self._last_overrun[1], 3)
            values["time_resets"] = self.core.time_resets
            values["odometry_rejected_out_of_order"] = self.odometry.rejected_out_of_order
            values["odometry_rejected_non_finite"] = self.odometry.rejected_non_finite
            values.update({"state": status.state.name, "policy_silence_s":
                           status.policy_silence_s, "failed_checks":
                           ",".join(status.failed_checks)})
            level = {0: diagnostics.OK, 1: diagnostics.WARN}.get(int(status.state),
                                                                  diagnostics.ERROR)
            message = status.reason
        self._diag_pub.publish(diagnostics.array(self._now_ns(), [diagnostics.status(
            f"{self.get_name()}: safety", self.get_name(), level, message, values)]))


def main(args: list[str] | None = None) -> None:
    """``ros2 run alpamayo_ros controller_node``."""
    from alpamayo_ros.ros.runner import run_node

    # Single-threaded: every callback is short, and the MultiThreadedExecutor measured
    # stalls of ~1 s between timer callbacks here (see README, Controller). UDP only: a
    # shared-memory send can sleep 333 ms when another process restarts or freezes
    # (alpamayo_ros/ros/transport.py).
    run_node(ControllerNode, args, threads=1, shared_memory=False)


if __name__ == "__main__":
    main()
