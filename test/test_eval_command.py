"""End-to-end tests of the open-loop evaluation (`alpamayo eval`) on tiny random weights.

The samples are real data-engine steps (episode geometry, CoC keyframe labels, expert
decisions, meta family/seed/index) with random images at the tiny preset's size, so the
collision column is measured against the agents' true boxes.
"""

import json

import numpy as np
import pytest
import torch

from alpamayo_ros.cli import main
from alpamayo_ros.data.coc import ego_future, ego_history, label_episode
from alpamayo_ros.data.controls import episode_plan_controls
from alpamayo_ros.data.dataset import write_cache
from alpamayo_ros.eval.commands import (
    evenly_spaced,
    parse_seeds,
    sample_metas,
    select_samples,
    training_seeds,
)
from alpamayo_ros.eval.evaluate import COLUMNS, EvalConfig, evaluate, true_boxes, write_results
from alpamayo_ros.eval.scene import episode_for
from alpamayo_ros.model.policy import Policy
from alpamayo_ros.model.synthetic import camera_rig
from alpamayo_ros.sample import DrivingSample

ROWS = ("model", "model, blanked cameras", "model, trajectory mode", "constant velocity",
        "constant yaw rate", "expert", "majority class")


def episode_samples(family: str, seed: int, extra=(40,)) -> list[DrivingSample]:
    """Keyframes (and the ``extra`` steps) of one episode, with random 32x48 images."""
    ep = episode_for(family, seed)
    keys = {k.index: k.label for k in label_episode(ep)}
    idx = sorted(set(keys) | set(extra))
    _, plans = episode_plan_controls(ep, indices=np.array(idx))
    rng = np.random.default_rng(seed)
    out = []
    for j, i in enumerate(idx):
        f = ep.frames[i]
        ctrl = np.stack([plans.acceleration_mps2[j], plans.curvature_per_m[j]], axis=1)
        out.append(DrivingSample(
            stamp_ns=i * 100_000_000,
            images=rng.integers(0, 256, (2, 2, 32, 48, 3), dtype=np.uint8),
            cameras=camera_rig(2, 48, 32), ego_history=ego_history(ep, i).astype(np.float32),
            future_xyh=ego_future(ep, i).astype(np.float32),
            future_controls=ctrl.astype(np.float32), speed_mps=float(f.ego.v_mps),
            coc=keys.get(i), keyframe=i in keys,
            decisions=(f.decision.longitudinal, f.decision.lateral),
            meta={"family": family, "seed": seed, "index": i}))
    return out


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    test = episode_samples("follow_lead", 9001) + episode_samples("crosswalk_yield", 9002)
    train = episode_samples("cruise", 5) + episode_samples("crosswalk_yield", 6)
    policy = Policy.from_config("tiny", corpus=[s.coc.text for s in test + train if s.coc],
                                seed=0, device="cpu")
    return test, train, policy


