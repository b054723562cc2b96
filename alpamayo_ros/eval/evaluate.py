"""Open-loop evaluation of a policy and its baselines on a sequence of samples.

:func:`evaluate` runs the rows side by side on the same samples and returns a JSON-ready
dict (:func:`write_results` writes ``results.json`` and ``results.md``):

- ``model``: the policy in reasoning mode (greedy text, K flow samples from seeded noise;
  minADE_K over the K plans, ADE/FDE/collision/comfort/consistency of plan 0);
- ``model, blanked cameras``: the same with every image set to zero and the same noise:
  a policy that reads the scene must get worse;
- ``trajectory-only model`` (separate weights) or ``model, trajectory mode`` (the same
  weights without reasoning), labelled as what it is;
- ``constant velocity`` and ``constant yaw rate`` (CTRV) extrapolations of the ego state;
- ``expert``: the logged future itself (ADE 0 by construction; its collision rate and
  comfort are the reference), its decisions and text from its label;
- ``majority class``: the most frequent decision per channel of the training split
  (decision accuracy only).

Columns (:data:`COLUMNS`): minADE_K, ADE, FDE (6.4 s), longitudinal / lateral decision
accuracy (decisions parsed from the text; unparseable counts wrong), consistency of the
text with plan 0, the rule critic's reasoning score (0-5,
:func:`alpamayo_ros.training.rewards.grade_reasoning`), collision rate against the agents'
true future boxes (:mod:`alpamayo_ros.eval.scene`; needs ``meta`` family/seed/index),
comfort (share of plans within AR1's comfort bounds) and the sample count. A column a row
cannot have (no text, no plan) is ``None``; each row also records how many samples each
column was measured on, the same columns per scenario family (``by_family``) and, for the
model row, per-sample records (``per_sample``, written to ``samples.jsonl``).
Deterministic: batch ``i`` draws its noise from ``seed + i``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alpamayo_ros.data.coc import ego_future
from alpamayo_ros.data.consistency import consistency_score
from alpamayo_ros.eval import baselines, metrics
from alpamayo_ros.eval.scene import agents_future_boxes, episode_for, plan_collides
from alpamayo_ros.sample import CocLabel, DrivingSample
from alpamayo_ros.unicycle import DT_S

if TYPE_CHECKING:
    from alpamayo_ros.model.policy import Policy

RESULTS_VERSION = 1
COLUMNS = ("minADE", "ADE", "FDE", "lon_acc", "lat_acc", "consistency", "reasoning_score",
           "collision_rate", "comfort", "samples")
SAMPLES_FILE = "samples.jsonl"
ALIGN_TOL_M = 0.05  # a sample's future must match its episode's to this to use its boxes


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run."""

    num_samples: int = 6  # K plans per sample for minADE_K
    batch_size: int = 8  # samples per Policy.predict call
    flow_steps: int | None = None  # None: the model config's
    max_reasoning_tokens: int | None = None  # None: the tokenizer budget
    seed: int = 0
    noise_scale: float = 1.0  # multiplies the flow's initial noise (Policy.predict)
    blank_cameras: bool = True  # add the blanked-camera row
    trajectory_mode: bool = True  # add the trajectory-only row
    progress: bool = False  # a progress bar on stderr

    def __post_init__(self) -> None:
        for name in ("num_samples", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EvalConfig.{name} must be an int >= 1, got {value!r}")
        for name in ("flow_steps", "max_reasoning_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"EvalConfig.{name} must be None or an int >= 1, "
                                 f"got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"EvalConfig.seed must be an int >= 0, got {self.seed!r}")
        if not (isinstance(self.noise_scale, (int, float)) and 0.0 <= self.noise_scale <= 2.0):
            raise ValueError(f"EvalConfig.noise_scale must be in [0, 2], "
                             f"got {self.noise_scale!r}")


# --------------------------------------------------------------------------- truth
@dataclass
class SampleTruth:
    """What every row is scored against for one sample."""

    future_xyh: np.ndarray  # (64, 3)
    v0_mps: float
    decisions: tuple[str, str] | None  # (lon, lat) truth, None: unlabelled
    label: CocLabel | None
    boxes: np.ndarray | None  # (64, N, 5) agents' true future, None: unavailable
    boxes_note: str = ""  # why boxes are unavailable
    meta: dict = field(default_factory=dict)  # family, seed, index (reported per sample)

    @property
    def family(self) -> str:
        """The scenario family ("?" when unknown)."""
        return str(self.meta.get("family", "?"))


def truth_decisions(sample: DrivingSample) -> tuple[str, str] | None:
    """The sample's true ``(lon, lat)``: its CoC label's, else the expert's ``decisions``."""
    if sample.coc is not None:
        return sample.coc.longitudinal_decision, sample.coc.lateral_decision
    return tuple(sample.decisions) if sample.decisions is not None else None


def true_boxes(sample: DrivingSample) -> tuple[np.ndarray | None, str]:
    """The agents' true future boxes of a data-engine sample, or ``(None, why not)``.

    The episode is re-simulated from ``meta`` family / seed (/ ``duration_s``) and the
    frame ``meta['index']`` (a clip longer than the family's default is re-simulated
    long enough: the simulation is the same up to its end); it is used only when its
    ego future matches the sample's within :data:`ALIGN_TOL_M` (same frame, same
    simulator version).
    """
    meta = sample.meta or {}
    if not all(k in meta for k in ("family", "seed", "index")):
        return None, "no family/seed/index in meta"
    family, seed, index = str(meta["family"]), int(meta["seed"]), int(meta["index"])
    steps = len(sample.future_xyh)
    try:
        episode = episode_for(family, seed, meta.get("duration_s"))
        if meta.get("duration_s") is None and index + steps >= len(episode.frames):
            episode = episode_for(family, seed, round((index + steps + 1) * DT_S, 1))
    except ValueError as exc:  # unknown family (e.g. synthetic samples)
        return None, f"no episode: {exc}"
    try:
        future = ego_future(episode, index, steps)
    except ValueError:
        return None, "frame index outside the episode"
    err = float(np.max(np.abs(future[:, :2] - np.asarray(sample.future_xyh)[:, :2])))
    if not err <= ALIGN_TOL_M:
        return None, f"episode future differs from the sample's by {err:.2f} m"
    return agents_future_boxes(episode, index, steps), ""


def sample_truth(sample: DrivingSample) -> SampleTruth:
    """Collect the truth of one sample (re-simulating its episode for the boxes)."""
    boxes, note = true_boxes(sample)
    meta = {k: v for k, v in (sample.meta or {}).items() if isinstance(v, (int, float, str))}
    return SampleTruth(np.asarray(sample.future_xyh, np.float64), float(sample.speed_mps),
                       truth_decisions(sample), sample.coc, boxes, note, meta)


# --------------------------------------------------------------------------- rows
def _reasoning_grader() -> tuple[Callable[[str, CocLabel, float], float] | None, str]:
    """The RL helper's rule critic, imported lazily; ``(None, why)`` when it is missing."""
    try:
        from alpamayo_ros.training.rewards import grade_reasoning
    except ImportError as exc:
        return None, f"reasoning score skipped: no rule critic ({exc})"

    def grade(text: str, label: CocLabel, v0: float) -> float:
        return float(grade_reasoning(text, label, v0).score)

    return grade, ""


class Row:
    """One row of the table: per-sample values of every column, then their means."""

    def __init__(self, name: str, description: str, keep_records: bool = False) -> None:
        self.name = name
        self.description = description
        self.values: dict[str, list] = {c: [] for c in COLUMNS if c != "samples"}
        self.by_family: dict[str, dict[str, list]] = {}
        self.records: list[dict] | None = [] if keep_records else None
        self._record: dict = {}
        self.lon = metrics.ConfusionTable.longitudinal()
        self.lat = metrics.ConfusionTable.lateral()
        self.has_decisions = False
        self.samples = 0
        self.seconds = 0.0
        self.stage_ms: dict[str, float] = {}

    def _add(self, truth: SampleTruth, column: str, value: Any) -> None:
        self.values[column].append(value)
        fam = self.by_family.setdefault(truth.family, {c: [] for c in self.values})
        fam[column].append(value)
        if self.records is not None:
            self._record[column] = value

    def start(self, truth: SampleTruth) -> None:
        """Begin a sample (its per-sample record carries the meta)."""
        self._record = dict(truth.meta)

    def finish(self, **extra: Any) -> None:
        """End a sample: count it and keep its record (when records are kept)."""
        self.samples += 1
        if self.records is not None:
            self._record.update(extra)
            self.records.append(self._record)
        self._record = {}

    def add_plans(self, truth: SampleTruth, plans_xyh: np.ndarray, controls: np.ndarray
                  ) -> None:
        """Score K plans ``(K, T, 3)`` with their controls ``(K, T, 2)``; plan 0 is "the" plan."""
        plans = np.asarray(plans_xyh, np.float64)
        plan = plans[0]
        finite = bool(np.all(np.isfinite(plan)))
        self._add(truth, "minADE", metrics.min_ade(plans, truth.future_xyh))
        self._add(truth, "ADE", metrics.ade(plan, truth.future_xyh))
        self._add(truth, "FDE", metrics.fde(plan, truth.future_xyh))
        if truth.boxes is not None:
            # a non-finite plan cannot be checked: count it as colliding
            hit = plan_collides(plan, truth.boxes)[0] if finite else True
            self._add(truth, "collision_rate", bool(hit))
        ctrl = np.asarray(controls, np.float64)[0]
        broken = metrics.comfort_violations(ctrl[:, 0], ctrl[:, 1], truth.v0_mps)
        self._add(truth, "comfort", not broken)
        if self.records is not None:
            self._record["comfort_violations"] = sorted(broken)

    def add_decisions(self, truth: SampleTruth, predicted: tuple[str | None, str | None]
                      ) -> None:
        """Score predicted ``(lon, lat)`` (None = wrong) against the truth, if labelled."""
        self.has_decisions = True
        if truth.decisions is None:
            return
        lon, lat = predicted
        self._add(truth, "lon_acc", metrics.decision_correct(lon, truth.decisions[0]))
        self._add(truth, "lat_acc", metrics.decision_correct(lat, truth.decisions[1]))
        self.lon.add(truth.decisions[0], lon)
        self.lat.add(truth.decisions[1], lat)
        if self.records is not None:
            self._record.update(predicted_decisions=[lon, lat],
                                true_decisions=list(truth.decisions))

    def add_text(self, truth: SampleTruth, text: str | CocLabel, plan_xyh: np.ndarray,
                 grade: Callable[[str, CocLabel, float], float] | None) -> None:
        """Consistency of the text with the plan, and the critic's grade against the label."""
        plan = np.asarray(plan_xyh, np.float64)
        score = (consistency_score(text, plan, truth.v0_mps) if np.all(np.isfinite(plan))
                 else 0.0)
        self._add(truth, "consistency", score)
        if grade is not None and truth.label is not None:
            words = text.text if isinstance(text, CocLabel) else text
            self._add(truth, "reasoning_score", grade(words, truth.label, truth.v0_mps))

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the column means (None where not measured) and their counts."""
        out = {c: metrics.mean_or_none(v) for c, v in self.values.items()}
        out["samples"] = self.samples
        counts = {c: len(v) for c, v in self.values.items()}
        row: dict[str, Any] = {"name": self.name, "description": self.description,
                               "metrics": {c: out[c] for c in COLUMNS}, "counts": counts,
                               "seconds": self.seconds}
        if self.stage_ms:
            row["ms_per_sample"] = {k: v / max(self.samples, 1) for k, v in self.stage_ms.items()}
        if self.has_decisions:
            row["confusion"] = {"longitudinal": self.lon.to_dict(),
                                "lateral": self.lat.to_dict()}
        row["by_family"] = {
            fam: {**{c: metrics.mean_or_none(v) for c, v in cols.items() if v},
                  "samples": max(len(v) for v in cols.values())}
            for fam, cols in sorted(self.by_family.items())}
        return row


def _blank(samples: Sequence[DrivingSample]) -> list[DrivingSample]:
    return [replace(s, images=np.zeros_like(s.images)) for s in samples]


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", file=sys.stderr)


def _run_policy(row: Row, policy: Policy, samples: Sequence[DrivingSample],
                truths: Sequence[SampleTruth], config: EvalConfig, mode: str,
                blank: bool, grade: Callable | None, bar: Any) -> None:
    """Batched ``Policy.predict`` over the samples; score every prediction into ``row``."""
    start = time.perf_counter()
    for b, idx in enumerate(_batches(len(samples), config.batch_size)):
        batch = [samples[i] for i in idx]
        if blank:
            batch = _blank(batch)
        pred = policy.predict(batch, mode=mode, flow_steps=config.flow_steps,
                              num_samples=config.num_samples,
                              max_reasoning_tokens=config.max_reasoning_tokens,
                              temperature=0.0, seed=config.seed + b,
                              noise_scale=config.noise_scale)
        for k, v in pred.timings_ms.items():
            row.stage_ms[k] = row.stage_ms.get(k, 0.0) + float(v)
        for j, i in enumerate(idx):
            truth = truths[i]
            row.start(truth)
            plans = np.asarray(pred.states[j, ..., :3], np.float64)
            row.add_plans(truth, plans, pred.controls[j])
            extra = {}
            if mode == "reasoning":
                text = pred.reasoning[j]
                row.add_decisions(truth, metrics.predicted_decisions(text))
                row.add_text(truth, text, plans[0], grade)
                extra["text"] = text
            row.finish(**extra)
        if bar is not None:
            bar.update(len(idx))
    row.seconds = time.perf_counter() - start


def _run_kinematic(row: Row, samples: Sequence[DrivingSample], truths: Sequence[SampleTruth],
                   controls_fn: Callable[[DrivingSample], np.ndarray]) -> None:
    start = time.perf_counter()
    for s, truth in zip(samples, truths):
        row.start(truth)
        ctrl = controls_fn(s)
        plan = baselines.plan_from_controls(ctrl, truth.v0_mps)
        row.add_plans(truth, plan[None], ctrl[None])
        row.finish()
    row.seconds = time.perf_counter() - start


def _run_expert(row: Row, samples: Sequence[DrivingSample], truths: Sequence[SampleTruth],
                grade: Callable | None) -> None:
    start = time.perf_counter()
    for s, truth in zip(samples, truths):
        row.start(truth)
        plan, ctrl = baselines.expert_plan(s)
        row.add_plans(truth, plan[None], ctrl[None])
        if truth.decisions is not None:
            row.add_decisions(truth, truth.decisions)
        if s.coc is not None:
            row.add_text(truth, s.coc, plan, grade)
        row.finish()
    row.seconds = time.perf_counter() - start


def _run_majority(row: Row, truths: Sequence[SampleTruth], majority: tuple[str, str]) -> None:
    for truth in truths:
        row.start(truth)
        row.add_decisions(truth, majority)
        row.finish()


def evaluate(policy: Policy, samples: Sequence[DrivingSample],
             config: EvalConfig = EvalConfig(), trajectory_policy: Policy | None = None,
             majority: tuple[str, str] | None = None) -> dict[str, Any]:
    """Evaluate ``policy`` (a :class:`~alpamayo_ros.model.policy.Policy`) and the baselines.

    ``trajectory_policy``: separate trajectory-only weights for the trajectory row (else
    the same policy in trajectory mode). ``majority``: the training split's majority
    ``(lon, lat)`` (:func:`alpamayo_ros.eval.metrics.majority_decisions`); without it
    the majority row is left out with a note. Returns the results dict (module docstring).
    """
    if len(samples) == 0:
        raise ValueError("samples must not be empty")
    t0 = time.perf_counter()
    notes: list[str] = []
    # One pass for the truth; the model passes reload their batches from ``samples`` (a
    # memory-mapped dataset), and the baselines use copies without images, so memory
    # does not grow with the number of samples.
    truths, light = [], []
    for i in range(len(samples)):
        s = samples[i]
        truths.append(sample_truth(s))
        light.append(replace(s, images=np.zeros((0, 0, 0, 0, 3), np.uint8)))
    t_truth = time.perf_counter() - t0
    missing = [t.boxes_note for t in truths if t.boxes is None]
    if missing:
        reasons = sorted(set(missing))
        notes.append(f"collision rate measured on {len(truths) - len(missing)} of "
                     f"{len(truths)} samples (others: {'; '.join(reasons[:3])})")
    unlabelled = sum(t.decisions is None for t in truths)
    if unlabelled:
        notes.append(f"{unlabelled} samples have no decision label: not in the accuracies")
    grade, why = _reasoning_grader()
    if why:
        notes.append(why)
    k = config.num_samples
    passes = 1 + int(config.blank_cameras) + int(config.trajectory_mode)
    bar = _progress(passes * len(samples), config.progress, "eval")
    rows: list[Row] = []
    model = Row("model", f"reasoning mode, greedy text, {k} flow samples (minADE over {k}, "
                         "the rest on sample 0)", keep_records=True)
    _run_policy(model, policy, samples, truths, config, "reasoning", False, grade, bar)
    rows.append(model)
    if config.blank_cameras:
        blank = Row("model, blanked cameras", "the model with every image zero, same noise")
        _run_policy(blank, policy, samples, truths, config, "reasoning", True, grade, bar)
        rows.append(blank)
    if config.trajectory_mode:
        if trajectory_policy is not None:
            traj = Row("trajectory-only model", "separate trajectory-only weights, "
                                                 "trajectory mode")
            _run_policy(traj, trajectory_policy, samples, truths, config, "trajectory",
                        False, None, bar)
        else:
            traj = Row("model, trajectory mode", "the same weights without reasoning "
                                                  "(not a separately trained model)")
            _run_policy(traj, policy, samples, truths, config, "trajectory", False, None, bar)
        rows.append(traj)
    if bar is not None:
        bar.close()
    cv = Row("constant velocity", "current speed, straight ahead (one plan: minADE = ADE)")
    _run_kinematic(cv, light, truths, baselines.constant_velocity_controls)
    ctrv = Row("constant yaw rate", "current speed and the yaw rate of the last 0.5 s of "
                                    "history (CTRV; one plan: minADE = ADE)")
    _run_kinematic(ctrv, light, truths, baselines.constant_yaw_rate_controls)
    expert = Row("expert", "the logged future (ADE 0 by construction); decisions and text "
                           "from its label")
    _run_expert(expert, light, truths, grade)
    rows += [cv, ctrv, expert]
    if majority is not None:
        maj = Row("majority class", f"train split's most frequent decisions: "
                                    f"{majority[0] or 'none'} / {majority[1] or 'none'}")
        _run_majority(maj, truths, majority)
        rows.append(maj)
    else:
        notes.append("majority-class row left out: no training-split decisions given")
    summaries = [r.summary() for r in rows]
    seeds = sorted({int(s.meta["seed"]) for s in light if "seed" in (s.meta or {})})
    families: dict[str, int] = {}
    for s in light:
        fam = str((s.meta or {}).get("family", "?"))
        families[fam] = families.get(fam, 0) + 1
    result: dict[str, Any] = {
        "version": RESULTS_VERSION,
        "config": asdict(config),
        "num_samples": k,
        "samples": len(samples),
        "seeds": seeds,
        "families": dict(sorted(families.items())),
        "columns": list(COLUMNS),
        "rows": summaries,
        "notes": notes,
        "timings_s": {"truth": t_truth, **{r.name: r.seconds for r in rows},
                      "total": time.perf_counter() - t0},
        "per_sample": {r.name: r.records for r in rows if r.records is not None},
    }
    if config.blank_cameras:
        result["blank_minus_model"] = _difference(summaries[1], summaries[0])
    return result


def _difference(a: dict, b: dict) -> dict[str, float | None]:
    out = {}
    for c in COLUMNS[:-1]:
        va, vb = a["metrics"][c], b["metrics"][c]
        out[c] = None if va is None or vb is None else va - vb
    return out


# --------------------------------------------------------------------------- output
_HEADERS = {"minADE": "minADE{k}", "ADE": "ADE", "FDE": "FDE", "lon_acc": "lon acc",
            "lat_acc": "lat acc", "consistency": "consistency",
            "reasoning_score": "reasoning (0-5)", "collision_rate": "collision rate",
            "comfort": "comfort", "samples": "samples"}


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if column == "samples":
        return str(int(value))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.3f}"


def results_markdown(results: dict[str, Any], title: str = "Open-loop evaluation") -> str:
    """The results as a Markdown report: the table, confusion tables, notes, timings."""
    k = results["num_samples"]
    heads = [_HEADERS[c].format(k=k) for c in results["columns"]]
    lines = [f"# {title}", ""]
    for key in ("weights", "trajectory_only_weights", "data", "split"):
        if results.get(key):
            lines.append(f"- {key}: `{results[key]}`")
    seeds = results.get("seeds") or []
    lines.append(f"- samples: {results['samples']}; seeds evaluated: "
                 f"{seed_ranges(seeds) or 'unknown'}")
    fams = ", ".join(f"{f} {n}" for f, n in results.get("families", {}).items())
    lines += [f"- families: {fams}", "",
              "ADE/FDE in metres over 6.4 s (64 waypoints); accuracies, consistency, "
              "collision rate and comfort are shares in [0, 1].", "",
              "| row | " + " | ".join(heads) + " |",
              "|---" * (len(heads) + 1) + "|"]
    for row in results["rows"]:
        cells = [_cell(row["metrics"][c], c) for c in results["columns"]]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    lines += ["", "Rows:", ""]
    lines += [f"- **{r['name']}**: {r['description']}" for r in results["rows"]]
    lines += _family_table(results)
    if results.get("blank_minus_model"):
        diff = results["blank_minus_model"]
        shown = ", ".join(f"{c} {v:+.3f}" for c, v in diff.items() if v is not None)
        lines += ["", f"Blanked cameras minus model: {shown}"]
    for row in results["rows"]:
        if row["name"] != "model" or "confusion" not in row:
            continue
        for channel in ("longitudinal", "lateral"):
            table = row["confusion"][channel]
            lines += ["", f"### {row['name']}: {channel} decisions (rows truth, columns "
                          "predicted)", "",
                      "| truth \\ predicted | " + " | ".join(table["columns"]) + " |",
                      "|---" * (len(table["columns"]) + 1) + "|"]
            for name, counts in zip(table["rows"], table["counts"]):
                lines.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
    if results.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in results["notes"]]
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in results.get("timings_s", {}).items())
    lines += ["", f"Timings: {timings}", ""]
    return "\n".join(lines)


def _family_table(results: dict[str, Any]) -> list[str]:
    """ADE per family of every row with plans, and the model's collision rate."""
    plan_rows = [r for r in results["rows"] if r["metrics"]["ADE"] is not None]
    families = sorted({f for r in plan_rows for f in r.get("by_family", {})})
    if len(families) < 2 or not plan_rows:
        return []
    model = next((r for r in plan_rows if r["name"] == "model"), None)
    heads = [f"ADE {r['name']}" for r in plan_rows]
    if model is not None:
        heads.append("collision model")
    lines = ["", "### ADE per family (m)", "",
             "| family | samples | " + " | ".join(heads) + " |",
             "|---" * (len(heads) + 2) + "|"]
    for fam in families:
        cells = [_cell(r.get("by_family", {}).get(fam, {}).get("ADE"), "ADE")
                 for r in plan_rows]
        if model is not None:
            cells.append(_cell(model["by_family"].get(fam, {}).get("collision_rate"),
                               "collision_rate"))
        n = plan_rows[0].get("by_family", {}).get(fam, {}).get("samples", 0)
        lines.append(f"| {fam} | {n} | " + " | ".join(cells) + " |")
    return lines


def seed_ranges(seeds: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out: list[str] = []
    for s in sorted(seeds):
        if out and s == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{s}"
        else:
            out.append(str(s))
    return ", ".join(out)


def _strict(value: Any) -> Any:
    """A copy with non-finite floats as None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_results(results: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json``, ``results.md`` (and ``samples.jsonl``) into ``out_dir``.

    Returns the paths of the first two. ``samples.jsonl`` holds the per-sample records
    of the model row (meta, text, decisions, errors, collision, comfort violations), one
    JSON object a line. The JSON is strict: a NaN mean (a non-finite plan) is written as
    null; the Markdown table shows it as ``nan``.
    """
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    summary = {k: v for k, v in results.items() if k != "per_sample"}
    per_sample = results.get("per_sample") or {}
    if per_sample:
        lines = [json.dumps(_strict({"row": name, **rec}), allow_nan=False)
                 for name, records in per_sample.items() for rec in records]
        (out / SAMPLES_FILE).write_text("\n".join(lines) + "\n")
        summary["per_sample_file"] = SAMPLES_FILE
    json_path.write_text(json.dumps(_strict(summary), indent=2, allow_nan=False) + "\n")
    md_path.write_text(results_markdown(results))
    return json_path, md_path
