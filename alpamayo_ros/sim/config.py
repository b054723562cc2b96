"""Parameters of the closed-loop simulator (ROS parameter names = field names).

``config/sim.yaml`` mirrors the defaults (``test/test_sim_config.py`` keeps them equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from alpamayo_ros.data.cameras import CAMERA_RATE_HZ, RIG_PRESETS
from alpamayo_ros.data.scenarios import FAMILIES
from alpamayo_ros.data.world import DT_S
from alpamayo_ros.unicycle import MAX_ABS_ACCELERATION_MPS2

WORLD_RATE_HZ = 1.0 / DT_S  # agents and lights step at the data engine's 10 Hz
END_ACTIONS = ("restart", "stop")
ENGAGE_ON = ("policy", "any")  # which command ends the sim driver's hold (engage_on)
# Autoware mrm_emergency_stop_operator target deceleration (see control/config.py):
# the sim's own brake when commands stop arriving.
DEFAULT_TIMEOUT_DECEL_MPS2 = 2.5


def _is_multiple(value: float, base: float) -> bool:
    ratio = value / base
    return ratio >= 1.0 - 1e-9 and abs(ratio - round(ratio)) < 1e-6


@dataclass(frozen=True)
class SimConfig:
    """Closed-loop simulator parameters.

    - ``family`` / ``seed``: the data-engine scenario (``alpamayo_ros.data.scenarios``).
    - ``duration_s``: episode length; 0 takes the family's own clip length (20 s or 24 s).
    - ``on_end``: at the end of an episode, ``"restart"`` with ``seed + 1`` (sim time keeps
      running) or ``"stop"`` publishing (the node stays up and reports it).
    - ``end_on_collision``: a collision ends the episode (then ``on_end`` applies).
    - ``rig``: camera preset (``ar1``: 7 x 448x280; ``train_small``; ``tiny``).
    - ``camera_rate_hz``: must divide the 10 Hz world rate (10, 5, 2, 1 ...).
    - ``odometry_rate_hz``: must divide ``physics_rate_hz``.
    - ``physics_rate_hz``: ego unicycle integration rate, a multiple of 10 Hz; also the
      ``/clock`` rate. 100 Hz: timers on sim time fire only when /clock passes their
      deadline, so /clock must tick faster than the 50 Hz controller (at 50 Hz a late
      /clock message makes it skip cycles; measured 44 Hz of sim time).
    - ``compressed`` / ``jpeg_quality``: jpeg ``CompressedImage`` instead of rgb8 ``Image``.
    - ``publish_clock``: publish ``/clock``; other nodes then run with use_sim_time.
    - ``real_time_factor``: sim seconds per wall second (0 = as fast as possible).
    - ``max_lag_s``: when the sim falls this far behind its pace it re-anchors (sim time
      slows down instead of bursting to catch up).
    - ``command_timeout_s``: the last command is held this long, then the sim brakes.
    - ``timeout_decel_mps2``: deceleration of that brake (curvature held).
    - ``initial_speed_mps``: start speed; negative keeps the scenario's own.
    - ``engage_on``: when the autonomy takes over from the sim's driver, who until then
      holds the start speed on the road's curvature (a safety driver before engagement):
      ``policy`` (default) at the first command that follows a plan (``ControlCommand``
      source POLICY; the controller's stop commands before its first plan are counted
      and ignored), ``any`` at the first command of any source.
    - ``engage_timeout_s``: no engagement this long into an episode: the driver brakes as
      after a command timeout.
    """

    family: str = "cruise"
    seed: int = 0
    duration_s: float = 0.0
    on_end: str = "restart"
    end_on_collision: bool = False
    rig: str = "ar1"
    camera_rate_hz: float = CAMERA_RATE_HZ
    odometry_rate_hz: float = 50.0
    physics_rate_hz: float = 100.0
    compressed: bool = False
    jpeg_quality: int = 90
    publish_clock: bool = True
    real_time_factor: float = 1.0
    max_lag_s: float = 0.5
    command_timeout_s: float = 0.5
    timeout_decel_mps2: float = DEFAULT_TIMEOUT_DECEL_MPS2
    initial_speed_mps: float = -1.0
    engage_on: str = "policy"
    engage_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value, kind = getattr(self, f.name), str(f.type)
            if kind == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{f.name} must be a number, got {value!r}")
                if not math.isfinite(value):
                    raise ValueError(f"{f.name} must be finite, got {value!r}")
            elif kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{f.name} must be an integer, got {value!r}")
            elif kind == "bool" and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be true or false, got {value!r}")
            elif kind == "str" and not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string, got {value!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {self.family!r}")
        if self.rig not in RIG_PRESETS:
            raise ValueError(f"rig must be one of {sorted(RIG_PRESETS)}, got {self.rig!r}")
        if self.engage_on not in ENGAGE_ON:
            raise ValueError(f"engage_on must be one of {ENGAGE_ON}, got {self.engage_on!r}")
        if self.on_end not in END_ACTIONS:
            raise ValueError(f"on_end must be one of {END_ACTIONS}, got {self.on_end!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.duration_s < 0:
            raise ValueError(f"duration_s must be >= 0 (0 = family default), got "
                             f"{self.duration_s}")
        for name in ("camera_rate_hz", "odometry_rate_hz", "physics_rate_hz",
                     "command_timeout_s", "timeout_decel_mps2", "max_lag_s",
                     "engage_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not _is_multiple(self.physics_rate_hz, WORLD_RATE_HZ):
            raise ValueError(f"physics_rate_hz must be a multiple of the {WORLD_RATE_HZ:g} Hz "
                             f"world rate, got {self.physics_rate_hz}")
        if not _is_multiple(WORLD_RATE_HZ, self.camera_rate_hz):
            raise ValueError(f"camera_rate_hz must divide the {WORLD_RATE_HZ:g} Hz world rate,"
                             f" got {self.camera_rate_hz}")
        if not _is_multiple(self.physics_rate_hz, self.odometry_rate_hz):
            raise ValueError(f"odometry_rate_hz must divide physics_rate_hz "
                             f"({self.physics_rate_hz}), got {self.odometry_rate_hz}")
        if not 10 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [10, 100], got {self.jpeg_quality}")
        if self.real_time_factor < 0:
            raise ValueError(f"real_time_factor must be >= 0 (0 = unpaced), got "
                             f"{self.real_time_factor}")
        if self.timeout_decel_mps2 > MAX_ABS_ACCELERATION_MPS2:
            raise ValueError(f"timeout_decel_mps2 must be <= {MAX_ABS_ACCELERATION_MPS2}, got "
                             f"{self.timeout_decel_mps2}")
        if self.initial_speed_mps > 40.0:
            raise ValueError(f"initial_speed_mps must be <= 40 (negative = scenario's own), "
                             f"got {self.initial_speed_mps}")

    # Integer tick ratios (validated above).
    @property
    def ticks_per_world_step(self) -> int:
        """Physics ticks per 10 Hz world step."""
        return int(round(self.physics_rate_hz / WORLD_RATE_HZ))

    @property
    def ticks_per_odometry(self) -> int:
        """Physics ticks between odometry outputs."""
        return int(round(self.physics_rate_hz / self.odometry_rate_hz))

    @property
    def ticks_per_camera(self) -> int:
        """Physics ticks between camera frames."""
        return self.ticks_per_world_step * int(round(WORLD_RATE_HZ / self.camera_rate_hz))
