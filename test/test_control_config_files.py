"""config/safety.yaml and config/sync.yaml: keys are exactly the dataclass fields."""

import dataclasses
from pathlib import Path

import pytest

from alpamayo_ros.control import ControllerConfig
from alpamayo_ros.safety import SafetyLimits
from alpamayo_ros.sync import SyncConfig

yaml = pytest.importorskip("yaml")
CONFIG = Path(__file__).resolve().parents[1] / "config"


def params(name: str) -> dict:
    doc = yaml.safe_load((CONFIG / name).read_text())
    return doc["/**"]["ros__parameters"]


def fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def test_safety_yaml_covers_limits_and_controller_config_with_defaults() -> None:
    p = params("safety.yaml")
    assert set(p) == fields(SafetyLimits) | fields(ControllerConfig)
    assert not fields(SafetyLimits) & fields(ControllerConfig)
    limits = SafetyLimits(**{k: v for k, v in p.items() if k in fields(SafetyLimits)})
    config = ControllerConfig(**{k: v for k, v in p.items() if k in fields(ControllerConfig)})
    assert limits == SafetyLimits() and config == ControllerConfig()  # documents the defaults


def test_sync_yaml_matches_sync_config_defaults() -> None:
    p = params("sync.yaml")
    assert set(p) == fields(SyncConfig)
    assert SyncConfig(**p) == SyncConfig()
