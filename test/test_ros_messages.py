"""Every custom message crosses a process boundary over a real rclpy/Fast DDS graph."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import alpamayo_ros.msg as alpamayo_msgs
from test.helpers.message_factory import populated

MESSAGE_TYPES = sorted(
    name for name in dir(alpamayo_msgs)
    if isinstance(getattr(alpamayo_msgs, name), type) and not name.startswith("_")
)


def test_every_msg_file_is_generated() -> None:
    from pathlib import Path

    files = {p.stem for p in (Path(__file__).parents[1] / "msg").glob("*.msg")}
    assert files == set(MESSAGE_TYPES)


@pytest.mark.ros
def test_two_processes_exchange_every_custom_message(ros_env: dict[str, str]) -> None:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    echo = subprocess.Popen(
        [sys.executable, "-m", "test.helpers.echo_node", *MESSAGE_TYPES],
        env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    import os

    previous_domain = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = ros_env["ROS_DOMAIN_ID"]
    rclpy.init()
    node = rclpy.create_node("alpamayo_echo_client")
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        sent = {name: populated(getattr(alpamayo_msgs, name), salt=i)
                for i, name in enumerate(MESSAGE_TYPES)}
        received: dict[str, object] = {}
        pubs = {name: node.create_publisher(type(msg), f"/echo/in/{name}", qos)
                for name, msg in sent.items()}
        subs = [node.create_subscription(type(msg), f"/echo/out/{name}",
                                         lambda m, n=name: received.setdefault(n, m), qos)
                for name, msg in sent.items()]
        deadline = time.monotonic() + 60.0
        while len(received) < len(sent) and time.monotonic() < deadline:
            assert echo.poll() is None, f"echo process died:\n{echo.stdout.read()}"
            for name, pub in pubs.items():
                if name not in received:
                    pub.publish(sent[name])
            rclpy.spin_once(node, timeout_sec=0.2)
        missing = sorted(set(sent) - set(received))
        assert not missing, f"no echo for {missing}"
        for name, msg in sent.items():
            assert received[name] == msg, f"{name} changed in transit"
        assert len(subs) == len(MESSAGE_TYPES) >= 10
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if previous_domain is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = previous_domain
        echo.terminate()
        echo.wait(timeout=10)
