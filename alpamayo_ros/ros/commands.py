"""ROS-side ``alpamayo`` commands: ``alpamayo up``, ``alpamayo bench transport|latency|cycles``."""

from __future__ import annotations

import argparse


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo bench transport``, ``latency`` and ``cycles``."""
    from alpamayo_ros.ros import transport_bench

    parser = bench_subparsers.add_parser(
        "transport", help="camera images between processes: Fast DDS defaults vs our profile")
    transport_bench.add_arguments(parser)
    parser.set_defaults(func=transport_bench.bench)

    from alpamayo_ros.ros import latency_bench

    parser = bench_subparsers.add_parser(
        "latency", help="camera stamp -> Trajectory through camera sync + policy, per stage")
    latency_bench.add_arguments(parser)
    parser.set_defaults(func=latency_bench.bench)

    from alpamayo_ros.ros import cycles_bench

    parser = bench_subparsers.add_parser(
        "cycles", help="start/stop the simulation bring-up N times: exit codes, leftovers")
    cycles_bench.add_arguments(parser)
    parser.set_defaults(func=cycles_bench.bench)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo up``."""
    from alpamayo_ros.ros import up

    parser = subparsers.add_parser(
        "up", help="start a bring-up (policy, vehicle, simulation, replay) without ros2 launch")
    up.add_arguments(parser)
    parser.set_defaults(func=up.run)
