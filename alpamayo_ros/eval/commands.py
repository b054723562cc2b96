"""``alpamayo eval``: open-loop (or ``--closed-loop``) evaluation of weights vs baselines.

Reads a split of the data pipeline's episode dataset (or a sample cache written by
``alpamayo generate --cache``, or bags), selects the samples (keyframes by default,
seeds, families, an evenly spaced ``--max-samples`` subset), refuses seeds the weights'
model card lists as training seeds, runs :func:`alpamayo_ros.eval.evaluate.evaluate`
and writes ``results.json`` + ``results.md`` to ``--out``. The seeds evaluated are
printed and recorded.

``--closed-loop`` runs :mod:`alpamayo_ros.eval.closed_loop` instead: the weights drive
the simulator in process on the test seeds (no dataset needed) next to the expert and
constant velocity, and ``closed_loop.json`` + ``closed_loop.md`` are written.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_CARD_FILES = ("README.md", "model_card.json", "config.json")
TRAINING_SEED_KEYS = ("train_seeds", "training_seeds")
_YAML_BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.S | re.M)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``alpamayo eval``."""
    p = subparsers.add_parser("eval", help="open-loop or closed-loop evaluation of weights "
                              "vs baselines", description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="",
                   help="policy weights directory (default: the shipped weights/default)")
    p.add_argument("--data", default="",
                   help="episode dataset root (or a sample cache / bag directory); open "
                        "loop only")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--train-split", default="train",
                   help="split the majority-class baseline counts (default: train)")
    p.add_argument("--seeds", default="", help="only these scenario seeds: A:B (B excluded) "
                                               "or a comma list")
    p.add_argument("--families", nargs="+", default=None, help="only these families")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--keyframes-only", dest="keyframes_only", action="store_true",
                     default=True, help="evaluate CoC keyframes only (default)")
    sel.add_argument("--all-samples", dest="keyframes_only", action="store_false",
                     help="evaluate every sample of the split")
    p.add_argument("--num-samples", type=int, default=6, help="K plans for minADE_K (6)")
    p.add_argument("--trajectory-only-weights", default="",
                   help="trajectory-only weights for their row (default: the same weights "
                        "in trajectory mode)")
    p.add_argument("--max-samples", type=int, default=0,
                   help="evaluate at most N evenly spaced samples (0: all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--flow-steps", type=int, default=None)
    p.add_argument("--max-reasoning-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="noise seed (batch i uses seed + i)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:n]")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--no-blank-cameras", dest="blank_cameras", action="store_false",
                   help="leave out the blanked-camera row")
    p.add_argument("--noise-scale", type=float, default=1.0,
                   help="multiplies the flow's initial noise (1: the trained distribution)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--allow-training-seeds", action="store_true",
                   help="evaluate even on seeds the model card lists as training seeds")
    p.add_argument("--out", required=True, help="output directory")
    closed = p.add_argument_group("closed loop (--closed-loop; --seeds default 9000:9004)")
    closed.add_argument("--closed-loop", action="store_true",
                        help="drive the simulator in process instead of reading a dataset")
    closed.add_argument("--duration", type=float, default=20.0,
                        help="episode seconds (0: each family's own; default 20)")
    closed.add_argument("--policy-rate-hz", type=float, default=2.0)
    closed.add_argument("--plan-latency-s", type=float, default=0.2)
    closed.add_argument("--rows", nargs="+", default=list(CLOSED_LOOP_ROWS),
                        choices=list(CLOSED_LOOP_ROWS), help="rows to run (default: all)")
    p.set_defaults(func=run)


CLOSED_LOOP_ROWS = ("model", "trajectory", "no_monitor", "constant_velocity", "expert")


# --------------------------------------------------------------------------- helpers
def parse_seeds(text: str) -> set[int] | None:
    """``"A:B"`` (B excluded), ``"1,2,5"`` or ``""`` (no filter, None)."""
    text = text.strip()
    if not text:
        return None
    if ":" in text:
        m = re.fullmatch(r"(\d+):(\d+)", text)
        if not m or int(m.group(1)) >= int(m.group(2)):
            raise ValueError(f"--seeds must be A:B with A < B, got {text!r}")
        return set(range(int(m.group(1)), int(m.group(2))))
    try:
        return {int(x) for x in text.split(",") if x.strip()}
    except ValueError as exc:
        raise ValueError(f"--seeds must be A:B or a comma list of ints, got {text!r}") from exc


