"""launch_testing: ``vehicle.launch.py`` (camera sync + policy + controller on live sensors).

The test process plays the vehicle: 7 synthetic cameras at 10 Hz and odometry at 50 Hz
(test/helpers/ros_harness.py). Asserted while it runs: plans at the policy rate stamped
with the cameras' times, commands and safety status at 50 Hz. After the shutdown: every
process exited with 0.
"""

from __future__ import annotations

import time
import unittest

import launch_testing

from test.launch_tests.common import (
    RIG,
    STARTUP_TIMEOUT_S,
    bringup_description,
    check_clean_exit,
    make_probe,
    stamp_ns,
    stamp_rate_hz,
    wait_for,
)

EXECUTABLES = ["policy_node", "controller_node"]


def generate_test_description():
    return bringup_description("vehicle")


class TestVehicleBringup(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        from alpamayo_ros import topics
        from alpamayo_ros.msg import ControlCommand, SafetyStatus, Trajectory
        from alpamayo_ros.ros.qos import plan_qos
        from test.helpers.ros_harness import SyntheticSensors

        cls.probe = make_probe()
        for msg_type, topic in ((Trajectory, topics.TRAJECTORY),
                                (ControlCommand, topics.CONTROL_COMMAND),
                                (SafetyStatus, topics.SAFETY_STATUS)):
            cls.probe.record(msg_type, topic, plan_qos())
        cls.sensors = SyntheticSensors(cls.probe, RIG)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.probe.close()

    def test_topics_and_rates(self, test_args) -> None:
        from alpamayo_ros import topics

        probe = self.probe
        wait_for(lambda: len(probe.messages(topics.TRAJECTORY)) >= 2, STARTUP_TIMEOUT_S,
                 "two trajectories")
        start = time.monotonic()
        time.sleep(4.0)
        for topic in (topics.CONTROL_COMMAND, topics.SAFETY_STATUS):
            rate, span = stamp_rate_hz(probe.messages(topic, start))
            self.assertTrue(span > 1.0 and 45.0 <= rate <= 55.0, (topic, rate, span))
        policy_rate = float(test_args.get("rate_hz", "2.0"))
        plans = probe.messages(topics.TRAJECTORY)
        rate, span = stamp_rate_hz(plans)
        self.assertTrue(0.5 * policy_rate <= rate <= 1.2 * policy_rate, (rate, span))
        sent = set(self.sensors.camera_stamps_ns)
        self.assertTrue(all(stamp_ns(p.header) in sent for p in plans))  # camera times


@launch_testing.post_shutdown_test()
class TestVehicleShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info, proc_output) -> None:
        check_clean_exit(self, proc_info, proc_output, EXECUTABLES)
