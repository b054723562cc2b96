"""The shipped default weights (``weights/default/``): files, size, card, and the node using them.

The bring-ups load these when no ``weights_dir`` is given. Their quality is measured by
``alpamayo eval`` (docs/RESULTS.md), not here; these tests check that what ships is a
complete, trained, loadable weights directory that the policy node runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from alpamayo_ros.paths import default_weights_dir

WEIGHTS = default_weights_dir()
MAX_BYTES = 20 * 1024 * 1024  # shipped weights stay under 20 MB (developers' guide)


def test_weights_directory_is_complete_small_and_trained() -> None:
    import torch

    from alpamayo_ros.model.policy import Policy
    from alpamayo_ros.model.processor import CONTROL_SCALE

    names = {p.name for p in WEIGHTS.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= names
    total = sum(p.stat().st_size for p in WEIGHTS.iterdir() if p.is_file())
    assert total < MAX_BYTES, total
    policy = Policy.from_pretrained(WEIGHTS, device="cpu")
    assert policy.config.preset == "default"
    # Trained: the action statistics come from data, not the untrained default scale.
    assert not torch.allclose(policy.model.action_std, torch.tensor(CONTROL_SCALE))


def test_model_card_states_data_recipe_and_no_test_seeds() -> None:
    card = (WEIGHTS / "README.md").read_text()
    for part in ("config/training/default.yaml", "train_seeds", "commit"):
        assert part in card, part
    meta = json.loads((WEIGHTS / "config.json").read_text())
    assert meta["format_version"] >= 3


@pytest.mark.ros
def test_policy_node_runs_the_shipped_weights_when_none_are_given(ros_env, tmp_path) -> None:
    from alpamayo_ros import topics
    from alpamayo_ros.msg import Reasoning, Trajectory
    from alpamayo_ros.ros.qos import plan_qos
    from test.helpers.ros_harness import (
        Probe,
        SyntheticSensors,
        domain_id,
        start_node_process,
        stop_process,
    )

    log = Path(tmp_path) / "policy.log"
    proc = start_node_process(
        "alpamayo_ros.nodes.policy_node",
        ["--params-file", "config/sync.yaml", "--params-file", "config/policy.yaml",
         "-p", "device:=cpu", "-p", "rate_hz:=1.0"], ros_env, log)
    probe = Probe(domain_id(ros_env))
    probe.record(Trajectory, topics.TRAJECTORY, plan_qos())
    probe.record(Reasoning, topics.REASONING, plan_qos())
    SyntheticSensors(probe, ["front_wide", "front_tele", "cross_left", "cross_right",
                             "rear_left", "rear_right", "rear_tele"])
    try:
        assert probe.wait_for(lambda: len(probe.messages(topics.REASONING)) >= 1, 90.0,
                              proc, log), log.read_text()
        assert "loaded default:default" in log.read_text(), log.read_text()
        time.sleep(0.5)
        assert probe.messages(topics.TRAJECTORY)
        assert all(m.text for m in probe.messages(topics.REASONING))  # generated text
    finally:
        probe.close()
        stop_process(proc)
