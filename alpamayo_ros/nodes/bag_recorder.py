"""Bag recorder node ``alpamayo_bag_recorder``: rosbag2 MCAP recording without rosbag2_py.

``ros2 run alpamayo_ros bag_recorder --out DIR (--topics T ... | --all)`` or
``alpamayo record --out DIR ...`` (the same flags; also ROS parameters, see
:class:`~alpamayo_ros.bags.config.BagRecorderConfig`).

Topics are subscribed as they appear on the graph (checked every
``discovery_period_s``) with serialized (``raw=True``) subscriptions, whose QoS follows
what the publishers offer (reliable only if all are, transient-local only if all are:
rosbag2's rule), and each message's CDR bytes go into the bag unchanged
(:class:`~alpamayo_ros.bags.record.BagWriter`).

Log time = receive time on this node's clock: the system clock, or ``/clock`` when the
recorder runs with ``-p use_sim_time:=true`` (what ``ros2 bag record --use-sim-time``
does). Header stamps inside the messages are kept as they are, so a consumer can use
either. SIGINT and SIGTERM end the recording cleanly: rclpy's signal handler shuts the
context down, spinning returns and :meth:`BagRecorderNode.destroy_node` closes the bag
(MCAP summary and ``metadata.yaml`` written); ``max_duration_s`` does the same by itself.
Every ``flush_period_s`` the messages received so far go to the file, so a recorder
killed with SIGKILL leaves a bag that ``alpamayo recover`` restores up to at most that
period before the kill.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from alpamayo_ros.bags.config import BagRecorderConfig, add_recorder_arguments, recorder_values
from alpamayo_ros.bags.record import BagWriter, default_bag_dir, subscription_qos
from alpamayo_ros.nodes.bag_player import message_class, overrides, qos_profile, qos_spec
from alpamayo_ros.ros.params import ConfigError, declare_config

NODE_NAME = "alpamayo_bag_recorder"


class BagRecorderNode(Node):
    """Subscribes topics as they appear and writes what arrives."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.config = cfg = declare_config(self, BagRecorderConfig)
        if not cfg.topics and not cfg.all_topics:
            raise ConfigError("parameter 'topics' (BagRecorderConfig): name topics to record "
                              "or set all_topics (--all)")
        self.writer = BagWriter(cfg.out_dir or default_bag_dir())
        self._subs: dict[str, Any] = {}
        self._skipped: set[str] = set()
        self.create_timer(cfg.discovery_period_s, self._discover)
        # bounds what a SIGKILL loses; on the steady clock, so a paused /clock still flushes
        self.create_timer(cfg.flush_period_s, self.writer.flush,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        if cfg.max_duration_s > 0:
            self.create_timer(cfg.max_duration_s, self._stop_recording)
        self.get_logger().info(
            f"recording {'all topics' if cfg.all_topics else ', '.join(cfg.topics)} into "
            f"{self.writer.path}")
        self._discover()

    def _discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name in self._subs or name in self._skipped or not self.config.wants(name):
                continue
            if self.config.all_topics and any(part.startswith("_") for part in name.split("/")):
                continue  # hidden topics
            offered = [qos_spec(info.qos_profile)
                       for info in self.get_publishers_info_by_topic(name)]
            if not offered:
                continue  # no publisher yet: its QoS decides ours
            msgtype = types[0]
            try:
                cls = message_class(msgtype)
                self.writer.add_topic(name, msgtype, offered)
            except (ImportError, AttributeError, ValueError, LookupError) as exc:
                self._skipped.add(name)
                self.get_logger().warning(f"not recording {name} ({msgtype}): {exc}")
                continue
            if len(types) > 1:
                self.get_logger().warning(f"{name} has several types {types}; recording "
                                          f"{msgtype}")
            self._subs[name] = self.create_subscription(
                cls, name, lambda raw, topic=name: self._on_message(topic, raw),
                qos_profile(subscription_qos(offered)), raw=True)
            self.get_logger().info(f"recording {name} ({msgtype})")

    def _on_message(self, topic: str, raw: bytes) -> None:
        self.writer.write(topic, self.get_clock().now().nanoseconds, raw)

    def _stop_recording(self) -> None:
        self.get_logger().info(f"max_duration_s {self.config.max_duration_s:g} reached")
        self.context.try_shutdown()

    def destroy_node(self) -> None:
        """Close the bag (idempotent), then the node."""
        writer = getattr(self, "writer", None)  # None: __init__ failed (bad parameters)
        if writer is not None:
            writer.close()
            counts = ", ".join(f"{t}: {n}" for t, n in sorted(writer.counts.items()))
            print(f"[{NODE_NAME}] wrote {writer.path} ({counts or 'no messages'})",
                  flush=True)  # the rclpy logger may already be shut down here
        super().destroy_node()


def record(values: dict[str, Any], ros_args: list[str] | None = None) -> None:
    """Run the recorder with parameter ``values`` until SIGINT/SIGTERM or max duration."""
    from alpamayo_ros.ros.runner import run_node

    params = overrides(values)
    run_node(lambda: BagRecorderNode(parameter_overrides=params), ros_args or [])


def main(args: list[str] | None = None) -> None:
    """``ros2 run alpamayo_ros bag_recorder --out DIR --topics ... [--ros-args ...]``."""
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if args is None else args)
    parser = argparse.ArgumentParser(prog="bag_recorder", description=__doc__.splitlines()[0])
    add_recorder_arguments(parser)
    ns = parser.parse_args(remove_ros_args(argv))
    record(recorder_values(ns), argv)


if __name__ == "__main__":
    main()
