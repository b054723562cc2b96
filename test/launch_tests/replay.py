"""launch_testing: ``replay.launch.py`` (bag player + camera sync + policy + controller).

The bag comes from :func:`test.launch_tests.common.write_replay_bag` (``bag:=DIR
compressed:=true``), long enough that the tests end before it does. Asserted while it
runs: /clock carries the bag's time, plans are stamped with the bag's camera times at the
policy rate, commands and safety status at 50 Hz of bag time. After the shutdown: every
process, the player included, exited with 0.
"""

from __future__ import annotations

import time
import unittest

import launch_testing

from test.launch_tests.common import (
    BAG_START_NS,
    CAMERA_PERIOD_NS,
    STARTUP_TIMEOUT_S,
    bringup_description,
    check_clean_exit,
    make_probe,
    stamp_ns,
    stamp_rate_hz,
    wait_for,
)

EXECUTABLES = ["bag_player", "policy_node", "controller_node"]


def generate_test_description():
    return bringup_description("replay")


class TestReplayBringup(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        from rosgraph_msgs.msg import Clock

        from alpamayo_ros import topics
        from alpamayo_ros.msg import ControlCommand, SafetyStatus, Trajectory
        from alpamayo_ros.ros.qos import clock_qos, plan_qos

        cls.probe = make_probe()
        cls.probe.record(Clock, "/clock", clock_qos())
        for msg_type, topic in ((Trajectory, topics.TRAJECTORY),
                                (ControlCommand, topics.CONTROL_COMMAND),
                                (SafetyStatus, topics.SAFETY_STATUS)):
            cls.probe.record(msg_type, topic, plan_qos())

    @classmethod
    def tearDownClass(cls) -> None:
        cls.probe.close()

    def test_topics_and_rates_on_the_bag_clock(self, test_args) -> None:
        from alpamayo_ros import topics

        probe = self.probe
        wait_for(lambda: len(probe.messages(topics.TRAJECTORY)) >= 2, STARTUP_TIMEOUT_S,
                 "two trajectories")
        start = time.monotonic()
        time.sleep(4.0)
        clock = [c.clock.sec * 1_000_000_000 + c.clock.nanosec
                 for c in probe.messages("/clock", start)]
        self.assertTrue(clock and clock[0] >= BAG_START_NS, clock[:1])
        self.assertEqual(clock, sorted(clock))
        # At rate 1 the bag's time runs with the wall clock.
        self.assertAlmostEqual((clock[-1] - clock[0]) / 1e9, 4.0, delta=1.5)
        for topic in (topics.CONTROL_COMMAND, topics.SAFETY_STATUS):
            msgs = probe.messages(topic, start)
            rate, span = stamp_rate_hz(msgs)
            self.assertTrue(span > 1.0 and 45.0 <= rate <= 55.0, (topic, rate, span))
            self.assertGreaterEqual(stamp_ns(msgs[0].header), BAG_START_NS)  # bag time
        policy_rate = float(test_args.get("rate_hz", "2.0"))
        plans = probe.messages(topics.TRAJECTORY)
        rate, span = stamp_rate_hz(plans)
        self.assertTrue(0.5 * policy_rate <= rate <= 1.2 * policy_rate, (rate, span))
        for plan in plans:  # the bag's camera stamps
            self.assertEqual((stamp_ns(plan.header) - BAG_START_NS) % CAMERA_PERIOD_NS, 0)


@launch_testing.post_shutdown_test()
class TestReplayShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info, proc_output) -> None:
        check_clean_exit(self, proc_info, proc_output, EXECUTABLES)
