"""The bring-ups of the alpamayo_ros graph, defined once for ``ros2 launch`` and ``alpamayo up``.

A bring-up is a list of :class:`NodeSpec` (which executable, which ``config/*.yaml``
files, which parameters come from launch arguments) plus its declared, described
:class:`LaunchArgument` s. ``launch/*.launch.py`` turn a bring-up into a
``LaunchDescription`` (:mod:`alpamayo_ros.ros.launch_support`); ``alpamayo up`` starts
the same processes with the same parameter files and values where ``ros2 launch`` is not
installed (:mod:`alpamayo_ros.ros.up`). Both read this module, so what the tests run is
what ``ros2 launch`` runs.

Bring-ups:

- ``policy``: camera sync + policy only (plans and reasoning, nothing actuated).
- ``vehicle``: camera sync + policy + controller on live sensors.
- ``simulation``: the closed loop: simulator + camera sync + policy + controller.
- ``replay``: a rosbag played with ``/clock`` + camera sync + policy + controller
  (open loop: the commands are computed and checked, nothing moves).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

PACKAGE = "alpamayo_ros"

@dataclass(frozen=True)
class LaunchArgument:
    """A declared launch argument (``name:=value``)."""

    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """One process of a bring-up.

    ``params_files`` name files in ``config/``; ``arg_params`` maps ROS parameter names
    to the launch argument giving their value; ``cli_args`` are command-line arguments
    before ``--ros-args`` (``{name}`` is replaced by the launch argument's value).
    """

    name: str  # the main node's name (the policy process also runs ``camera_sync``)
    executable: str  # in lib/alpamayo_ros (``ros2 run alpamayo_ros <executable>``)
    module: str  # ``python -m <module>`` runs the same entry point
    params_files: tuple[str, ...] = ()
    arg_params: dict[str, str] = field(default_factory=dict)
    cli_args: tuple[str, ...] = ()
    description: str = ""


ARGUMENTS = {a.name: a for a in (
    LaunchArgument("weights_dir", "", "exported policy weights (config.json + "
                   "model.safetensors + tokenizer.json); empty: the shipped weights/default"),
    LaunchArgument("device", "auto", "policy device: auto (CUDA when present), cpu, cuda"),
    LaunchArgument("rate_hz", "2.0", "policy inference rate (Hz)"),
    LaunchArgument("reasoning", "true", "generate the Chain-of-Causality reasoning"),
    LaunchArgument("flow_steps", "10", "flow-matching Euler steps (AR1: 10; 5 allowed)"),
    LaunchArgument("max_reasoning_tokens", "0",
                   "cap on generated reasoning tokens (0: the model's budget)"),
    LaunchArgument("use_sim_time", "false", "run every node on /clock"),
    LaunchArgument("compressed", "false", "cameras as CompressedImage (jpeg)"),
    LaunchArgument("family", "lead_at_red_light", "simulator scenario family"),
    LaunchArgument("seed", "0", "simulator scenario seed"),
    LaunchArgument("engage_on", "policy", "when the simulator's driver hands over: policy "
                   "(the first command that follows a plan) or any (the first command)"),
    LaunchArgument("bag", "", "rosbag2 (MCAP) directory to replay"),
    LaunchArgument("rate", "1.0", "bag playback speed factor"),
)}

_POLICY = NodeSpec(
    "alpamayo_policy", "policy_node", "alpamayo_ros.nodes.policy_node",
    ("sync.yaml", "policy.yaml"),
    {"weights_dir": "weights_dir", "device": "device", "rate_hz": "rate_hz",
     "reasoning": "reasoning", "flow_steps": "flow_steps",
     "max_reasoning_tokens": "max_reasoning_tokens", "compressed": "compressed",
     "use_sim_time": "use_sim_time"},
    description="camera sync + lifecycle policy node (one process)")
_CONTROLLER = NodeSpec(
    "alpamayo_controller", "controller_node", "alpamayo_ros.nodes.controller_node",
    ("safety.yaml",), {"use_sim_time": "use_sim_time"},
    description="safety monitor + 50 Hz tracking controller + fallback")
_SIM = NodeSpec(
    "alpamayo_sim", "sim_node", "alpamayo_ros.nodes.sim_node", ("sim.yaml",),
    {"family": "family", "seed": "seed", "compressed": "compressed", "engage_on": "engage_on"},
    description="closed-loop simulator on the data engine's world")
_PLAYER = NodeSpec(
    "alpamayo_bag_player", "bag_player", "alpamayo_ros.nodes.bag_player", (),
    {}, ("{bag}", "--clock", "--rate", "{rate}"),
    description="rosbag2 playback with /clock")

# Real cameras: frozen-camera detection on (off in sync.yaml: the simulator is noiseless).
_POLICY_VEHICLE = replace(
    _POLICY, params_files=("sync.yaml", "sync_vehicle.yaml", "policy.yaml"))

BRINGUPS: dict[str, tuple[NodeSpec, ...]] = {
    "policy": (_POLICY,),
    "vehicle": (_POLICY_VEHICLE, _CONTROLLER),
    "simulation": (_SIM, _POLICY, _CONTROLLER),
    "replay": (_PLAYER, _POLICY, _CONTROLLER),
}
# Launch-argument defaults that differ per bring-up.
DEFAULT_OVERRIDES: dict[str, dict[str, str]] = {
    "simulation": {"use_sim_time": "true"},  # the simulator publishes /clock
    "replay": {"use_sim_time": "true"},  # the player publishes the bag's /clock
}


def arguments(bringup: str) -> list[LaunchArgument]:
    """The launch arguments a bring-up uses, with its defaults."""
    specs = _specs(bringup)
    names: list[str] = []
    for spec in specs:
        used = list(spec.arg_params.values()) + [
            a[1:-1] for a in spec.cli_args if a.startswith("{") and a.endswith("}")]
        names += [n for n in used if n not in names]
    overrides = DEFAULT_OVERRIDES.get(bringup, {})
    return [LaunchArgument(n, overrides.get(n, ARGUMENTS[n].default), ARGUMENTS[n].description)
            for n in names]


def resolve(bringup: str, values: dict[str, str]) -> dict[str, str]:
    """Argument values: the defaults overridden by ``values``; unknown names are an error."""
    declared = {a.name: a.default for a in arguments(bringup)}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ValueError(f"bring-up {bringup!r} has no arguments {unknown}; "
                         f"it declares {sorted(declared)}")
    declared.update(values)
    return declared


def _specs(bringup: str) -> tuple[NodeSpec, ...]:
    if bringup not in BRINGUPS:
        raise ValueError(f"unknown bring-up {bringup!r}; choose from {sorted(BRINGUPS)}")
    return BRINGUPS[bringup]


def nodes(bringup: str) -> tuple[NodeSpec, ...]:
    """The processes of a bring-up."""
    return _specs(bringup)
