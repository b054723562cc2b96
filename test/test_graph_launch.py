"""One graph definition for ``ros2 launch`` and ``alpamayo up``: consistency checks.

Where ``launch_ros`` is installed (a vehicle's ROS 2, or ``make setup ROS2_UPSTREAM=...``)
the last test builds every launch description and compares it with the graph;
test/test_launch_bringups.py runs them.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

from alpamayo_ros import graph
from alpamayo_ros.ros.up import node_command, parse_assignments

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bringup", sorted(graph.BRINGUPS))
def test_every_process_has_an_entry_point_script_and_config(bringup: str) -> None:
    for spec in graph.nodes(bringup):
        module = importlib.import_module(spec.module)
        assert callable(getattr(module, "main", None)), spec.module
        script = ROOT / "scripts" / spec.executable
        assert script.is_file() and os.access(script, os.X_OK), script
        assert spec.module.rsplit(".", 1)[1] in script.read_text()
        for name in spec.params_files:
            assert (ROOT / "config" / name).is_file(), name
    for arg in graph.arguments(bringup):
        assert arg.description, arg.name


@pytest.mark.parametrize("bringup", sorted(graph.BRINGUPS))
def test_launch_file_generates_its_bringup_from_the_graph(bringup: str) -> None:
    path = ROOT / "launch" / f"{bringup}.launch.py"
    tree = ast.parse(path.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "generate"]
    assert [c.args[0].value for c in calls] == [bringup]
    funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert funcs == ["generate_launch_description"]


def test_launch_files_are_exactly_the_bringups() -> None:
    files = {p.name.removesuffix(".launch.py") for p in (ROOT / "launch").glob("*.launch.py")}
    assert files == set(graph.BRINGUPS)
    # ... and each has its launch_testing test (run by test/test_launch_bringups.py).
    tests = {p.stem for p in (ROOT / "test" / "launch_tests").glob("*.py")}
    assert tests - {"__init__", "common"} == set(graph.BRINGUPS)


def test_up_command_lines_carry_params_files_and_argument_values() -> None:
    values = graph.resolve("simulation", {"weights_dir": "/w", "rate_hz": "3.0"})
    assert values["use_sim_time"] == "true"  # the simulator publishes /clock
    specs = {s.name: s for s in graph.nodes("simulation")}
    cmd = node_command(specs["alpamayo_policy"], values, python="python")
    assert cmd[:3] == ["python", "-m", "alpamayo_ros.nodes.policy_node"]
    assert cmd[cmd.index("--ros-args") + 1] == "--params-file"
    assert any(c.endswith("config/policy.yaml") for c in cmd)
    assert "weights_dir:=/w" in cmd and "rate_hz:=3.0" in cmd and "use_sim_time:=true" in cmd
    player = node_command(graph.nodes("replay")[0], graph.resolve("replay", {"bag": "/b"}),
                          python="python")
    assert player[3] == "/b" and "--clock" in player
    with pytest.raises(ValueError, match="no arguments"):
        graph.resolve("policy", {"family": "x"})
    with pytest.raises(ValueError, match="name:=value"):
        parse_assignments(["rate_hz=2"])
    with pytest.raises(ValueError, match="unknown bring-up"):
        graph.nodes("mars_rover")


def test_launch_descriptions_match_the_graph_where_launch_ros_is_installed() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (PyPI has none): "
                        "make setup ROS2_UPSTREAM=<ros2-upstream folder> installs it")
    from launch_ros.actions import Node

    from alpamayo_ros.ros.launch_support import generate

    for bringup in graph.BRINGUPS:
        description = generate(bringup)
        nodes = [e for e in description.entities if isinstance(e, Node)]
        assert [n.node_executable for n in nodes] == \
            [s.executable for s in graph.nodes(bringup)]