def _seed_values(value: Any) -> set[int]:
    """Seeds of a model card value.

    ``[A, B]`` (two ints, the :class:`~alpamayo_ros.data.spec.DatasetSpec` convention) is
    the range ``[A, B)``; ``"A:B"`` likewise; a longer list is explicit seeds (or ranges);
    ``{"start": A, "stop": B}`` a range; an int one seed.
    """
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, str):
        return parse_seeds(value) or set()
    if isinstance(value, dict) and {"start", "stop"} <= set(value):
        return set(range(int(value["start"]), int(value["stop"])))
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                   for v in value):
            return set(range(value[0], value[1]))
        out: set[int] = set()
        for v in value:
            out |= _seed_values(v)
        return out
    return set()


def _card_documents(path: Path) -> list[Any]:
    """Parsed documents of a card file: JSON, or the YAML blocks of a Markdown card."""
    try:
        text = path.read_text()
    except OSError:
        return []
    if path.suffix == ".json":
        try:
            return [json.loads(text)]
        except json.JSONDecodeError:
            return []
    import yaml

    docs = []
    for block in _YAML_BLOCK.findall(text):
        try:
            docs.append(yaml.safe_load(block))
        except yaml.YAMLError:
            continue
    return docs


def training_seeds(weights_dir: str | Path) -> set[int] | None:
    """Training seeds listed by the weights' model card, or None when none are listed.

    Reads the YAML blocks of ``README.md`` (the card ``alpamayo train`` exports: the
    dataset spec and the recipe) and ``model_card.json`` / ``config.json``, looking for
    ``train_seeds`` / ``training_seeds`` at any depth (see :func:`_seed_values`).
    """
    found: set[int] = set()
    listed = False

    def walk(node: Any) -> None:
        nonlocal listed
        if isinstance(node, dict):
            for key, value in node.items():
                if key in TRAINING_SEED_KEYS:
                    listed = True
                    found.update(_seed_values(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for name in MODEL_CARD_FILES:
        path = Path(weights_dir) / name
        if path.is_file():
            for doc in _card_documents(path):
                walk(doc)
    return found if listed else None


def is_sample_cache(path: Path) -> bool:
    """Whether ``path`` holds a cache of :func:`alpamayo_ros.data.dataset.write_cache`."""
    from alpamayo_ros.data.dataset import CACHE_VERSION

    for meta in sorted(path.glob("shard_*/meta.json"))[:1]:
        try:
            data = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return data.get("version") == CACHE_VERSION and "labels" in data
    return False


def open_dataset(root: str | Path, split: str) -> tuple[Sequence, str]:
    """The samples of ``split`` under ``root`` and a note on what was opened.

    ``root/split`` as a sample cache (``write_cache``) is that split; a cache or bags
    (``metadata.yaml``) directly in ``root`` have no splits: the whole directory is used
    (and the note says so). Anything else is the data pipeline's
    :class:`alpamayo_ros.data.episodes.EpisodeDataset`.
    """
    path = Path(root)
    if not path.exists():
        raise FileNotFoundError(f"--data {root} does not exist")
    if is_sample_cache(path / split):
        from alpamayo_ros.data.dataset import load_cache

        return load_cache(path / split), f"sample cache {path / split}"
    if is_sample_cache(path):
        from alpamayo_ros.data.dataset import load_cache

        return load_cache(path), f"sample cache {path} (no splits: split {split!r} ignored)"
    bags = ([path] if (path / "metadata.yaml").exists()
            else sorted(p.parent for p in path.glob("*/metadata.yaml")))
    if bags:
        from alpamayo_ros.data.dataset import BagDataset

        return BagDataset(bags), f"{len(bags)} bags in {path} (no splits: split {split!r} " \
                                 "ignored)"
    from alpamayo_ros.data.episodes import EpisodeDataset

    return EpisodeDataset(str(path), split), f"episode dataset {path}, split {split}"


def _accessor(dataset: Any, name: str) -> Any:
    fn = getattr(dataset, name, None)
    return fn() if callable(fn) else None


def keyframe_flags(dataset: Sequence) -> tuple[np.ndarray, str]:
    """Bool ``(N,)`` keyframe flags: the dataset's ``keyframe_mask()``, else the samples'.

    Data without keyframe flags (caches, bags: they store only keyframe labels) counts
    the samples with a CoC label as keyframes, and the note says so.
    """
    mask = _accessor(dataset, "keyframe_mask")
    if mask is not None:
        return np.asarray(mask, dtype=bool).reshape(len(dataset)), ""
    flags = np.array([bool(s.keyframe) for s in dataset], dtype=bool)
    if flags.any():
        return flags, ""
    return (np.array([s.coc is not None for s in dataset], dtype=bool),
            "no keyframe flags in the data: samples with a CoC label count as keyframes")


def sample_metas(dataset: Sequence) -> list[dict]:
    """Family and seed of every sample, without loading images where the dataset allows.

    An :class:`~alpamayo_ros.data.episodes.EpisodeDataset` lists its episodes (family,
    seed, sample count) in order; any other sequence is read sample by sample.
    """
    episodes = getattr(dataset, "episodes", None)
    if isinstance(episodes, list) and all(
            isinstance(e, dict) and {"family", "seed", "samples"} <= set(e) for e in episodes):
        metas = [{"family": e["family"], "seed": int(e["seed"])}
                 for e in episodes for _ in range(int(e["samples"]))]
        if len(metas) == len(dataset):
            return metas
    return [dict(dataset[i].meta or {}) for i in range(len(dataset))]


def evenly_spaced(indices: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` evenly spaced entries of ``indices`` (all when ``limit`` <= 0)."""
    indices = list(indices)
    if limit <= 0 or len(indices) <= limit:
        return indices
    picks = np.linspace(0, len(indices) - 1, limit).round().astype(int)
    return [indices[i] for i in picks]


def select_samples(dataset: Sequence, keyframes_only: bool, seeds: set[int] | None,
                   families: Sequence[str] | None, max_samples: int
                   ) -> tuple[list[int], list[str]]:
    """Indices to evaluate (filters, then an evenly spaced cap) and notes."""
    notes: list[str] = []
    keep = np.ones(len(dataset), dtype=bool)
    if keyframes_only:
        flags, note = keyframe_flags(dataset)
        keep &= flags
        if note:
            notes.append(note)
    if seeds is not None or families:
        metas = sample_metas(dataset)
        for i, m in enumerate(metas):
            if seeds is not None and int(m.get("seed", -1)) not in seeds:
                keep[i] = False
            if families and m.get("family") not in families:
                keep[i] = False
    return evenly_spaced(np.flatnonzero(keep).tolist(), max_samples), notes


def train_majority(root: str | Path, split: str) -> tuple[tuple[str, str] | None, str]:
    """The majority ``(lon, lat)`` of the training split, or ``(None, why not)``."""
    from alpamayo_ros.eval.evaluate import truth_decisions
    from alpamayo_ros.eval.metrics import majority_decisions
    from alpamayo_ros.taxonomy import decision_class_ids

    try:
        train, what = open_dataset(root, split)
    except Exception as exc:  # noqa: BLE001 - any failure only drops the row
        return None, f"majority-class row: cannot open split {split!r} ({exc})"
    if "ignored" in what:
        return None, f"majority-class row left out: {root} has no {split!r} split"
    ids = _accessor(train, "decision_ids")
    if ids is None:
        pairs = [truth_decisions(s) for s in train]
        ids = [decision_class_ids(*p) if p is not None else (-1, -1) for p in pairs]
    try:
        return majority_decisions(np.asarray(ids).reshape(-1, 2)), ""
    except ValueError as exc:
        return None, f"majority-class row left out: {exc}"


class _Subset(Sequence):
    def __init__(self, data: Sequence, indices: list[int]) -> None:
        self.data, self.indices = data, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        return self.data[self.indices[i]]


# --------------------------------------------------------------------------- the command
def run_closed_loop(args: argparse.Namespace) -> int:
    """``alpamayo eval --closed-loop``: the in-process closed-loop suite."""
    from alpamayo_ros.data.scenarios import FAMILIES
    from alpamayo_ros.eval import closed_loop as cl

    seeds = parse_seeds(args.seeds) or set(range(9000, 9004))
    train_seeds = training_seeds(args.weights)
    overlap = sorted(seeds & train_seeds) if train_seeds else []
    if overlap and not args.allow_training_seeds:
        print(f"alpamayo eval: refusing to evaluate on {len(overlap)} training seeds of "
              f"{args.weights} (e.g. {overlap[:5]}); pass --allow-training-seeds to force",
              file=sys.stderr)
        return 2
    config = cl.ClosedLoopConfig(
        families=tuple(args.families or FAMILIES), seeds=tuple(sorted(seeds)),
        duration_s=args.duration, policy_rate_hz=args.policy_rate_hz,
        plan_latency_s=args.plan_latency_s)
    tokens = args.max_reasoning_tokens or 0
    rows = []
    if {"model", "no_monitor"} & set(args.rows):
        model = cl.policy_planner(args.weights, True, "model",
                                  "the policy with reasoning (node defaults)", config,
                                  args.device, tokens)
        if "model" in args.rows:
            rows.append(cl.Row(model))
        if "no_monitor" in args.rows:
            rows.append(cl.Row(model, monitor=False, name="model, no monitor",
                               description="the model's plans executed unchecked"))
    if "trajectory" in args.rows:
        if args.trajectory_only_weights:
            rows.append(cl.Row(cl.policy_planner(
                args.trajectory_only_weights, False, "trajectory-only model",
                f"separate weights {args.trajectory_only_weights}", config, args.device)))
        else:
            rows.append(cl.Row(cl.policy_planner(
                args.weights, False, "model, trajectory only",
                "the same weights without reasoning", config, args.device)))
    if "constant_velocity" in args.rows:
        rows.append(cl.Row(cl.ConstantVelocityPlanner()))
    if "expert" in args.rows:
        rows.append(cl.Row(None, name="expert"))
    names = [r.name or (r.planner.name if r.planner else "expert") for r in rows]
    print(f"alpamayo eval --closed-loop: {len(config.families)} families x seeds "
          f"{sorted(seeds)}, rows {names}", file=sys.stderr)
    results = cl.run_suite(rows, config, progress=args.progress)
    results.update(weights=str(args.weights), device=args.device,
                   trajectory_only_weights=str(args.trajectory_only_weights or ""),
                   command=" ".join(["alpamayo", *sys.argv[1:]]))
    json_path, md_path = cl.write_results(results, args.out)
    print(md_path.read_text(), file=sys.stderr)
    print(f"wrote {json_path} and {md_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``alpamayo eval``; 0 on success, 2 on a refused or empty selection."""
    import torch

    from alpamayo_ros.eval.evaluate import EvalConfig, evaluate, seed_ranges, write_results
    from alpamayo_ros.model.policy import Policy
    from alpamayo_ros.paths import default_weights_dir

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if not args.weights:
        args.weights = str(default_weights_dir())
    if args.closed_loop:
        return run_closed_loop(args)
    if not args.data:
        print("alpamayo eval: --data is required for open-loop evaluation (or pass "
              "--closed-loop)", file=sys.stderr)
        return 2
    config = EvalConfig(num_samples=args.num_samples, batch_size=args.batch_size,
                        flow_steps=args.flow_steps,
                        max_reasoning_tokens=args.max_reasoning_tokens, seed=args.seed,
                        noise_scale=args.noise_scale, blank_cameras=args.blank_cameras,
                        progress=args.progress)
    seeds = parse_seeds(args.seeds)
    dataset, what = open_dataset(args.data, args.split)
    indices, notes = select_samples(dataset, args.keyframes_only, seeds, args.families,
                                    args.max_samples)
    if not indices:
        print(f"alpamayo eval: no samples selected from {what}", file=sys.stderr)
        return 2
    samples = _Subset(dataset, indices)
    evaluated = sorted({int(s.meta["seed"]) for s in samples if "seed" in (s.meta or {})})
    train_seeds = training_seeds(args.weights)
    overlap = sorted(set(evaluated) & train_seeds) if train_seeds else []
    if overlap and not args.allow_training_seeds:
        print(f"alpamayo eval: refusing to evaluate on {len(overlap)} training seeds of "
              f"{args.weights} (e.g. {overlap[:5]}); pass --allow-training-seeds to force",
              file=sys.stderr)
        return 2
    if train_seeds is None:
        notes.append("the weights list no training seeds: seed overlap not checked")
    elif overlap:
        notes.append(f"EVALUATED ON {len(overlap)} TRAINING SEEDS (--allow-training-seeds)")
    print(f"alpamayo eval: {len(indices)} samples from {what}; seeds "
          f"{seed_ranges(evaluated) or 'unknown'}", file=sys.stderr)
    majority, why = train_majority(args.data, args.train_split)
    if why:
        notes.append(why)
    policy = Policy.from_pretrained(args.weights, device=args.device)
    traj_policy = (Policy.from_pretrained(args.trajectory_only_weights, device=args.device)
                   if args.trajectory_only_weights else None)
    results = evaluate(policy, samples, config, trajectory_policy=traj_policy,
                       majority=majority)
    results["notes"] = notes + results["notes"]
    results.update(weights=str(args.weights), data=what, split=args.split,
                   trajectory_only_weights=str(args.trajectory_only_weights or ""),
                   device=str(policy.device), keyframes_only=bool(args.keyframes_only))
    json_path, md_path = write_results(results, args.out)
    for row in results["rows"]:
        m = row["metrics"]
        shown = ", ".join(f"{c} {v:.3f}" for c, v in m.items()
                          if v is not None and c != "samples")
        print(f"  {row['name']}: {shown}", file=sys.stderr)
    print(f"wrote {json_path} and {md_path}")
    return 0
