"""config/*.yaml: keys are exactly the fields of the dataclasses they configure.

The values written there are the dataclass defaults: the YAML documents them.
"""

import dataclasses
from pathlib import Path

import pytest

from alpamayo_ros.calibration import ExtrinsicsConfig
from alpamayo_ros.control import ControllerConfig
from alpamayo_ros.inference.config import PolicyNodeConfig
from alpamayo_ros.safety import SafetyLimits
from alpamayo_ros.sync.config import CameraInputConfig, SyncConfig

yaml = pytest.importorskip("yaml")
CONFIG = Path(__file__).resolve().parents[1] / "config"
FILES = {
    "safety.yaml": (SafetyLimits, ControllerConfig),
    "sync.yaml": (SyncConfig, CameraInputConfig),
    "policy.yaml": (PolicyNodeConfig, ExtrinsicsConfig),
}


def params(name: str) -> dict:
    doc = yaml.safe_load((CONFIG / name).read_text())
    return doc["/**"]["ros__parameters"]


def fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


@pytest.mark.parametrize("name", sorted(FILES))
def test_yaml_keys_are_the_dataclass_fields_with_their_defaults(name: str) -> None:
    p = params(name)
    classes = FILES[name]
    all_fields = [fields(c) for c in classes]
    assert set(p) == set().union(*all_fields)
    for i, a in enumerate(all_fields):  # no key configures two dataclasses
        for b in all_fields[i + 1:]:
            assert not a & b
    for cls, names in zip(classes, all_fields):
        assert cls(**{k: v for k, v in p.items() if k in names}) == cls()
