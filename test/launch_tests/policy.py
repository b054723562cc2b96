"""launch_testing: ``policy.launch.py`` (camera sync + lifecycle policy, nothing actuated).

The test process publishes 7 synthetic cameras and odometry. Asserted while it runs:
plans and reasoning at the policy rate with shared camera stamps; the lifecycle services
drive the policy node (active -> deactivate: no more plans -> activate: plans again), and
so does the real ``ros2 lifecycle`` command line where it can run (it needs
rosidl_runtime_py). After the shutdown: the process exited with 0.
"""

from __future__ import annotations

import subprocess
import sys
import time
import unittest
from pathlib import Path

import launch_testing

from test.launch_tests.common import (
    RIG,
    STARTUP_TIMEOUT_S,
    bringup_description,
    call_service,
    check_clean_exit,
    make_probe,
    stamp_ns,
    stamp_rate_hz,
    wait_for,
)

EXECUTABLES = ["policy_node"]
NODE = "/alpamayo_policy"


def generate_test_description():
    return bringup_description("policy")


def ros2_lifecycle(*args: str) -> str:
    """``ros2 lifecycle ...`` (no daemon: nothing stays running); its stdout."""
    ros2 = Path(sys.executable).parent / "ros2"
    result = subprocess.run([str(ros2), "lifecycle", *args, "--no-daemon"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def cli_missing() -> str:
    """Why ``ros2 lifecycle`` cannot run here ('' when it can)."""
    import importlib.util

    if importlib.util.find_spec("ros2lifecycle") is None:
        return "ros2lifecycle is not installed"
    if importlib.util.find_spec("rosidl_runtime_py") is None:
        return ("ros2lifecycle needs rosidl_runtime_py (through ros2service.api), which "
                "neither PyPI nor the ros2-upstream folder provides")
    return ""


class TestPolicyBringup(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        from alpamayo_ros import topics
        from alpamayo_ros.msg import Reasoning, Trajectory
        from alpamayo_ros.ros.qos import plan_qos
        from test.helpers.ros_harness import SyntheticSensors

        cls.probe = make_probe()
        for msg_type, topic in ((Trajectory, topics.TRAJECTORY),
                                (Reasoning, topics.REASONING)):
            cls.probe.record(msg_type, topic, plan_qos())
        cls.sensors = SyntheticSensors(cls.probe, RIG)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.probe.close()

    def test_1_plans_and_reasoning_at_the_policy_rate(self, test_args) -> None:
        from alpamayo_ros import topics

        probe = self.probe
        wait_for(lambda: len(probe.messages(topics.TRAJECTORY)) >= 3, STARTUP_TIMEOUT_S,
                 "three trajectories")
        policy_rate = float(test_args.get("rate_hz", "2.0"))
        plans = probe.messages(topics.TRAJECTORY)
        rate, span = stamp_rate_hz(plans)
        self.assertTrue(0.5 * policy_rate <= rate <= 1.2 * policy_rate, (rate, span))
        sent = set(self.sensors.camera_stamps_ns)
        self.assertTrue(all(stamp_ns(p.header) in sent for p in plans))
        reasons = {stamp_ns(r.header) for r in probe.messages(topics.REASONING)}
        self.assertGreaterEqual(len({stamp_ns(p.header) for p in plans} & reasons),
                                len(plans) - 1)

    def _check_deactivate_and_activate(self, get_state, transition) -> None:
        from alpamayo_ros import topics

        probe = self.probe
        self.assertEqual(get_state(), "active")
        transition("deactivate")
        self.assertEqual(get_state(), "inactive")
        time.sleep(2.0)  # an inference that was running when deactivated may still publish
        quiet_from = time.monotonic()
        time.sleep(3.0)
        self.assertEqual(probe.messages(topics.TRAJECTORY, quiet_from), [])
        transition("activate")
        resumed = time.monotonic()
        wait_for(lambda: len(probe.messages(topics.TRAJECTORY, resumed)) >= 2, 60.0,
                 "plans after activate")

    def test_2_lifecycle_services_drive_the_policy_node(self) -> None:
        """The services ``ros2 lifecycle get/set`` call: get_state, change_state."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState, GetState

        def get_state() -> str:
            response = call_service(GetState, f"{NODE}/get_state", GetState.Request())
            return response.current_state.label

        def transition(label: str) -> None:
            ids = {"deactivate": Transition.TRANSITION_DEACTIVATE,
                   "activate": Transition.TRANSITION_ACTIVATE}
            request = ChangeState.Request(transition=Transition(id=ids[label]))
            self.assertTrue(call_service(ChangeState, f"{NODE}/change_state", request).success)

        self._check_deactivate_and_activate(get_state, transition)

    def test_3_ros2_lifecycle_command_drives_the_policy_node(self) -> None:
        """The real ``ros2 lifecycle get/set`` command line."""
        missing = cli_missing()
        if missing:
            self.skipTest(missing)

        def get_state() -> str:
            return ros2_lifecycle("get", NODE).split()[0]  # "active [3]"

        def transition(label: str) -> None:
            self.assertIn("Transitioning successful", ros2_lifecycle("set", NODE, label))

        self._check_deactivate_and_activate(get_state, transition)


@launch_testing.post_shutdown_test()
class TestPolicyShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info, proc_output) -> None:
        check_clean_exit(self, proc_info, proc_output, EXECUTABLES)
