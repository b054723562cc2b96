"""``alpamayo bench train``: the rate read from the loop's metrics, and the command end to end.

The end-to-end runs use the tiny recipe's synthetic samples for a few steps (seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alpamayo_ros.cli import main as cli_main
from alpamayo_ros.training.bench import bench_training, rate_from_metrics
from alpamayo_ros.training.config import config_from_dict

TINY = Path(__file__).resolve().parents[1] / "config" / "training" / "tiny.yaml"


def tiny_recipe(steps: int) -> dict:
    data = yaml.safe_load(TINY.read_text())
    for stage in ("pretrain", "sft"):
        data[stage]["steps"] = steps
    data["rl"]["steps"] = 0
    return data


def test_rate_is_taken_between_the_first_and_last_train_record_of_the_stage():
    records = [
        {"stage": "pretrain", "split": "train", "step": 10, "time_s": 5.0},
        {"stage": "pretrain", "split": "val", "step": 20, "time_s": 9.0},
        {"stage": "pretrain", "split": "train", "step": 20, "time_s": 10.0},
        {"stage": "pretrain", "split": "train", "step": 30, "time_s": 15.0},
        {"stage": "sft", "split": "train", "step": 30, "time_s": 100.0},
    ]
    rate, steps = rate_from_metrics(records, "pretrain", 8)
    assert steps == 20
    assert rate == pytest.approx(20 * 8 / 10.0)
    with pytest.raises(ValueError, match="1 train records"):
        rate_from_metrics(records, "sft", 8)


def test_bench_runs_the_loop_and_projects_the_recipe_minutes(tmp_path):
    cfg = config_from_dict(tiny_recipe(steps=40))
    result = bench_training(cfg, ("pretrain", "sft"), steps=8, precisions=("fp32",),
                            work_dir=tmp_path)
    assert [(r["precision"], r["stage"]) for r in result["rows"]] == [
        ("fp32", "pretrain"), ("fp32", "sft")]
    for row in result["rows"]:
        assert row["timed_steps"] == 6  # records at steps 2, 4, 6, 8: the first is warm-up
        assert row["samples_per_s"] > 0
        assert row["recipe_steps"] == 40
        assert row["projected_stage_min"] == pytest.approx(
            40 * row["batch_size"] / row["samples_per_s"] / 60, abs=0.051)
        metrics = tmp_path / f"fp32_{row['stage']}" / "metrics.jsonl"
        steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()
                 if json.loads(line)["split"] == "train"]
        assert steps == [2, 4, 6, 8]  # stopped after 8 of the recipe's 40 steps
    assert result["projected_min_fp32"] == pytest.approx(
        sum(r["projected_stage_min"] for r in result["rows"]), abs=0.051)


def test_cli_prints_only_json_on_stdout_and_rejects_what_it_cannot_measure(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(steps=8)))
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "train", "--config", str(recipe), "--stages", "pretrain",
                     "--steps", "4", "--precisions", "fp32", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)  # the loop's own lines went to stderr
    assert printed["benchmark"] == "train"
    assert printed["rows"][0]["timed_steps"] == 3
    assert json.loads(out.read_text()) == printed
    assert cli_main(["bench", "train", "--config", str(recipe), "--steps", "16",
                     "--precisions", "fp32"]) == 2
    assert "fewer than --steps 16" in capsys.readouterr().err
    assert cli_main(["bench", "train", "--config", str(recipe), "--steps", "2"]) == 2
    assert "steps must be >= 4" in capsys.readouterr().err
