"""Export: a trained weights directory plus a model card (``README.md``).

The exported directory is what :meth:`alpamayo_ros.model.policy.Policy.from_pretrained`
loads (``config.json``, ``model.safetensors``, ``tokenizer.json``) and ``README.md``:
the model, the data (source, dataset spec, split sizes), the recipe, the git commit of
the code that trained it, the command, and the run's own numbers (steps, samples, wall
time, val losses). Nothing in the card is typed by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from alpamayo_ros.training.config import TrainConfig

CARD_FILE = "README.md"
WEIGHT_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def git_commit(root: str | Path | None = None) -> str:
    """``<sha>`` of HEAD (``+dirty`` when tracked files changed), or ``unknown``."""
    cwd = str(root or Path(__file__).resolve().parents[2])
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _code_line(summary: dict[str, Any]) -> str:
    """The card's code line: the commit the run started from.

    Also the commit at export when the tree moved on while it trained.
    """
    now = git_commit()
    start = summary.get("git_commit_at_start")
    if start is None or start == now:
        return f"- code: git commit `{now}`"
    return f"- code: git commit `{start}` when the run started (`{now}` at export)"


def model_card(cfg: TrainConfig, summary: dict[str, Any], weights_config: dict[str, Any],
               command: str = "") -> str:
    """The README.md text of an exported model (from the run's own records)."""
    import yaml

    policy = weights_config.get("policy", {})
    counterfactuals = (f" + {summary['signal_counterfactuals']} signal counterfactuals"
                       if summary.get("signal_counterfactuals") else "")
    lines = [f"# Alpamayo-ROS policy ({policy.get('preset', cfg.model.preset)} preset)", "",
             "Trained by `alpamayo train` (alpamayo_ros/training). Load with "
             "`Policy.from_pretrained(<this directory>)`.", "",
             "## Model", "",
             f"- preset: `{policy.get('preset', cfg.model.preset)}`, "
             f"{weights_config.get('num_parameters', '?')} parameters, weights format "
             f"{weights_config.get('format_version', '?')}",
             _code_line(summary),
             f"- exported: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             "## Data", "",
             f"- source: `{cfg.data.source}`" + (f", root `{cfg.data.root}`" if cfg.data.root
                                                 else ""),
             f"- splits: train `{cfg.data.train_split}` ({summary.get('train_samples')} "
             f"samples{counterfactuals}), val `{cfg.data.val_split}` "
             f"({summary.get('val_samples')} samples); model selection on val only, the test "
             "split is not read by training"]
    spec_json = Path(cfg.data.root) / "spec.json" if cfg.data.root else None
    if spec_json is not None and spec_json.is_file():
        built = json.loads(spec_json.read_text())
        lines.append(f"- dataset content hash: `{built.get('content_hash')}`")
    if cfg.data.spec:
        lines.append(f"- dataset spec: `{cfg.data.spec}`")
        spec = Path(cfg.data.spec)
        if spec.is_file():
            lines += ["", "```yaml", spec.read_text().rstrip(), "```"]
    lines += ["", "## Training run", "",
              f"- command: `{command}`" if command else "- command: (library call)",
              f"- processes: {summary.get('world_size', 1)}, device `{summary.get('device')}`, "
              f"precision {summary.get('precision', 'fp32')}",
              f"- wall time: {summary.get('wall_s')} s (this invocation); per stage below "
              f"(all sessions of a resumed stage)", "",
              "| stage | steps | samples | wall time (s) | val (last) | "
              "best val (step) | weights handed on |", "|---|---|---|---|---|---|---|"]
    for name, st in summary.get("stages", {}).items():
        val = st.get("val", {}) or {}
        # Selection: the lowest val loss; for rl the highest val reward (stored negated).
        key, sign = ("reward", -1.0) if name == "rl" else ("loss", 1.0)
        best = (f"{key} {_fmt(sign * st['best_val'])} ({st.get('best_step')})"
                if st.get("best_val") is not None else "-")
        lines.append(f"| {name} | {st.get('steps')} | {st.get('samples')} | "
                     f"{st.get('stage_s', '-')} | "
                     f"{key + ' ' + _fmt(val[key]) if key in val else '-'} | {best} | "
                     f"{Path(str(st.get('output'))).name} |")
    lines += ["", "Last val figures per stage (masked means over the val samples; rl also the "
              "mean reward of one greedy rollout per val keyframe and the share of its "
              "decisions the text gets right):", ""]
    for name, st in summary.get("stages", {}).items():
        val = st.get("val", {}) or {}
        if val:
            lines.append(f"- {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in
                                                   sorted(val.items())))
    lines += ["", "Driving metrics (minADE, decisions, consistency, collisions) come from "
              "`alpamayo eval`, not from training.", "",
              "## Recipe", "", "```yaml",
              yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def export_weights(source: str | Path, export_dir: str | Path, cfg: TrainConfig,
                   summary: dict[str, Any], command: str = "") -> Path:
    """Copy the weights files of ``source`` to ``export_dir`` and write the model card."""
    src, out = Path(source), Path(export_dir)
    missing = [f for f in WEIGHT_FILES if not (src / f).is_file()]
    if missing:
        raise ValueError(f"{src} is not a weights directory (missing {missing})")
    out.mkdir(parents=True, exist_ok=True)
    for f in WEIGHT_FILES:
        shutil.copy2(src / f, out / f)
    weights_config = json.loads((out / "config.json").read_text())
    (out / CARD_FILE).write_text(model_card(cfg, summary, weights_config, command))
    return out
