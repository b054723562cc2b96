"""Bag player node ``alpamayo_bag_player``: rosbag2 (MCAP or sqlite3) playback without rosbag2_py.

``ros2 run alpamayo_ros bag_player BAG [--rate R] [--loop] [--clock] [--topics T ...]
[--start-offset-s S] [--delay-s D] [--wait-for-subscribers-s W]`` or ``alpamayo replay
BAG ...`` (the same flags; the values are also ROS parameters, see
:class:`~alpamayo_ros.bags.config.BagPlayerConfig`).

Every selected topic is published with the bag's serialized CDR bytes (rclpy publishes
``bytes`` as a serialized message), so message headers and stamps are exactly those in
the bag and nothing is decoded on the way; the package's own ``alpamayo_ros/msg/*``
types play like any other. Messages go out in log-time order, paced in real time times
``rate`` from the first message (or ``start_offset_s`` into the bag). Each topic is
published with the QoS recorded in the bag, or the package's QoS for that topic when the
bag has none (``camera_info`` latched, cameras/odometry sensor QoS, the rest plan QoS).

With ``clock``, ``/clock`` carries the bag time: published before every message (so a
node with use_sim_time never sees a message stamped ahead of its clock) and at
``clock_rate_hz`` in between; a ``/clock`` topic stored in the bag is then not played.
With ``loop`` the bag starts again at its end and ``/clock`` jumps back. When the bag is
played (not looping, ``exit_at_end``), the player waits for reliable subscribers to
acknowledge and ends the process.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
import traceback
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from alpamayo_ros import topics as topic_names
from alpamayo_ros.bags.config import BagPlayerConfig, add_player_arguments, player_values
from alpamayo_ros.bags.replay import (
    NS_PER_S,
    PlaybackClock,
    QosSpec,
    default_qos_kind,
    iter_messages,
    read_info,
    select_topics,
)
from alpamayo_ros.ros.conversions import time_from_ns
from alpamayo_ros.ros.params import declare_config
from alpamayo_ros.ros.qos import clock_qos, latched_qos, plan_qos, sensor_qos

NODE_NAME = "alpamayo_bag_player"
ACK_TIMEOUT_S = 2.0
SUBSCRIBER_POLL_S = 0.05
# After every publisher has seen a subscription, the subscribers may not have matched the
# publishers yet (DDS discovery runs on each side): best-effort messages sent in between
# are dropped by the reader (seen: a replay test's first odometry message lost under
# load). Design choice: a short settle before the first message.
SUBSCRIBER_SETTLE_S = 0.3


def message_class(msgtype: str) -> type:
    """The rclpy class of ``pkg/msg/Type`` (ImportError/AttributeError when not installed)."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise ValueError(f"message type {msgtype!r} is not of the form pkg/msg/Type")
    pkg, kind, name = parts
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def qos_profile(spec: QosSpec) -> QoSProfile:
    """The rclpy profile of a :class:`~alpamayo_ros.bags.replay.QosSpec`."""
    return QoSProfile(
        depth=spec.depth, history=HistoryPolicy.KEEP_LAST,
        reliability=(ReliabilityPolicy.BEST_EFFORT if spec.reliability == "best_effort"
                     else ReliabilityPolicy.RELIABLE),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if spec.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE))


def qos_spec(profile: QoSProfile) -> QosSpec:
    """:class:`~alpamayo_ros.bags.replay.QosSpec` of an rclpy profile (as offered)."""
    return QosSpec(
        "best_effort" if profile.reliability == ReliabilityPolicy.BEST_EFFORT else "reliable",
        ("transient_local" if profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
         else "volatile"), max(int(profile.depth or 1), 1))


_DEFAULT_QOS = {"latched": latched_qos, "sensor": sensor_qos, "clock": clock_qos,
                "plan": plan_qos}


