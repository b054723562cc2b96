"""Training command: ``alpamayo train --config FILE [--stage ...] [--resume DIR] [--out DIR]``.

Runs the recipe's stages (:func:`alpamayo_ros.training.loop.train`); under ``torchrun
--nproc-per-node N -m alpamayo_ros.training.commands ...`` (or ``torchrun ... $(which
alpamayo) train ...``) each process takes its share of every global batch. Also
``ros2 run alpamayo_ros train ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from alpamayo_ros.training.config import STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options."""
    parser.add_argument("--config", required=True, help="recipe YAML (config/training/*.yaml)")
    parser.add_argument("--stage", default="all", choices=("all", *STAGES),
                        help="one stage, or all of the recipe's stages in order (default)")
    parser.add_argument("--resume", default="",
                        help="checkpoint directory (or run directory: its newest checkpoint)")
    parser.add_argument("--out", default="", help="run directory (default: the recipe's "
                                                  "output_dir)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Load the recipe and train; prints the run summary as JSON."""
    from alpamayo_ros.training.config import load_config
    from alpamayo_ros.training.loop import train

    try:
        cfg = load_config(args.config)
    except ValueError as exc:
        print(f"alpamayo train: {exc}", file=sys.stderr)
        return 2
    parts = ["alpamayo", "train", "--config", args.config, "--stage", args.stage]
    parts += ["--resume", args.resume] if args.resume else []
    parts += ["--out", args.out] if args.out else []
    command = " ".join(shlex.quote(a) for a in parts)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        command = f"torchrun ({world} processes): {command}"
    summary = train(cfg, stage=args.stage, resume=args.resume or None, out=args.out or None,
                    progress=not args.no_progress, command=command)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=1))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo train``."""
    parser = subparsers.add_parser("train", help="train the policy: pretrain, CoC SFT, GRPO "
                                                 "(recipes in config/training/)")
    add_arguments(parser)
    parser.set_defaults(func=run)


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo bench train``."""
    from alpamayo_ros.training import bench

    parser = bench_subparsers.add_parser(
        "train", help="training samples/s of a recipe's stages per precision, and the "
                      "projected stage minutes")
    bench.add_arguments(parser)
    parser.set_defaults(func=bench.bench)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``ros2 run alpamayo_ros train``, ``torchrun -m ...``)."""
    parser = argparse.ArgumentParser(prog="train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
