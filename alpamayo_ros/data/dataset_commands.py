"""Dataset commands: ``alpamayo dataset build`` (episode shards) and ``alpamayo dataset info``.

``build`` simulates, labels and renders the episodes of a :class:`DatasetSpec` YAML into
``--out`` (resumable: episodes already built with the same settings are skipped;
shardable across machines with ``--seeds A:B``; ``--workers`` processes) and prints a JSON
summary. ``info`` prints per-split counts and decision-class histograms of a built
dataset as JSON. See :mod:`alpamayo_ros.data.episodes`.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo dataset build|info``."""
    p = subparsers.add_parser("dataset", help="episode-shard training datasets (build, info)")
    sub = p.add_subparsers(dest="dataset_command", required=True)
    b = sub.add_parser("build", help="build a dataset from a spec (JSON summary)")
    b.add_argument("--spec", required=True, help="dataset spec YAML (config/data/*.yaml)")
    b.add_argument("--out", required=True, help="dataset root directory")
    b.add_argument("--split", default="all", choices=("train", "val", "test", "all"))
    b.add_argument("--seeds", default="", help="only seeds in [A, B) (shard), e.g. 0:8")
    b.add_argument("--workers", type=int, default=1, help="worker processes")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)
    i = sub.add_parser("info", help="per-split counts and decision histograms (JSON)")
    i.add_argument("root", help="dataset root directory")
    i.set_defaults(func=_info)


def parse_seeds(text: str) -> tuple[int, int] | None:
    """``"A:B"`` -> (A, B); empty -> None."""
    if not text:
        return None
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError as exc:
        raise SystemExit(f"--seeds must be A:B (two integers), got {text!r}") from exc
    if not 0 <= a <= b:
        raise SystemExit(f"--seeds must satisfy 0 <= A <= B, got {text!r}")
    return a, b


def _build(args: argparse.Namespace) -> int:
    from alpamayo_ros.data.episodes import build_dataset
    from alpamayo_ros.data.spec import SPLITS, DatasetSpec

    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    try:
        spec = DatasetSpec.from_yaml(args.spec)
    except ValueError as exc:
        raise SystemExit(f"{args.spec}: {exc}") from exc
    splits = SPLITS if args.split == "all" else (args.split,)
    summary = build_dataset(spec, args.out, splits, parse_seeds(args.seeds), args.workers,
                            progress=not args.no_progress)
    print(json.dumps(summary, indent=1))
    return 0


def _info(args: argparse.Namespace) -> int:
    from alpamayo_ros.data.episodes import dataset_info

    print(json.dumps(dataset_info(args.root), indent=1))
    return 0
