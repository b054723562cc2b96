"""``alpamayo bench train``: training throughput of a recipe on this machine, per precision.

Will the recipe fit its time budget here? The benchmark runs the real training loop
(:func:`alpamayo_ros.training.loop.train` with ``stop_after``: the recipe's data, model,
loader, losses and optimizer) for a few steps of each measured stage, once per precision
(side by side in one run, e.g. fp32 against bf16 autocast), and reads the rate from the
loop's own ``metrics.jsonl``: the steps between the first and the last log record, so
the first steps (allocation, loader start) are not counted. From the rate it projects
each stage's minutes at the recipe's step count. Not counted: the dataset build, the
stages' val evaluations and checkpoints, and the RL stage (it needs trained weights to
generate texts of realistic length; on the reference machine it took 15 of 99 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_STAGES = ("pretrain", "sft")


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else :func:`platform.machine`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def rate_from_metrics(records: list[dict[str, Any]], stage: str, batch_size: int
                      ) -> tuple[float, int]:
    """Samples per second between the stage's first and last train records, and the steps.

    ``records``: the lines of a run's ``metrics.jsonl``. Raises ``ValueError`` with fewer
    than two train records of the stage.
    """
    rows = [r for r in records if r.get("stage") == stage and r.get("split") == "train"]
    if len(rows) < 2:
        raise ValueError(f"stage {stage!r}: {len(rows)} train records in the metrics, "
                         f"need 2 (raise --steps)")
    first, last = rows[0], rows[-1]
    steps = int(last["step"]) - int(first["step"])
    seconds = float(last["time_s"]) - float(first["time_s"])
    if steps <= 0 or seconds <= 0:
        raise ValueError(f"stage {stage!r}: no time between records {first} and {last}")
    return steps * batch_size / seconds, steps


def bench_training(cfg: Any, stages: tuple[str, ...], steps: int, precisions: tuple[str, ...],
                   work_dir: Path) -> dict[str, Any]:
    """Measure ``steps`` steps of each stage under each precision; see the module docstring.

    ``cfg`` is a :class:`~alpamayo_ros.training.config.TrainConfig`; its stages keep their
    batch sizes and loss weights, run without val evaluation or intermediate checkpoints,
    and log every ``steps // 4`` steps: the rate is taken from the first record (the end of
    the warm-up) to the last. The loop's own output goes to stderr.
    """
    import torch

    from alpamayo_ros.training.config import config_from_dict
    from alpamayo_ros.training.loop import (
        native_bf16,
        resolve_precision,
        setup_distributed,
        train,
    )

    for stage in stages:
        if stage not in BENCH_STAGES:
            raise ValueError(f"stage must be one of {BENCH_STAGES}, got {stage!r}")
    if steps < 4:
        raise ValueError(f"steps must be >= 4, got {steps}")
    warmup = steps // 4
    _, dev = setup_distributed(cfg.device)
    rows = []
    for precision in precisions:
        for stage in stages:
            data = cfg.to_dict()
            data["precision"] = precision
            data[stage].update(log_every=warmup, eval_every=0, save_every=0)
            run_cfg = config_from_dict(data)
            if run_cfg.stage(stage).steps < steps:
                raise ValueError(f"the recipe's {stage} has {run_cfg.stage(stage).steps} "
                                 f"steps, fewer than --steps {steps}")
            out = work_dir / f"{precision}_{stage}"
            with contextlib.redirect_stdout(sys.stderr):
                train(run_cfg, stage=stage, out=out, progress=False, stop_after=steps)
            records = [json.loads(line) for line in
                       (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
            batch = run_cfg.stage(stage).batch_size
            rate, timed = rate_from_metrics(records, stage, batch)
            recipe_steps = cfg.stage(stage).steps
            rows.append({"precision": precision,
                         "resolved_precision": resolve_precision(precision, dev),
                         "stage": stage, "batch_size": batch, "timed_steps": timed,
                         "samples_per_s": round(rate, 3),
                         "recipe_steps": recipe_steps,
                         "projected_stage_min": round(recipe_steps * batch / rate / 60, 1)})
    result: dict[str, Any] = {
        "benchmark": "train", "device": str(dev), "cpu": cpu_model(),
        "native_bf16": native_bf16(dev), "torch_threads": torch.get_num_threads(),
        "steps": steps, "warmup_steps": warmup, "rows": rows,
        "not_counted": "dataset build, val evaluations, checkpoints, the RL stage"}
    for precision in precisions:
        mine = [r for r in rows if r["precision"] == precision]
        result[f"projected_min_{precision}"] = round(sum(r["projected_stage_min"]
                                                         for r in mine), 1)
    if len(precisions) == 2:
        a, b = precisions
        result[f"speed_{b}_over_{a}"] = {
            stage: round(next(r["samples_per_s"] for r in rows if r["precision"] == b
                              and r["stage"] == stage)
                         / next(r["samples_per_s"] for r in rows if r["precision"] == a
                                and r["stage"] == stage), 3) for stage in stages}
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench train`` options."""
    parser.add_argument("--config", default="config/training/default.yaml",
                        help="recipe YAML (its dataset is built first if missing)")
    parser.add_argument("--stages", nargs="+", default=list(BENCH_STAGES),
                        choices=BENCH_STAGES, help="stages to measure (default: both)")
    parser.add_argument("--steps", type=int, default=40,
                        help="steps per stage and precision; the first quarter is warm-up")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        choices=("fp32", "bf16", "auto"),
                        help="side by side in this run (default: fp32 bf16)")
    parser.add_argument("--out", default="", help="also write the JSON here")


def bench(args: argparse.Namespace) -> int:
    """Run the benchmark; JSON on stdout (and ``--out``)."""
    from alpamayo_ros.training.config import load_config

    try:
        cfg = load_config(args.config)
        with tempfile.TemporaryDirectory(prefix="alpamayo_bench_train_") as tmp:
            result = bench_training(cfg, tuple(args.stages), args.steps,
                                    tuple(args.precisions), Path(tmp))
    except ValueError as exc:
        print(f"alpamayo bench train: {exc}", file=sys.stderr)
        return 2
    result["config"] = args.config
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0
