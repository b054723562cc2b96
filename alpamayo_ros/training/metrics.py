"""Training metrics: one JSONL file, TensorBoard event files and PNG loss curves.

Every record is one line of ``metrics.jsonl``: ``{"stage", "step", "split", "time_s",
<name>: value, ...}`` with ``split`` ``train`` or ``val`` and ``step`` the optimizer steps
done in that stage. The same scalars go to TensorBoard (``tensorboard/<stage>/``, tag
``<split>/<name>``) when the ``tensorboard`` package is installed. When a run resumes
from a checkpoint, records after the checkpoint's step are dropped (the resumed run
writes them again). :func:`plot_curves` draws ``curves_<stage>.png`` from the JSONL.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from alpamayo_ros.training.config import STAGES

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _before(record: dict[str, Any], stage: str, step: int) -> bool:
    order = STAGES.index(record["stage"]), int(record["step"])
    return order <= (STAGES.index(stage), step)


class MetricsLogger:
    """Appends records to ``metrics.jsonl`` and TensorBoard (only on the main process)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True,
                 resume_at: tuple[str, int] | None = None, first_stage: str = STAGES[0]
                 ) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.enabled = enabled
        self._writers: dict[str, Any] = {}
        self._start = time.monotonic()
        self._purge = resume_at
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_at is not None:
            kept = [r for r in read_metrics(self.path) if _before(r, *resume_at)]
            self.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        elif self.path.exists():
            # A fresh run in an old directory starts a fresh log from its first stage on;
            # the records of earlier stages (whose weights it starts from) are kept.
            kept = [r for r in read_metrics(self.path)
                    if STAGES.index(r["stage"]) < STAGES.index(first_stage)]
            self.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    def _writer(self, stage: str) -> Any:
        if stage not in self._writers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: JSONL only
                self._writers[stage] = None
            else:
                purge = None
                if self._purge is not None and self._purge[0] == stage:
                    purge = self._purge[1] + 1
                self._writers[stage] = SummaryWriter(
                    str(self.run_dir / "tensorboard" / stage), purge_step=purge)
        return self._writers[stage]

    def log(self, stage: str, step: int, split: str, values: dict[str, float]) -> None:
        """Record ``values`` (finite floats) for ``stage`` at ``step``."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items()}
        record = {"stage": stage, "step": int(step), "split": split,
                  "time_s": round(time.monotonic() - self._start, 3), **clean}
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        writer = self._writer(stage)
        if writer is not None:
            for name, value in clean.items():
                if math.isfinite(value):
                    writer.add_scalar(f"{split}/{name}", value, step)
            writer.flush()

    def close(self) -> None:
        """Close the event files."""
        for writer in self._writers.values():
            if writer is not None:
                writer.close()
        self._writers.clear()


def plot_curves(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """One PNG per stage (``curves_<stage>.png``): every loss, train and val, vs step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stage in STAGES:
        rows = [r for r in records if r["stage"] == stage]
        names = sorted({k for r in rows for k in r
                        if k not in ("stage", "step", "split", "time_s", "lr", "grad_norm",
                                     "samples_per_s")})
        if not rows or not names:
            continue
        cols = min(3, len(names))
        nrows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            for split, style in (("train", "-"), ("val", "o-")):
                pts = [(r["step"], r[name]) for r in rows
                       if r["split"] == split and name in r and math.isfinite(r[name])]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, style, label=split, markersize=3)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        fig.suptitle(f"stage {stage}")
        fig.tight_layout()
        path = out_dir / f"curves_{stage}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
