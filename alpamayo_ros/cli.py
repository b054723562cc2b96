"""The ``alpamayo`` command line: one entry point whose subcommands live with their code.

Each feature module exposes ``register(subparsers)`` adding its subcommands (with a
``func`` default taking the parsed args and returning an exit code) and/or
``register_bench(bench_subparsers)`` adding ``alpamayo bench <name>`` benchmarks; this
module only collects them. ``python -m alpamayo_ros.cli --help`` lists what is available.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, imported lazily so a missing optional feature
# (e.g. torch on a ROS-only machine) does not break the other commands.
COMMAND_MODULES = (
    "alpamayo_ros.ros.demo",
    "alpamayo_ros.ros.soak",
    "alpamayo_ros.data.commands",
    "alpamayo_ros.data.dataset_commands",
    "alpamayo_ros.model.commands",
    "alpamayo_ros.ros.commands",
    "alpamayo_ros.ros.bag_commands",
    "alpamayo_ros.training.commands",
    "alpamayo_ros.eval.commands",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every subcommand whose module imports."""
    parser = argparse.ArgumentParser(prog="alpamayo", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    bench = subparsers.add_parser("bench", help="benchmarks: JSON results on stdout")
    bench_subparsers = bench.add_subparsers(dest="benchmark", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # the feature is not in this checkout yet
            raise
        if hasattr(module, "register"):
            module.register(subparsers)
        if hasattr(module, "register_bench"):
            module.register_bench(bench_subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``alpamayo`` command line."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