def test_evaluate_every_row_on_real_episode_samples(data, tmp_path):
    test, _, policy = data
    config = EvalConfig(num_samples=2, batch_size=4, max_reasoning_tokens=12)
    res = evaluate(policy, test, config, majority=("set_speed_tracking", "lane_keeping"))
    rows = {r["name"]: r for r in res["rows"]}
    assert tuple(rows) == ROWS
    n = len(test)
    labelled = sum(s.coc is not None for s in test)
    for row in rows.values():
        assert row["metrics"]["samples"] == n
        assert set(row["metrics"]) == set(COLUMNS)
    expert = rows["expert"]["metrics"]
    assert expert["ADE"] == 0.0 and expert["FDE"] == 0.0 and expert["minADE"] == 0.0
    assert expert["lon_acc"] == 1.0 and expert["lat_acc"] == 1.0
    assert expert["collision_rate"] == 0.0  # the expert never hits anyone
    assert rows["expert"]["counts"]["reasoning_score"] == labelled
    for name in ("model", "model, blanked cameras"):
        m = rows[name]
        assert m["counts"]["collision_rate"] == n  # every sample's boxes were found
        assert m["counts"]["lon_acc"] == n  # decisions from the expert on every step
        assert m["metrics"]["minADE"] <= m["metrics"]["ADE"] + 1e-9
        for channel in ("longitudinal", "lateral"):
            assert np.sum(m["confusion"][channel]["counts"]) == n
    assert rows["model, trajectory mode"]["metrics"]["lon_acc"] is None
    assert rows["constant velocity"]["metrics"]["minADE"] == rows["constant velocity"][
        "metrics"]["ADE"] > 0
    assert rows["majority class"]["metrics"]["ADE"] is None
    truth_lon = [s.decisions[0] for s in test]
    assert rows["majority class"]["metrics"]["lon_acc"] == pytest.approx(
        truth_lon.count("set_speed_tracking") / n)
    assert res["seeds"] == [9001, 9002]
    assert res["blank_minus_model"]["ADE"] == pytest.approx(
        rows["model, blanked cameras"]["metrics"]["ADE"] - rows["model"]["metrics"]["ADE"])
    # deterministic: the same run again gives the same numbers
    again = evaluate(policy, test[:4], config, majority=None)
    once = evaluate(policy, test[:4], config, majority=None)
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in once["rows"]]
    assert "majority class" not in {r["name"] for r in again["rows"]}
    fams = rows["model"]["by_family"]
    assert set(fams) == {"follow_lead", "crosswalk_yield"}
    assert sum(f["samples"] for f in fams.values()) == n
    assert fams["follow_lead"]["ADE"] == pytest.approx(np.mean(
        [r["ADE"] for r in res["per_sample"]["model"] if r["family"] == "follow_lead"]))
    json_path, md_path = write_results(res, tmp_path)
    written = json.loads(json_path.read_text())
    assert written["rows"][0]["name"] == "model" and "per_sample" not in written
    records = [json.loads(line) for line in
               (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(records) == n and {"text", "ADE", "seed", "index"} <= set(records[0])
    text = md_path.read_text()
    assert all(f"| {name} |" in text for name in ROWS) and "ADE per family" in text


def test_eval_command_end_to_end(data, tmp_path):
    test, train, policy = data
    weights = tmp_path / "weights"
    policy.save_pretrained(weights)
    write_cache(test, tmp_path / "data" / "test")
    write_cache(train, tmp_path / "data" / "train")
    out = tmp_path / "out"
    argv = ["eval", "--weights", str(weights), "--data", str(tmp_path / "data"),
            "--out", str(out), "--num-samples", "2", "--max-samples", "4",
            "--max-reasoning-tokens", "8", "--no-progress", "--device", "cpu",
            "--threads", "1", "--all-samples"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert tuple(r["name"] for r in res["rows"]) == ROWS
    assert res["samples"] == min(4, len(test)) and res["split"] == "test"
    assert set(res["seeds"]) <= {9001, 9002}
    assert "total" in res["timings_s"]
    md = (out / "results.md").read_text()
    assert "minADE2" in md and all(f"| {name} |" in md for name in ROWS)
    # the weights' model card lists seed 9001 as a training seed: refused
    assert training_seeds(weights) is None
    (weights / "README.md").write_text(
        "# card\n\n```yaml\nname: x\ntrain_seeds: [9000, 9002]\ntest_seeds: [9100, 9104]\n"
        "```\n")
    assert training_seeds(weights) == {9000, 9001}
    assert main(argv + ["--seeds", "9001:9002"]) == 2
    (weights / "README.md").unlink()
    (weights / "model_card.json").write_text(json.dumps({"data": {"train_seeds": [1, 2, 3]}}))
    assert training_seeds(weights) == {1, 2, 3}


def test_true_boxes_find_the_episode_or_say_why_not():
    ep = episode_for("cruise", 4, 30.0)  # longer than the family's 20 s default
    sample = DrivingSample(
        stamp_ns=0, images=np.zeros((1, 1, 2, 2, 3), np.uint8), cameras=[],
        ego_history=np.zeros((16, 4), np.float32),
        future_xyh=ego_future(ep, 180).astype(np.float32),
        future_controls=np.zeros((64, 2), np.float32), speed_mps=ep.frames[180].ego.v_mps,
        meta={"family": "cruise", "seed": 4, "index": 180})
    boxes, why = true_boxes(sample)
    assert why == "" and boxes.shape[:1] == (64,)
    sample.future_xyh = sample.future_xyh + np.float32(1.0)
    boxes, why = true_boxes(sample)
    assert boxes is None and "differs" in why
    sample.meta = {"family": "synthetic", "seed": 1, "index": 3}
    assert true_boxes(sample)[0] is None
    sample.meta = {}
    assert true_boxes(sample) == (None, "no family/seed/index in meta")


def test_selection_helpers():
    assert parse_seeds("") is None
    assert parse_seeds("3:6") == {3, 4, 5}
    assert parse_seeds("1,4") == {1, 4}
    with pytest.raises(ValueError):
        parse_seeds("6:3")
    assert evenly_spaced(list(range(10)), 3) == [0, 4, 9]  # linspace 0, 4.5, 9 rounds half to even
    assert evenly_spaced([5, 6], 0) == [5, 6]

    class Item:
        def __init__(self, keyframe, seed, family):
            self.keyframe, self.coc = keyframe, None
            self.meta = {"seed": seed, "family": family}

    items = [Item(True, 1, "a"), Item(False, 1, "a"), Item(True, 2, "b"), Item(True, 3, "a")]
    assert select_samples(items, True, None, None, 0) == ([0, 2, 3], [])
    assert select_samples(items, False, {1, 3}, ["a"], 0)[0] == [0, 1, 3]
    assert select_samples(items, True, None, ["a"], 1)[0] == [0]

    class Episodes(list):
        episodes = [{"family": "a", "seed": 3, "samples": 2}, {"family": "b", "seed": 4,
                                                               "samples": 1}]

        def __getitem__(self, i):
            raise AssertionError("metas must not load samples")

    assert sample_metas(Episodes([0, 1, 2])) == [
        {"family": "a", "seed": 3}, {"family": "a", "seed": 3}, {"family": "b", "seed": 4}]
