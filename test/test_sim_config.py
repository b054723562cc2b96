"""config/sim.yaml mirrors SimConfig; SimConfig rejects bad values naming the field."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from alpamayo_ros.ros.params import ConfigError, config_from_dict, load_params_file
from alpamayo_ros.sim import SimConfig

CONFIG = Path(__file__).resolve().parents[1] / "config" / "sim.yaml"


def test_sim_yaml_matches_dataclass_defaults() -> None:
    params = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    assert set(params) == {f.name for f in dataclasses.fields(SimConfig)}
    assert SimConfig(**params) == SimConfig()
    # Types too: a YAML 0 where the field is a float would change the ROS parameter type.
    for f in dataclasses.fields(SimConfig):
        assert type(params[f.name]).__name__ == f.type, f.name


def test_params_file_reader_builds_the_config() -> None:
    values = load_params_file(CONFIG, "alpamayo_sim")
    assert config_from_dict(SimConfig, values) == SimConfig()


@pytest.mark.parametrize("field, value, match", [
    ("family", "nope", "family"),
    ("rig", "nope", "rig"),
    ("on_end", "loop", "on_end"),
    ("camera_rate_hz", 3.0, "camera_rate_hz"),
    ("camera_rate_hz", 20.0, "camera_rate_hz"),
    ("physics_rate_hz", 55.0, "physics_rate_hz"),
    ("odometry_rate_hz", 30.0, "odometry_rate_hz"),  # does not divide 100 Hz physics
    ("command_timeout_s", 0.0, "command_timeout_s"),
    ("timeout_decel_mps2", 12.0, "timeout_decel_mps2"),
    ("real_time_factor", -1.0, "real_time_factor"),
    ("real_time_factor", float("nan"), "real_time_factor"),
    ("jpeg_quality", 5, "jpeg_quality"),
    ("seed", -1, "seed"),
    ("seed", 1.5, "seed"),
    ("compressed", 1, "compressed"),
])
def test_bad_values_are_rejected_naming_the_field(field: str, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SimConfig(**{field: value})
    with pytest.raises(ConfigError, match=match):
        config_from_dict(SimConfig, {field: value})


def test_tick_ratios() -> None:
    cfg = SimConfig(physics_rate_hz=100.0, odometry_rate_hz=25.0, camera_rate_hz=5.0)
    assert (cfg.ticks_per_world_step, cfg.ticks_per_odometry, cfg.ticks_per_camera) == (10, 4, 20)