class BagPlayerNode(Node):
    """Plays a bag on its own thread (see the module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.config = cfg = declare_config(self, BagPlayerConfig)
        self.info = read_info(cfg.bag)
        selected = select_topics(self.info, cfg.topics)
        if cfg.clock and topic_names.CLOCK in selected:
            selected.remove(topic_names.CLOCK)
            self.get_logger().info("the bag's own /clock is not played (--clock publishes it)")
        self._pubs: dict[str, Publisher] = {}
        for name in selected:
            topic = self.info.topics[name]
            try:
                cls = message_class(topic.msgtype)
            except (ImportError, AttributeError, ValueError) as exc:
                self.get_logger().warning(f"not playing {name}: type {topic.msgtype} is not "
                                          f"available here ({exc})")
                continue
            qos = (qos_profile(topic.qos) if topic.qos is not None
                   else _DEFAULT_QOS[default_qos_kind(name)]())
            self._pubs[name] = self.create_publisher(cls, name, qos)
        self._clock_pub = (self.create_publisher(Clock, topic_names.CLOCK, clock_qos())
                           if cfg.clock else None)
        self.published: dict[str, int] = dict.fromkeys(self._pubs, 0)
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alpamayo_bag_player",
                                        daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"playing {self.info.path} ({self.info.duration_s:.1f} s, {len(self._pubs)} "
            f"topics) at {cfg.rate:g}x{', looping' if cfg.loop else ''}"
            f"{', publishing /clock' if cfg.clock else ''}")

    def _run(self) -> None:
        cfg = self.config
        try:
            if cfg.delay_s > 0 and self._stop.wait(cfg.delay_s):
                return
            if cfg.wait_for_subscribers_s > 0 and not self._wait_for_subscribers():
                return
            start_ns = self.info.start_ns + int(round(cfg.start_offset_s * NS_PER_S))
            while not self._stop.is_set():
                self._play_once(start_ns)
                if not cfg.loop:
                    break
            if not self._stop.is_set() and self.context.ok():
                self._finish()
        except Exception:  # a bug or an unreadable bag: end the process, saying why
            if self.context.ok():
                self.get_logger().fatal(f"playback failed, shutting down:\n"
                                        f"{traceback.format_exc()}")
                self.context.try_shutdown()

    def _wait_for_subscribers(self) -> bool:
        """Wait until every publisher has a subscription; False when asked to stop."""
        pubs = dict(self._pubs)
        if self._clock_pub is not None:
            pubs[topic_names.CLOCK] = self._clock_pub
        deadline = time.monotonic() + self.config.wait_for_subscribers_s
        while True:
            lonely = sorted(t for t, p in pubs.items() if p.get_subscription_count() == 0)
            if not lonely:
                return not self._stop.wait(SUBSCRIBER_SETTLE_S)
            if time.monotonic() >= deadline:
                self.get_logger().warning(f"playing although nobody subscribes to {lonely}")
                return True
            if self._stop.wait(SUBSCRIBER_POLL_S):
                return False

    def _play_once(self, start_ns: int) -> None:
        clock = PlaybackClock(self.config.rate)
        clock.start(time.monotonic(), start_ns)
        period_s = 1.0 / self.config.clock_rate_hz
        last_clock_ns, last_clock_wall = -1, -float("inf")
        for msg in iter_messages(self.info.path, list(self._pubs), start_ns):
            due = clock.wall_for(msg.log_ns)
            while True:
                now = time.monotonic()
                if now >= due:
                    break
                if self._clock_pub is not None and now - last_clock_wall >= period_s:
                    last_clock_ns = max(last_clock_ns, min(clock.bag_at(now), msg.log_ns))
                    self._clock_pub.publish(Clock(clock=time_from_ns(last_clock_ns)))
                    last_clock_wall = now
                wait = due - now
                if self._clock_pub is not None:
                    wait = min(wait, max(last_clock_wall + period_s - now, 0.0))
                if self._stop.wait(wait):
                    return
            if self._clock_pub is not None and msg.log_ns > last_clock_ns:
                last_clock_ns = msg.log_ns
                self._clock_pub.publish(Clock(clock=time_from_ns(last_clock_ns)))
                last_clock_wall = time.monotonic()
            self._pubs[msg.topic].publish(msg.raw)
            self.published[msg.topic] += 1

    def _finish(self) -> None:
        total = sum(self.published.values())
        self.get_logger().info(f"played {total} messages on {len(self.published)} topics")
        for pub in self._pubs.values():
            try:
                pub.wait_for_all_acked(timeout_sec=ACK_TIMEOUT_S)
            except Exception:  # best effort publishers / old rmw: nothing to wait for
                pass
        self.finished.set()
        if self.config.exit_at_end and not self.config.loop:
            self.context.try_shutdown()

    def destroy_node(self) -> None:
        """Stop playback, then the node."""
        if hasattr(self, "_thread"):  # absent when __init__ failed (bad bag or parameters)
            self._stop.set()
            if self._thread.is_alive() and threading.current_thread() is not self._thread:
                self._thread.join(timeout=5.0)
        super().destroy_node()


def overrides(values: dict[str, Any]) -> list[Parameter]:
    """ROS parameter overrides from command-line values."""
    return [Parameter(k, value=list(v) if isinstance(v, tuple) else v)
            for k, v in values.items()]


def play(values: dict[str, Any], ros_args: list[str] | None = None) -> None:
    """Run the player with parameter ``values`` until the bag ends or Ctrl-C."""
    from alpamayo_ros.ros.runner import run_node

    params = overrides(values)
    run_node(lambda: BagPlayerNode(parameter_overrides=params), ros_args or [])


def main(args: list[str] | None = None) -> None:
    """``ros2 run alpamayo_ros bag_player BAG [flags] [--ros-args ...]``."""
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if args is None else args)
    parser = argparse.ArgumentParser(prog="bag_player", description=__doc__.splitlines()[0])
    add_player_arguments(parser)
    ns = parser.parse_args(remove_ros_args(argv))
    play(player_values(ns), argv)


if __name__ == "__main__":
    main()
