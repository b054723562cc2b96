"""Trainer: recipe validation, schedule, deterministic sampling, losses fall, the CLI end to end.

Tiny preset on the trainer's synthetic samples (random images, fixed sentences), a few
steps each, one thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from alpamayo_ros.training import data as tdata
from alpamayo_ros.training.config import StageConfig, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "config" / "training" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_dict(**changes) -> dict:
    data = yaml.safe_load(TINY.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def tiny_rl(steps: int) -> dict:
    """A few GRPO steps on the tiny preset: groups of 2, 8 text tokens, val every step."""
    return {"steps": steps, "batch_size": 2, "lr": 1e-3, "min_lr": 1e-3,
            "schedule": "constant", "text_only": True, "log_every": 1, "eval_every": 1,
            "save_every": 0, "rl": {"group_size": 2, "max_reasoning_tokens": 8,
                                    "flow_steps": 2}}


def test_shipped_recipes_load():
    for path in sorted((ROOT / "config" / "training").glob("*.yaml")):
        cfg = load_config(path)
        # Every recipe trains something: a full run, or one stage from given weights.
        assert any(cfg.stage(name).steps > 0 for name in ("pretrain", "sft", "rl")), path
        if cfg.pretrain.steps == 0 and cfg.sft.steps == 0:
            assert cfg.rl.init, path


def test_unknown_and_invalid_keys_are_named():
    with pytest.raises(ValueError, match=r"TrainConfig.sft has unknown keys \['stepz'\]"):
        config_from_dict(tiny_dict(sft={"stepz": 3}))
    with pytest.raises(ValueError, match="TrainConfig has unknown keys"):
        config_from_dict(tiny_dict(epochs=3))
    with pytest.raises(ValueError, match="StageConfig.lr must be > 0"):
        config_from_dict(tiny_dict(pretrain={"lr": 0.0}))
    with pytest.raises(ValueError, match="loss_weights has unknown losses"):
        config_from_dict(tiny_dict(pretrain={"loss_weights": {"reasoning_ce": 1.0}}))
    with pytest.raises(ValueError, match="StageConfig.batch_size 4 must be a multiple"):
        config_from_dict(tiny_dict(pretrain={"micro_batch_size": 3}))
    with pytest.raises(ValueError, match="DataSection.root is required"):
        config_from_dict(tiny_dict(data={"source": "episodes"}))
    with pytest.raises(ValueError, match="DataSection.build_workers must be an int >= 0"):
        config_from_dict(tiny_dict(data={"build_workers": -1}))
    with pytest.raises(ValueError, match="rl.balanced/keyframe_share are not used"):
        config_from_dict(tiny_dict(rl={"steps": 0, "balanced": True}))
    with pytest.raises(ValueError, match="rl.decision_token_weight is not used"):
        config_from_dict(tiny_dict(rl={"steps": 0, "decision_token_weight": 3.0}))
    with pytest.raises(ValueError, match=r"StageConfig.decision_token_weight must be >= 1.0"):
        config_from_dict(tiny_dict(sft={"decision_token_weight": 0.5}))
    with pytest.raises(ValueError, match=r"StageConfig.blank_images_share must be"):
        config_from_dict(tiny_dict(pretrain={"blank_images_share": 1.5}))
    with pytest.raises(ValueError, match="rl.blank_images_share is not used"):
        config_from_dict(tiny_dict(rl={"steps": 0, "blank_images_share": 0.1}))
    with pytest.raises(ValueError, match=r"StageConfig.signal_counterfactual_share must be"):
        config_from_dict(tiny_dict(pretrain={"signal_counterfactual_share": 0.6}))
    with pytest.raises(ValueError, match="rl.signal_counterfactual_share is not used"):
        config_from_dict(tiny_dict(rl={"steps": 0, "signal_counterfactual_share": 0.1}))
    with pytest.raises(ValueError, match="ModelSection.preset"):
        config_from_dict(tiny_dict(model={"preset": "huge"}))


def test_schedule_warmup_then_cosine_or_linear():
    s = StageConfig(steps=10, lr=1.0, min_lr=0.1, warmup_steps=2, schedule="cosine")
    assert [s.lr_at(0), s.lr_at(1)] == [0.5, 1.0]
    assert s.lr_at(2) == pytest.approx(1.0)
    assert s.lr_at(6) == pytest.approx(0.55)  # halfway through the cosine
    assert s.lr_at(10) == pytest.approx(0.1)
    lin = StageConfig(steps=10, lr=1.0, min_lr=0.0, warmup_steps=0, schedule="linear")
    assert lin.lr_at(5) == pytest.approx(0.5)


def test_sampler_is_deterministic_and_splits_global_batches_by_rank():
    pool = np.arange(10)
    one = tdata.StepSampler(pool, None, 4, 2, seed=3, stage="sft", start=0, steps=6)
    again = tdata.StepSampler(pool, None, 4, 2, seed=3, stage="sft", start=0, steps=6)
    assert list(one) == list(again)
    other_seed = tdata.StepSampler(pool, None, 4, 2, seed=4, stage="sft", start=0, steps=6)
    assert list(one) != list(other_seed)
    # Epochs are permutations: the first 10 draws cover every sample once.
    stream = [i for step in range(6) for i in one.global_batch(step)]
    assert sorted(stream[:10]) == list(range(10))
    # Two ranks: each takes its contiguous half; together the same global batches.
    ranks = [tdata.StepSampler(pool, None, 4, 2, 3, "sft", 0, 6, rank=r, world=2)
             for r in range(2)]
    for step in range(6):
        parts = [r.micro_batches(step) for r in ranks]
        assert parts[0][0] + parts[1][0] == one.global_batch(step)
    # Resuming at step 3 yields exactly the rest of the stream.
    tail = tdata.StepSampler(pool, None, 4, 2, 3, "sft", start=3, steps=6)
    assert list(tail) == list(one)[3 * 2:]


def test_weighted_sampling_balances_classes_and_keyframes():
    samples = tdata.synthetic_dataset(60, seed=1)
    for i, s in enumerate(samples):  # 50 of one decision pair, 10 of another
        s.decisions = ("yield", "lane_keeping") if i % 6 else ("", "turn")
        s.keyframe = i % 10 == 0
    stage = StageConfig(steps=1, balanced=True, loss_weights={"flow": 1.0})
    pool, w = tdata.stage_pool(samples, stage)
    sampler = tdata.StepSampler(pool, w, 600, 600, 0, "sft", 0, 1)
    drawn = sampler.global_batch(0)
    rare = sum(samples[i].decisions == ("", "turn") for i in drawn) / len(drawn)
    assert 0.4 < rare < 0.6  # 1/6 of the data, about half of the draws
    stage = StageConfig(steps=1, keyframe_share=0.5, loss_weights={"flow": 1.0})
    pool, w = tdata.stage_pool(samples, stage)
    drawn = tdata.StepSampler(pool, w, 600, 600, 0, "sft", 0, 1).global_batch(0)
    share = np.mean([samples[i].keyframe for i in drawn])
    assert 0.4 < share < 0.6  # 1/10 of the data, half of the draws
    text_only = StageConfig(steps=1, text_only=True, loss_weights={"flow": 1.0})
    pool, _ = tdata.stage_pool(samples, text_only)
    assert all(samples[i].coc is not None for i in pool) and len(pool) < len(samples)


def test_perception_only_samples_are_drawn_at_their_share_and_only_when_asked():
    samples = tdata.synthetic_dataset(60, seed=1)
    for s in samples[:12]:  # 12 signal counterfactuals: no text, no decision
        s.perception_only, s.coc, s.decisions = True, None, None
        s.future_controls = np.full_like(s.future_controls, 50.0)
    off = StageConfig(steps=1, loss_weights={"flow": 1.0})
    pool, w = tdata.stage_pool(samples, off)
    assert w is None and not any(samples[i].perception_only for i in pool)
    on = StageConfig(steps=1, text_only=True, signal_counterfactual_share=0.25,
                     loss_weights={"flow": 1.0})
    pool, w = tdata.stage_pool(samples, on)
    assert set(range(12)) <= set(pool.tolist())  # text_only does not drop them
    assert all(samples[i].coc is not None for i in pool if i >= 12)
    drawn = tdata.StepSampler(pool, w, 800, 800, 0, "sft", 0, 1).global_batch(0)
    share = np.mean([samples[i].perception_only for i in drawn])
    assert 0.2 < share < 0.3
    # Their controls (copies of real samples') stay out of the action statistics.
    mean, _ = tdata.action_stats(samples)
    assert float(mean[0]) < 10.0
    with pytest.raises(ValueError, match="signal_counterfactual_share needs signal"):
        tdata.stage_pool(tdata.synthetic_dataset(8, seed=1), on)


def test_action_stats_are_the_training_controls_statistics():
    samples = tdata.synthetic_dataset(5, seed=2)
    mean, std = tdata.action_stats(samples)
    ctrl = np.concatenate([s.future_controls for s in samples]).astype(np.float64)
    np.testing.assert_allclose(mean.numpy(), ctrl.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), ctrl.std(0), rtol=1e-5)


def test_blank_images_blacks_out_a_seeded_share_of_samples_and_keeps_their_targets():
    from types import SimpleNamespace

    def batch():
        images = torch.full((64, 2, 3, 3, 4, 6), 100, dtype=torch.uint8)
        return SimpleNamespace(images=images, controls=torch.ones(64, 64, 2))

    none, every = batch(), batch()
    assert not tdata.blank_images(none, 0.0, tdata.generator(1)).any()
    assert (none.images == 100).all()
    assert tdata.blank_images(every, 1.0, tdata.generator(1)).all()
    assert (every.images == 0).all() and (every.controls == 1).all()
    half_a, half_b = batch(), batch()
    mask = tdata.blank_images(half_a, 0.5, tdata.generator(7, "pretrain", "blank", 3, 0))
    again = tdata.blank_images(half_b, 0.5, tdata.generator(7, "pretrain", "blank", 3, 0))
    assert torch.equal(mask, again) and 16 < int(mask.sum()) < 48
    assert (half_a.images[mask] == 0).all() and (half_a.images[~mask] == 100).all()


def test_a_stage_trains_on_blanked_images_in_its_share(tmp_path, monkeypatch):
    from alpamayo_ros.model.modeling import AlpamayoModel
    from alpamayo_ros.training.loop import train

    seen = []
    original = AlpamayoModel.compute_losses

    def spy(self, inputs, *args, **kwargs):
        if self.training:
            seen.append(int(inputs.images.flatten(1).amax(1).gt(0).sum()))
        return original(self, inputs, *args, **kwargs)

    monkeypatch.setattr(AlpamayoModel, "compute_losses", spy)
    cfg = config_from_dict(tiny_dict(
        data={"synthetic_samples": 8, "val_samples": 4},
        pretrain={"steps": 3, "batch_size": 4, "log_every": 1, "eval_every": 0,
                  "save_every": 0, "blank_images_share": 1.0},
        sft={"steps": 2, "batch_size": 4, "save_every": 0, "blank_images_share": 0.0}))
    train(cfg, out=tmp_path, progress=False)
    assert seen[:3] == [0, 0, 0]  # pretrain: every sample's images black
    assert all(n == 4 for n in seen[3:5])  # sft: none


def test_losses_fall_on_a_tiny_fixed_set(tmp_path):
    from alpamayo_ros.training.loop import train

    cfg = config_from_dict(tiny_dict(
        data={"synthetic_samples": 8, "val_samples": 4},
        pretrain={"steps": 30, "batch_size": 4, "lr": 2e-3, "min_lr": 2e-3, "warmup_steps": 0,
                  "log_every": 5, "eval_every": 0, "save_every": 0,
                  "loss_weights": {"trajectory_tokens": 1.0, "flow": 1.0,
                                   "perception": 1.0, "decision": 1.0}},
        sft={"steps": 0}))
    train(cfg, stage="pretrain", out=tmp_path, progress=False)
    rows = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
            if r["split"] == "train"]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    first, last = rows[0], rows[-1]
    for name in ("loss", "trajectory_tokens", "flow", "decision"):
        assert last[name] < first[name], (name, first[name], last[name])
    assert last["loss"] < 0.8 * first["loss"]


def test_cli_end_to_end_writes_metrics_events_curves_checkpoints_and_export(tmp_path):
    from alpamayo_ros.cli import main
    from alpamayo_ros.model.policy import Policy

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_dict(export_dir=str(tmp_path / "export"))))
    run = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--out", str(run), "--no-progress"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {(r["stage"], r["split"]) for r in records} == {
        ("pretrain", "train"), ("pretrain", "val"), ("sft", "train"), ("sft", "val")}
    for stage in ("pretrain", "sft"):
        assert list((run / "tensorboard" / stage).glob("events.out.tfevents.*"))
        assert (run / f"curves_{stage}.png").stat().st_size > 1000
        ckpts = sorted((run / stage / "checkpoints").iterdir())
        assert [c.name for c in ckpts] == ["step_0000002", "step_0000004"]
        assert {"model.safetensors", "optimizer.safetensors", "rng.safetensors",
                "trainer_state.json", "config.json", "tokenizer.json"} <= {
                    f.name for f in ckpts[-1].iterdir()}
        assert (run / stage / "last" / "model.safetensors").is_file()
    export = tmp_path / "export"
    card = (export / "README.md").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['stages']['sft']['val']['loss']:.4f}" in card
    assert "git commit" in card and "tiny" in card
    policy = Policy.from_pretrained(export, device="cpu")
    sample = tdata.synthetic_dataset(1, seed=5, policy_config=policy.config)[0]
    pred = policy.predict(sample, mode="trajectory", seed=0)
    assert np.isfinite(pred.controls).all()
    # The action statistics of the training split are in the exported weights.
    train_set = tdata.synthetic_dataset(16, tdata.stable_seed(0, "synthetic", 0),
                                        policy.config)
    mean, _ = tdata.action_stats(train_set)
    torch.testing.assert_close(policy.model.action_mean.cpu(), mean)
    # One stage alone from given weights (sft.init): it starts from exactly those.
    recipe.write_text(yaml.safe_dump(tiny_dict(sft={"init": str(export), "steps": 1,
                                                    "eval_every": 0, "save_every": 0})))
    again = tmp_path / "again"
    assert main(["train", "--config", str(recipe), "--stage", "sft", "--out", str(again),
                 "--no-progress"]) == 0
    assert not (again / "pretrain").exists()
    state = json.loads((again / "sft" / "checkpoints" / "step_0000001" /
                        "trainer_state.json").read_text())
    assert state["init_from"] == str(export)
    # A later stage run alone in the same run directory keeps the earlier stages' records
    # (metrics and summary) and starts from their weights.
    sft_only = tmp_path / "recipe_sft.yaml"
    sft_only.write_text(yaml.safe_dump(tiny_dict(sft={"steps": 1})))
    assert main(["train", "--config", str(sft_only), "--stage", "sft", "--out", str(run),
                 "--no-progress"]) == 0
    stages = {json.loads(line)["stage"] for line in
              (run / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"pretrain", "sft"}
    assert set(json.loads((run / "summary.json").read_text())["stages"]) == {"pretrain", "sft"}


def test_cli_rejects_a_bad_recipe(tmp_path, capsys):
    from alpamayo_ros.cli import main

    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump(tiny_dict(pretrain={"warmup": 3})))
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "r")]) == 2
    assert "TrainConfig.pretrain has unknown keys ['warmup']" in capsys.readouterr().err


def test_a_token_budget_that_cuts_the_texts_is_refused(tmp_path):
    from alpamayo_ros.training.loop import train

    cfg = config_from_dict(tiny_dict(
        model={"preset": "tiny", "overrides": {"tokenizer": {"max_reasoning_tokens": 4}}}))
    with pytest.raises(ValueError, match="CoC texts exceed the model's 4-token budget"):
        train(cfg, stage="pretrain", out=tmp_path, progress=False)


def test_model_card_names_the_commit_the_run_started_from(monkeypatch) -> None:
    from alpamayo_ros.training import export

    monkeypatch.setattr(export, "git_commit", lambda root=None: "bbb")
    assert export._code_line({"git_commit_at_start": "bbb"}) == "- code: git commit `bbb`"
    assert export._code_line({}) == "- code: git commit `bbb`"
    assert export._code_line({"git_commit_at_start": "aaa"}) == (
        "- code: git commit `aaa` when the run started (`bbb` at export)")


@pytest.mark.parametrize("min_gain_se", [0.0, None])
def test_rl_stage_is_selected_on_the_val_reward_including_its_starting_weights(tmp_path,
                                                                              min_gain_se):
    """The rl stage is selected on the mean reward of greedy val rollouts.

    Scored at its start and at every eval; it hands on the weights with the highest mean
    reward among its starting weights and the checkpoints that beat them by
    ``select_min_gain_se`` standard errors (None: the default margin), logged per eval.
    """
    from alpamayo_ros.training.grpo import RLConfig
    from alpamayo_ros.training.loop import train

    data = tiny_dict(pretrain={"steps": 2, "eval_every": 0, "save_every": 0},
                     sft={"steps": 0})
    data["rl"] = tiny_rl(steps=2)
    if min_gain_se is not None:
        data["rl"]["rl"]["select_min_gain_se"] = min_gain_se
    margin = RLConfig(**data["rl"]["rl"]).select_min_gain_se
    run = tmp_path / "run"
    summary = train(config_from_dict(data), out=run, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["stage"] == "rl" and r["split"] == "val"]
    assert [r["step"] for r in val] == [0, 1, 2]
    for r in val:
        assert {"reward", "reward_reasoning", "reward_consistency", "reward_trajectory",
                "decision_lon", "decision_lat"} <= set(r)
        assert r["reward_samples"] > 0
    assert "reward_gain" not in val[0]
    for r in val[1:]:  # the gain over the start is the difference of the means
        assert r["reward_gain"] == pytest.approx(r["reward"] - val[0]["reward"], abs=1e-9)
        assert r["reward_gain_se"] >= 0.0
    eligible = [val[0]] + [r for r in val[1:] if r["reward_gain"] > 0
                           and r["reward_gain"] >= margin * r["reward_gain_se"]]
    best = max(eligible, key=lambda r: r["reward"])  # the first of equal rewards is kept
    assert summary["stages"]["rl"]["best_step"] == best["step"]
    selection = json.loads((run / "rl" / "best" / "selection.json").read_text())
    assert selection["step"] == best["step"]
    assert summary["stages"]["rl"]["output"].endswith("rl/best")


def test_rl_checkpoint_verdict_needs_a_gain_beyond_the_noise():
    from alpamayo_ros.training.loop import rl_checkpoint_verdict

    start = [1.0, 0.0, 2.0, 1.0]
    # +0.5 on every keyframe: no spread, the gain is certain.
    assert rl_checkpoint_verdict([1.5, 0.5, 2.5, 1.5], start, 2.0) == (0.5, 0.0, True)
    # Differences +1, -1, +1, +1: mean 0.5, sample std 1, standard error 0.5: one SE.
    gain, se, ok = rl_checkpoint_verdict([2.0, -1.0, 3.0, 2.0], start, 2.0)
    assert (gain, se, ok) == (pytest.approx(0.5), pytest.approx(0.5), False)
    assert rl_checkpoint_verdict([2.0, -1.0, 3.0, 2.0], start, 1.0)[2] is True
    # No gain or a loss is never enough, whatever the margin.
    assert rl_checkpoint_verdict(start, start, 0.0) == (0.0, 0.0, False)
    assert rl_checkpoint_verdict([0.0, 0.0, 1.0, 1.0], start, 0.0)[2] is False
    with pytest.raises(ValueError, match="equal, non-empty"):
        rl_checkpoint_verdict([1.0], start, 2.0)
    with pytest.raises(ValueError, match="equal, non-empty"):
        rl_checkpoint_verdict([], [], 2.0)


def test_rl_selection_margin_is_validated():
    from alpamayo_ros.training.grpo import RLConfig

    for bad in (-1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="select_min_gain_se"):
            RLConfig(select_min_gain_se=bad)


def test_precision_auto_is_bf16_only_where_the_device_computes_it_natively(monkeypatch):
    from alpamayo_ros.training import loop

    cpu = torch.device("cpu")
    assert loop.resolve_precision("fp32", cpu) == "fp32"
    assert loop.resolve_precision("bf16", cpu) == "bf16"
    for flags, expected in (({"avx512_bf16": True, "amx_bf16": False}, "bf16"),
                            ({"avx512_bf16": False, "amx_bf16": True}, "bf16"),
                            ({"avx512_bf16": False, "amx_bf16": False}, "fp32"),
                            ({}, "fp32")):
        monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda f=flags: f)
        loop.native_bf16.cache_clear()  # asked once per device: ask again for these flags
        assert loop.resolve_precision("auto", cpu) == expected, flags
    loop.native_bf16.cache_clear()
    with pytest.raises(ValueError, match="TrainConfig.precision"):
        config_from_dict(tiny_dict(precision="fp16"))


def test_bf16_autocast_trains_every_stage_on_the_cpu(tmp_path):
    """Precision bf16 on a CPU: pretrain, SFT and GRPO run, finite, weights stay fp32."""
    from alpamayo_ros.model.policy import Policy
    from alpamayo_ros.training.loop import train

    data = tiny_dict(precision="bf16", pretrain={"steps": 2, "eval_every": 2, "save_every": 0},
                     sft={"steps": 2, "eval_every": 2, "save_every": 0})
    data["rl"] = tiny_rl(steps=1)
    run = tmp_path / "run"
    summary = train(config_from_dict(data), out=run, progress=False)
    assert summary["precision"] == "bf16"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"pretrain", "sft", "rl"}
    for r in rows:
        assert all(np.isfinite(v) for v in r.values() if isinstance(v, float)), r
    policy = Policy.from_pretrained(summary["stages"]["rl"]["output"], torch.device("cpu"))
    params = list(policy.model.parameters())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in params)
