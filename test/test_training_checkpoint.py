"""Checkpoints: safetensors + JSON round trips, and --resume reaches the uninterrupted run.

A tiny run (pretrain 4 steps, then SFT 2) straight against 2 steps + resume: identical
parameters, optimizer state, logged losses and best-by-val selection, with DataLoader
workers = 0 and = 2; the same for the GRPO stage and its prompt pool.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from alpamayo_ros.training import checkpoint as ckpt
from alpamayo_ros.training.config import config_from_dict

TINY = Path(__file__).resolve().parents[1] / "config" / "training" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path):
    from safetensors.torch import load_file, save_file

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    names = [n for n, _ in model.named_parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).square().sum().backward()
        opt.step()
    tensors, meta = ckpt.optimizer_to_flat(opt.state_dict(), names)
    save_file(tensors, str(tmp_path / "o.safetensors"))
    (tmp_path / "o.json").write_text(json.dumps(meta))
    restored = ckpt.optimizer_from_flat(load_file(str(tmp_path / "o.safetensors")),
                                        json.loads((tmp_path / "o.json").read_text()), names)
    other = torch.optim.AdamW(model.parameters(), lr=0.5)
    other.load_state_dict(restored)
    a, b = opt.state_dict(), other.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for key, value in a["state"][i].items():
            torch.testing.assert_close(b["state"][i][key], value, rtol=0, atol=0)
    with pytest.raises(ckpt.CheckpointError, match="other parameters"):
        ckpt.optimizer_from_flat(tensors, meta, names[::-1])


def test_rng_states_round_trip():
    tensors, meta = ckpt.rng_state()
    first = torch.rand(3)
    json.loads(json.dumps(meta))  # JSON-able
    ckpt.set_rng_state(tensors, json.loads(json.dumps(meta)))
    torch.testing.assert_close(torch.rand(3), first, rtol=0, atol=0)


def _cfg(workers: int):
    data = yaml.safe_load(TINY.read_text())
    data["data"] = {**data["data"], "workers": workers, "synthetic_samples": 10,
                    "val_samples": 4}
    data["pretrain"] = {**data["pretrain"], "steps": 4, "log_every": 1, "eval_every": 2,
                        "save_every": 0, "blank_images_share": 0.5}
    data["sft"] = {**data["sft"], "steps": 2, "save_every": 0}
    return config_from_dict(data)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("time_s"), r.pop("samples_per_s", None)
    return rows


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact(tmp_path, workers):
    from alpamayo_ros.training.loop import train

    cfg = _cfg(workers)
    straight = tmp_path / "straight"
    train(cfg, out=straight, progress=False)
    split = tmp_path / "split"
    first = train(cfg, out=split, progress=False, stop_after=2)
    assert first["stopped"] and first["stages"]["pretrain"]["stopped_at"] == 2
    saved = split / "pretrain" / "checkpoints" / "step_0000002"
    assert ckpt.read_state(saved)["step"] == 2
    assert (saved / "best" / "selection.json").is_file()  # best weights as of step 2
    assert not (split / "sft").exists()
    train(cfg, out=split, progress=False, resume=split)  # finds the step-2 checkpoint
    for stage in ("pretrain", "sft"):
        a, b = _weights(straight / stage / "last"), _weights(split / stage / "last")
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
    from safetensors.torch import load_file

    last = "step_0000002"
    oa = load_file(str(straight / "sft" / "checkpoints" / last / "optimizer.safetensors"))
    ob = load_file(str(split / "sft" / "checkpoints" / last / "optimizer.safetensors"))
    for name in oa:
        torch.testing.assert_close(ob[name], oa[name], rtol=0, atol=0, msg=name)
    assert _records(split) == _records(straight)
    sa = json.loads((straight / "summary.json").read_text())
    sb = json.loads((split / "summary.json").read_text())
    assert sa["stages"]["sft"]["params_sha256"] == sb["stages"]["sft"]["params_sha256"]
    assert sa["stages"]["pretrain"]["best_step"] == sb["stages"]["pretrain"]["best_step"]


def test_resume_refuses_a_checkpoint_of_a_stage_not_run(tmp_path):
    from alpamayo_ros.training.loop import train

    cfg = _cfg(0)
    train(cfg, out=tmp_path, progress=False, stop_after=2)
    with pytest.raises(ValueError, match="stage 'pretrain'"):
        train(cfg, stage="sft", out=tmp_path, resume=tmp_path, progress=False)
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        ckpt.latest_checkpoint(tmp_path / "pretrain" / "tensorboard")


@pytest.mark.parametrize("flow_weight", [0.0, 1.0])
def test_rl_stage_resumes_exactly_with_its_prompt_pool(tmp_path, flow_weight):
    """GRPO after pretrain: 3 steps straight = 1 step + resume + 2 (KL to the start policy).

    With ``flow_weight`` 1 the flow expert is trained too (FPO) and must change.
    """
    import shutil

    from alpamayo_ros.training.loop import train

    data = yaml.safe_load(TINY.read_text())
    data["pretrain"] = {**data["pretrain"], "steps": 2, "eval_every": 0, "save_every": 0}
    data["sft"] = {**data["sft"], "steps": 0}
    data["rl"] = {"steps": 3, "batch_size": 2, "lr": 1e-4, "min_lr": 1e-4,
                  "schedule": "constant", "text_only": True, "log_every": 1, "eval_every": 0,
                  "save_every": 0,
                  "rl": {"group_size": 2, "max_reasoning_tokens": 12, "flow_steps": 2,
                         "kl_beta": 0.1, "disagreement_fraction": 0.5,
                         "flow_weight": flow_weight}}
    cfg = config_from_dict(data)
    base = tmp_path / "base"
    train(cfg, stage="pretrain", out=base, progress=False)
    straight, split = tmp_path / "straight", tmp_path / "split"
    shutil.copytree(base, straight)
    shutil.copytree(base, split)
    train(cfg, stage="rl", out=straight, progress=False)
    train(cfg, stage="rl", out=split, progress=False, stop_after=1)
    state = ckpt.read_state(split / "rl" / "checkpoints" / "step_0000001")
    assert state["init_from"].endswith("pretrain/best")
    assert any(v is not None for v in state["disagreement"]["scores"])  # scored prompts
    train(cfg, stage="rl", out=split, progress=False, resume=split)
    a, b = _weights(straight / "rl" / "last"), _weights(split / "rl" / "last")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
    start = _weights(base / "pretrain" / "best")
    assert any(not torch.equal(a[n], start[n]) for n in a)  # RL changed the policy
    expert = [n for n in a if ".expert." in f".{n}"]
    assert expert and any(not torch.equal(a[n], start[n]) for n in expert) == (flow_weight > 0)
    rl_rows = [r for r in _records(split) if r["stage"] == "rl"]
    assert rl_rows == [r for r in _records(straight) if r["stage"] == "rl"]
    train_rows = [r for r in rl_rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3] and "reward" in train_rows[0]
