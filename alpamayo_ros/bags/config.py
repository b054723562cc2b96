"""Parameters of the bag player and recorder, and their command-line flags.

The dataclasses are the single definition: each node declares one ROS parameter per
field (``-p rate:=2.0``), and the command-line flags (``alpamayo replay BAG --rate 2``,
``ros2 run alpamayo_ros bag_player BAG --rate 2``) are mapped onto the same fields by
:func:`add_player_arguments` / :func:`player_values` (and the recorder's twins).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from typing import Any

# ros2 bag play publishes /clock at 40 Hz by default (--clock [HZ]); 100 Hz keeps a
# use_sim_time node's timers within 10 ms of the bag time.
DEFAULT_CLOCK_RATE_HZ = 100.0
# Topics a full recording leaves out (ros2 bag record -a records them; they are per-node
# noise here and /rosout alone outgrows the cameras' metadata).
DEFAULT_EXCLUDED_TOPICS = ("/rosout", "/parameter_events")


def _check_numbers(obj: Any) -> None:
    for f in fields(obj):
        value, kind = getattr(obj, f.name), str(f.type)
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value!r}")
        elif kind == "bool" and not isinstance(value, bool):
            raise ValueError(f"{f.name} must be true or false, got {value!r}")
        elif kind == "str" and not isinstance(value, str):
            raise ValueError(f"{f.name} must be a string, got {value!r}")
        elif kind.startswith("tuple"):
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{f.name} must be a list of non-empty names, got {value!r}")
            object.__setattr__(obj, f.name, tuple(value))


@dataclass(frozen=True)
class BagPlayerConfig:
    """Bag playback (node ``alpamayo_bag_player``).

    - ``bag``: rosbag2 directory (or its ``.mcap`` / ``.db3`` file); required.
    - ``rate``: playback speed factor (2.0 = twice real time).
    - ``loop``: start again at the end (``/clock`` then jumps back to the start).
    - ``clock``: publish ``/clock`` from the bag time, for nodes with use_sim_time.
    - ``clock_rate_hz``: how often ``/clock`` is published between messages.
    - ``topics``: topics to play; empty plays every topic of the bag.
    - ``start_offset_s``: skip this much of the bag's beginning.
    - ``delay_s``: wait this long (wall time) before the first message, so subscribers
      can discover the publishers (like ``ros2 bag play --delay``).
    - ``wait_for_subscribers_s``: before playing, wait up to this long until every played
      topic (and ``/clock``) has a matched subscription (0 = do not wait); playback then
      starts anyway, with a warning naming the topics nobody listens to.
    - ``exit_at_end``: end the process after the last message (when not looping).
    """

    bag: str = ""
    rate: float = 1.0
    loop: bool = False
    clock: bool = False
    clock_rate_hz: float = DEFAULT_CLOCK_RATE_HZ
    topics: tuple[str, ...] = ()
    start_offset_s: float = 0.0
    delay_s: float = 0.0
    wait_for_subscribers_s: float = 0.0
    exit_at_end: bool = True

    def __post_init__(self) -> None:
        _check_numbers(self)
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if not self.clock_rate_hz > 0:
            raise ValueError(f"clock_rate_hz must be > 0, got {self.clock_rate_hz}")
        for name in ("start_offset_s", "delay_s", "wait_for_subscribers_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class BagRecorderConfig:
    """Bag recording (node ``alpamayo_bag_recorder``).

    - ``out_dir``: the rosbag2 directory to create (must not exist); empty names it
      ``rosbag2_<date>_<time>`` in the working directory, as ``ros2 bag record`` does.
    - ``topics``: topics to record (subscribed once they appear on the graph).
    - ``all_topics``: record every topic that appears, except ``exclude``.
    - ``exclude``: topics left out of ``all_topics``.
    - ``discovery_period_s``: how often the graph is checked for new topics.
    - ``max_duration_s``: stop by itself after this long (0 = until SIGINT/SIGTERM).
    - ``flush_period_s``: write the messages received so far to the file this often
      (closes the open MCAP chunk): a recorder killed with SIGKILL loses at most this
      long of messages (recover the bag with ``alpamayo recover``). Design choice: 1 s
      (one small chunk per second; rosbags alone writes a chunk per 1 MiB).
    """

    out_dir: str = ""
    topics: tuple[str, ...] = ()
    all_topics: bool = False
    exclude: tuple[str, ...] = DEFAULT_EXCLUDED_TOPICS
    discovery_period_s: float = 0.5
    max_duration_s: float = 0.0
    flush_period_s: float = 1.0

    def __post_init__(self) -> None:
        _check_numbers(self)
        if not self.flush_period_s > 0:
            raise ValueError(f"flush_period_s must be > 0, got {self.flush_period_s}")
        if not self.discovery_period_s > 0:
            raise ValueError(f"discovery_period_s must be > 0, got {self.discovery_period_s}")
        if self.max_duration_s < 0:
            raise ValueError(f"max_duration_s must be >= 0, got {self.max_duration_s}")

    def wants(self, topic: str) -> bool:
        """Whether ``topic`` is to be recorded."""
        if self.all_topics:
            return topic not in self.exclude
        return topic in self.topics


# --------------------------------------------------------------------------- command line
def add_player_arguments(parser: argparse.ArgumentParser) -> None:
    """The playback flags (``alpamayo replay`` and the ``bag_player`` executable)."""
    parser.add_argument("bag", nargs="?", default=None, help="rosbag2 directory or file")
    parser.add_argument("--rate", type=float, default=None, help="speed factor (default 1)")
    parser.add_argument("--loop", action="store_true", default=None, help="play in a loop")
    parser.add_argument("--clock", action="store_true", default=None,
                        help="publish /clock from the bag time (use_sim_time nodes)")
    parser.add_argument("--clock-rate-hz", type=float, default=None,
                        help=f"/clock rate between messages (default {DEFAULT_CLOCK_RATE_HZ:g})")
    parser.add_argument("--topics", nargs="+", default=None, help="only these topics")
    parser.add_argument("--start-offset-s", type=float, default=None,
                        help="skip the first seconds of the bag")
    parser.add_argument("--delay-s", type=float, default=None,
                        help="wait before the first message (discovery)")
    parser.add_argument("--wait-for-subscribers-s", type=float, default=None,
                        help="wait up to this long for a subscriber on every played topic")
    parser.add_argument("--no-exit", action="store_true", default=None,
                        help="stay up after the last message")


def player_values(ns: argparse.Namespace) -> dict[str, Any]:
    """Parameter values given on the command line (flags left out keep their default)."""
    out = {"bag": ns.bag, "rate": ns.rate, "loop": ns.loop, "clock": ns.clock,
           "clock_rate_hz": ns.clock_rate_hz, "topics": ns.topics,
           "start_offset_s": ns.start_offset_s, "delay_s": ns.delay_s,
           "wait_for_subscribers_s": ns.wait_for_subscribers_s,
           "exit_at_end": False if ns.no_exit else None}
    return {k: v for k, v in out.items() if v is not None}


def add_recorder_arguments(parser: argparse.ArgumentParser) -> None:
    """The recording flags (``alpamayo record`` and the ``bag_recorder`` executable)."""
    parser.add_argument("--out", "-o", default=None, help="rosbag2 directory to create")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--topics", nargs="+", default=None, help="topics to record")
    which.add_argument("--all", "-a", action="store_true", default=None,
                       help="every topic (except --exclude)")
    parser.add_argument("--exclude", nargs="+", default=None,
                        help=f"left out of --all (default {' '.join(DEFAULT_EXCLUDED_TOPICS)})")
    parser.add_argument("--max-duration-s", type=float, default=None,
                        help="stop after this long (default: until Ctrl-C / SIGTERM)")
    parser.add_argument("--flush-period-s", type=float, default=None,
                        help="write received messages to the file this often (default 1; "
                             "bounds what a killed recorder loses)")


def recorder_values(ns: argparse.Namespace) -> dict[str, Any]:
    """Parameter values given on the command line."""
    out = {"out_dir": ns.out, "topics": ns.topics, "all_topics": ns.all,
           "exclude": ns.exclude, "max_duration_s": ns.max_duration_s,
           "flush_period_s": ns.flush_period_s}
    return {k: v for k, v in out.items() if v is not None}
