"""launch_testing: ``simulation.launch.py`` (simulator + camera sync + policy + controller).

Asserted while it runs: cameras at 10 Hz, plans at the policy rate stamped on the camera
grid, commands and safety status at 50 Hz (rates from the stamps: every node runs on the
simulator's /clock), odometry. After the shutdown: every process exited with 0.
"""

from __future__ import annotations

import time
import unittest

import launch_testing

from test.launch_tests.common import (
    STARTUP_TIMEOUT_S,
    bringup_description,
    check_clean_exit,
    make_probe,
    stamp_ns,
    stamp_rate_hz,
    wait_for,
)

EXECUTABLES = ["sim_node", "policy_node", "controller_node"]


def generate_test_description():
    return bringup_description("simulation")


class TestSimulationBringup(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Image

        from alpamayo_ros import topics
        from alpamayo_ros.msg import ControlCommand, SafetyStatus, Trajectory
        from alpamayo_ros.ros.qos import plan_qos, sensor_qos

        cls.probe = make_probe()
        cls.probe.record(Image, topics.image_topic("front_wide", False), sensor_qos())
        cls.probe.record(Odometry, topics.ODOMETRY, sensor_qos())
        for msg_type, topic in ((Trajectory, topics.TRAJECTORY),
                                (ControlCommand, topics.CONTROL_COMMAND),
                                (SafetyStatus, topics.SAFETY_STATUS)):
            cls.probe.record(msg_type, topic, plan_qos())

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
        cameras = probe.messages(topics.image_topic("front_wide", False), start)
        rate, span = stamp_rate_hz(cameras)
        self.assertTrue(span > 1.0 and 8.0 <= rate <= 12.0, (rate, span))
        for topic in (topics.CONTROL_COMMAND, topics.SAFETY_STATUS):
            rate, span = stamp_rate_hz(probe.messages(topic, start))
            self.assertTrue(span > 1.0 and 45.0 <= rate <= 55.0, (topic, rate, span))
        self.assertGreater(len(probe.messages(topics.ODOMETRY, start)), 20)
        # Plans at the policy rate (sim time), each stamped with a 10 Hz camera tick.
        policy_rate = float(test_args.get("rate_hz", "2.0"))
        plans = probe.messages(topics.TRAJECTORY)
        rate, span = stamp_rate_hz(plans)
        self.assertTrue(0.5 * policy_rate <= rate <= 1.2 * policy_rate, (rate, span))
        origin = min(stamp_ns(m.header) for m in cameras)
        for plan in plans:
            self.assertEqual((stamp_ns(plan.header) - origin) % 100_000_000, 0)


@launch_testing.post_shutdown_test()
class TestSimulationShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info, proc_output) -> None:
        check_clean_exit(self, proc_info, proc_output, EXECUTABLES)
