"""``alpamayo replay`` and ``alpamayo record``: rosbag2 playback and recording from the CLI.

The flags are those of the ``bag_player`` / ``bag_recorder`` executables
(:mod:`alpamayo_ros.bags.config`); anything after ``--ros-args`` goes to rclpy
(``alpamayo record --all --out run1 --ros-args -p use_sim_time:=true``). rclpy is only
imported when a command runs, so ``alpamayo --help`` works without ROS.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` and ``record`` subcommands."""
    from alpamayo_ros.bags.config import add_player_arguments, add_recorder_arguments

    p = subparsers.add_parser("replay", help="play a rosbag2 (MCAP) bag with original stamps")
    add_player_arguments(p)
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="ROS arguments for the player node")
    p.set_defaults(func=_replay)

    r = subparsers.add_parser("record", help="record topics into a rosbag2 MCAP bag")
    add_recorder_arguments(r)
    r.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                   help="ROS arguments for the recorder node (e.g. -p use_sim_time:=true)")
    r.set_defaults(func=_record)


def _ros_args(args: argparse.Namespace) -> list[str]:
    return ["--ros-args", *args.ros_args] if args.ros_args else []


def _replay(args: argparse.Namespace) -> int:
    from alpamayo_ros.bags.config import BagPlayerConfig, player_values
    from alpamayo_ros.bags.replay import read_info, select_topics

    values = player_values(args)
    if not values.get("bag"):
        raise SystemExit("alpamayo replay: give the bag directory")
    try:
        BagPlayerConfig(**values)
        select_topics(read_info(values["bag"]), values.get("topics", ()))
    except (ValueError, OSError) as exc:  # fail before starting ROS, with the reason
        raise SystemExit(f"alpamayo replay: {exc}") from None
    from alpamayo_ros.nodes.bag_player import play

    play(values, _ros_args(args))
    return 0


def _record(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alpamayo_ros.bags.config import BagRecorderConfig, recorder_values

    values = recorder_values(args)
    try:
        config = BagRecorderConfig(**values)
    except ValueError as exc:
        raise SystemExit(f"alpamayo record: {exc}") from None
    if not config.topics and not config.all_topics:
        raise SystemExit("alpamayo record: give --topics T ... or --all")
    if config.out_dir and Path(config.out_dir).exists():
        raise SystemExit(f"alpamayo record: {config.out_dir} exists; give a new directory")
    from alpamayo_ros.nodes.bag_recorder import record

    record(values, _ros_args(args))
    return 0
