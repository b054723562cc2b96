"""Every bring-up through the real ``launch``: the launch_testing tests in test/launch_tests/.

Each runs as ``python -m launch_testing.launch_test test/launch_tests/<bring-up>.py
name:=value ...`` in a subprocess (launch_testing's pytest plugin does not load under
pytest 9, so it is not installed as one; see tools/install_ros2_upstream.sh), on random
tiny weights with reasoning capped at 24 tokens, in this module's private DDS domain. The
JUnit report must list every test of the file as passed: a launch test that did not run
fails here. Skipped where launch_testing is not installed (``make setup
ROS2_UPSTREAM=<folder>`` installs it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from alpamayo_ros import graph

pytest.importorskip("launch_testing", reason="launch_testing is not installed: run make setup "
                    "with ROS2_UPSTREAM=<ros2-upstream folder> (see Makefile)")

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "test" / "launch_tests"
RUN_TIMEOUT_S = 600
# Tests that may skip, with the reason they must give.
ALLOWED_SKIPS = {"test_3_ros2_lifecycle_command_drives_the_policy_node": "rosidl_runtime_py"}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from alpamayo_ros.model.policy import Policy

    out = tmp_path_factory.mktemp("weights") / "tiny"
    Policy.from_config("tiny", device="cpu").save_pretrained(out)
    return out


def defined_tests(path: Path) -> set[str]:
    """The ``test_*`` methods a launch test file defines."""
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_ros2_cli_finds_the_checkouts_launch_files_and_executables(ros_env) -> None:
    """``make setup`` installed what ``ros2 run`` / ``ros2 launch`` look up (CMakeLists.txt)."""
    pytest.importorskip("ros2launch", reason="the ros2 command line is not installed")
    ros2 = str(Path(sys.executable).parent / "ros2")

    def ros2_cli(*args: str) -> str:
        result = subprocess.run([ros2, *args], env=ros_env, cwd="/", capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    listed = ros2_cli("pkg", "executables", "alpamayo_ros").split()
    executables = {p.name for p in (ROOT / "scripts").iterdir() if not p.name.startswith(".")}
    assert executables == set(listed[1::2]) and set(listed[::2]) == {"alpamayo_ros"}
    for bringup in graph.BRINGUPS:
        shown = ros2_cli("launch", "alpamayo_ros", f"{bringup}.launch.py", "--show-args")
        assert all(f"'{a.name}'" in shown for a in graph.arguments(bringup)), shown
    # The installed files are links to this checkout (edits apply without reinstalling).
    share = Path(ros2_cli("pkg", "prefix", "--share", "alpamayo_ros").strip())
    assert (share / "launch" / "simulation.launch.py").resolve() == \
        ROOT / "launch" / "simulation.launch.py"


@pytest.mark.parametrize("bringup", sorted(graph.BRINGUPS))
def test_bringup_passes_its_launch_test(bringup: str, ros_env, tiny_weights,
                                        tmp_path: Path) -> None:
    args = [f"weights_dir:={tiny_weights}", "device:=cpu", "max_reasoning_tokens:=24"]
    if bringup == "replay":
        from test.launch_tests.common import write_replay_bag

        bag = write_replay_bag(tmp_path / "bag", duration_s=75.0)
        args += [f"bag:={bag}", "compressed:=true"]
    path = TESTS / f"{bringup}.py"
    junit = tmp_path / "junit.xml"
    log = tmp_path / "launch_test.log"
    with open(log, "w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "launch_testing.launch_test", str(path), *args,
             "--junit-xml", str(junit)],
            env=ros_env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S)
    text = log.read_text()
    assert result.returncode == 0, text[-6000:]
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == defined_tests(path), (sorted(cases), text[-3000:])
    for name, case in cases.items():
        assert case.find("failure") is None and case.find("error") is None, name
        skipped = case.find("skipped")
        if skipped is not None:
            reason = skipped.get("message", "") + (skipped.text or "")
            assert ALLOWED_SKIPS.get(name, "\0") in reason, (name, reason)
            print(f"{bringup}: {name} skipped: {reason}")
