"""Clean shutdown of the bring-ups and nodes: exit code 0, nothing left running.

- ``alpamayo up simulation`` started the way a script starts a background job (SIGINT
  inherited as ignored) and stopped with SIGTERM: it and every node exit with 0.
- ``ros2 launch alpamayo_ros simulation.launch.py`` started the same way and stopped with
  SIGINT (which it would otherwise ignore): exit 0, every process "finished cleanly"
  (needs the ros2 command line: ``make setup ROS2_UPSTREAM=...``).
- A node whose parent dies without stopping it (``ros2 launch`` on SIGTERM, a SIGKILLed
  supervisor) receives SIGTERM from the kernel and ends (alpamayo_ros/ros/lifetime.py).

Each bring-up runs random tiny weights with reasoning capped at 24 tokens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alpamayo_ros.ros.lifetime import alive, descendants
from test.helpers.ros_harness import REPO_ROOT

pytestmark = pytest.mark.ros

NODES = ("sim_node", "policy_node", "controller_node")
STARTUP_TIMEOUT_S = 240.0
READY = "warm-up inference"  # the policy node's log line once its model is loaded


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from alpamayo_ros.model.policy import Policy

    out = tmp_path_factory.mktemp("weights") / "tiny"
    Policy.from_config("tiny", device="cpu").save_pretrained(out)
    return out


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as bash does for `cmd &` in a script


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} within {timeout_s:g} s:\n{log.read_text()[-4000:]}")


def run_and_stop(cmd: list[str], env: dict[str, str], log: Path, sig: int) -> str:
    """Start ``cmd`` as a script's background job and stop it with ``sig``; its output.

    Once the policy has loaded its model, ``sig`` is sent: the process and everything it
    started must end, it with code 0, no traceback printed. Whatever is left is killed.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_ignore_sigint)
    nodes: set[int] = set()
    try:
        wait_for_text(log, READY, proc, STARTUP_TIMEOUT_S)
        time.sleep(3.0)  # plans and commands flowing
        nodes = descendants(proc.pid)
        assert len(nodes) >= len(NODES), nodes
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and any(alive(p) for p in nodes):
            time.sleep(0.2)
        text = log.read_text()
        assert not [p for p in nodes if alive(p)], f"left running:\n{text[-4000:]}"
        assert code == 0, text[-4000:]
        assert "Traceback" not in text, text[-6000:]
        return text
    finally:
        for pid in nodes | descendants(proc.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_alpamayo_up_in_the_background_stops_cleanly_on_sigterm(ros_env, tiny_weights,
                                                               tmp_path) -> None:
    text = run_and_stop([sys.executable, "-m", "alpamayo_ros.cli", "up", "simulation",
                         f"weights_dir:={tiny_weights}", "device:=cpu",
                         "max_reasoning_tokens:=24"], ros_env, tmp_path / "up.log",
                        signal.SIGTERM)
    assert "on shutdown" not in text  # up names any process that exited non-zero


def test_ros2_launch_in_the_background_stops_cleanly_on_sigint(ros_env, tiny_weights,
                                                              tmp_path) -> None:
    pytest.importorskip("ros2launch", reason="the ros2 command line is not installed: "
                        "make setup ROS2_UPSTREAM=<ros2-upstream folder>")
    text = run_and_stop([str(Path(sys.executable).parent / "ros2"), "launch", "alpamayo_ros",
                         "simulation.launch.py", f"weights_dir:={tiny_weights}", "device:=cpu",
                         "max_reasoning_tokens:=24"], ros_env, tmp_path / "launch.log",
                        signal.SIGINT)
    for node in NODES:
        assert f"[{node}-" in text and "has died" not in text, text[-4000:]
    assert text.count("process has finished cleanly") == len(NODES), text[-4000:]


def test_a_node_ends_when_its_parent_dies(ros_env, tmp_path) -> None:
    log = tmp_path / "controller.log"
    # A parent that starts the node and is then SIGKILLed (stops nothing on its way out).
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; p = subprocess.Popen([sys.executable, '-m', "
         "'alpamayo_ros.nodes.controller_node'], stdout=open(sys.argv[1], 'w'), "
         "stderr=subprocess.STDOUT); print(p.pid, flush=True); p.wait()", str(log)],
        env=ros_env, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    node = int(parent.stdout.readline())
    try:
        wait_for_text(log, "controller at", parent, 120.0)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and alive(node):
            time.sleep(0.2)
        assert not alive(node), log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if alive(node):
            os.kill(node, signal.SIGKILL)


STALLING_NODE = """
import sys, time
from rclpy.node import Node
from alpamayo_ros.ros import runner

runner.STALL_REPORT_S = 1.0
runner.SHUTDOWN_REPORT_S = 1.0
runner.STARTUP_REPORT_S = 1.0


class Stalling(Node):
    def __init__(self):
        super().__init__("stalling")
        print("starting", flush=True)
        time.sleep(2.0)  # a start slower than STARTUP_REPORT_S
        print("started", flush=True)
        self.calls = 0
        self.create_timer(0.1, self.tick)

    def tick(self):
        self.calls += 1
        if self.calls == 3:
            print("stalling", flush=True)
            time.sleep(3.0)  # the main thread is away from the spin loop for 3 s
            print("back", flush=True)

    def destroy_node(self):
        time.sleep(2.0)  # a clean-up slower than SHUTDOWN_REPORT_S
        super().destroy_node()


runner.run_node(Stalling)
"""


def test_a_stalled_node_prints_every_threads_stack_and_keeps_running(ros_env, tmp_path) -> None:
    """The runner's watchdog names where the main thread is stuck (alpamayo_ros/ros/runner.py).

    At the start (creating the node), in a callback, and in the clean-up after SIGINT.
    """
    log = tmp_path / "stall.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", STALLING_NODE], env=ros_env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        wait_for_text(log, "back", proc, 60.0)
        text = log.read_text()
        start = text[text.index("starting"):text.index("started")]
        assert "most recent call first" in start and "in __init__" in start, text
        stall = text[text.index("stalling"):text.index("back")]
        # faulthandler's dump, with the stalled callback on the main thread's stack
        assert "most recent call first" in stall and "in tick" in stall, text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()  # it still ends cleanly
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    shutdown = text[text.index("back"):]
    assert "most recent call first" in shutdown and "in destroy_node" in shutdown, text
