"""Model commands: ``alpamayo bench decode`` (flow-matching vs autoregressive trajectory)."""

from __future__ import annotations

import argparse


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo bench decode``."""
    from alpamayo_ros.model import bench

    parser = bench_subparsers.add_parser(
        "decode", help="trajectory from the flow-matching expert vs 128 autoregressive tokens")
    bench.add_arguments(parser)
    parser.set_defaults(func=bench.bench)
