"""Test-side ROS helpers: node processes, an in-process probe node, synthetic sensors.

- :func:`start_node_process` / :func:`stop_process`: run a node module as a real child
  process (``python -m ...``) in the test's private DDS domain, with its log in a file.
- :class:`Probe`: an rclpy node in the test process (own context, executor thread) that
  records what arrives on topics and publishes test inputs. A recording subscription keeps
  ``RECORD_DEPTH`` messages queued: the test process itself pauses (a full garbage
  collection of the suite's heap measured 260-290 ms), and with the nodes' depth of 5 the
  DDS reader dropped the commands of such a pause, which the gap checks then blamed on
  the controller.
- :class:`SyntheticSensors`: cameras (same stamp per tick) + odometry on a straight road,
  published from the probe, remembering every camera stamp it sent.
"""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

REPO_ROOT = Path(__file__).resolve().parents[2]
RECORD_DEPTH = 200  # 4 s of a 50 Hz topic, as the demo's and the soak's listeners


def recording_qos(qos: Any) -> Any:
    """``qos`` with a keep-last history of at least ``RECORD_DEPTH`` (keep-all as it is)."""
    from rclpy.qos import HistoryPolicy, QoSProfile

    if isinstance(qos, int):
        qos = QoSProfile(depth=qos)
    if qos.history == HistoryPolicy.KEEP_ALL or qos.depth >= RECORD_DEPTH:
        return qos
    deep = copy.copy(qos)
    deep.depth = RECORD_DEPTH
    return deep


def start_node_process(module: str, ros_args: list[str], env: dict[str, str], log: Path,
                       extra_args: list[str] | None = None) -> subprocess.Popen:
    """``python -m module [extra] --ros-args ...`` with stdout/stderr into ``log``."""
    cmd = [sys.executable, "-m", module, *(extra_args or [])]
    if ros_args:
        cmd += ["--ros-args", *ros_args]
    handle = open(log, "w")  # noqa: SIM115 - closed by the process lifetime
    return subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                            cwd=REPO_ROOT)


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT, then SIGKILL after ``timeout_s``; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    return proc.returncode


class Probe:
    """An rclpy node in the test process, spinning on its own thread."""

    def __init__(self, domain_id: int, name: str = "alpamayo_test_probe") -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[tuple[float, Any]]] = {}
        self._lock = threading.Lock()
        # Entities are created and destroyed on the spin thread, between two waits:
        # destroying one the executor is waiting on kills that thread with InvalidHandle
        # (and the probe would silently stop receiving). A guard condition wakes the wait.
        self._pending: list[tuple[Callable[[], Any], threading.Event, dict[str, Any]]] = []
        self._wake = self.node.create_guard_condition(lambda: None)
        self._stop = False
        self._spin_error: BaseException | None = None
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
                self._run_pending()
            except Exception as exc:  # the context went away while closing
                if not self._stop:
                    self._spin_error = exc
                    raise

    def _run_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for call, done, box in pending:
            try:
                box["value"] = call()
            except Exception as exc:  # handed back to the caller
                box["error"] = exc
            done.set()

    def _on_spin_thread(self, call: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        done, box = threading.Event(), {}
        with self._lock:
            self._pending.append((call, done, box))
        self._wake.trigger()
        if not done.wait(timeout_s):
            self._check_spinning()
            raise AssertionError(f"the probe's spin thread did not run {call} in {timeout_s} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _check_spinning(self) -> None:
        if self._spin_error is not None:
            raise AssertionError(f"the probe stopped spinning: {self._spin_error!r}")

    def record(self, msg_type: type, topic: str, qos: Any) -> None:
        """Keep every message arriving on ``topic`` with its arrival time."""
        self.received.setdefault(topic, [])

        def store(msg: Any) -> None:
            with self._lock:
                self.received[topic].append((time.monotonic(), msg))

        self.subscribe(msg_type, topic, store, recording_qos(qos))

    def subscribe(self, msg_type: type, topic: str, callback: Callable[[Any], None],
                  qos: Any) -> Any:
        """A subscription that :meth:`unsubscribe` can remove while the probe spins."""
        return self._on_spin_thread(
            lambda: self.node.create_subscription(msg_type, topic, callback, qos))

    def unsubscribe(self, subscription: Any) -> None:
        """Destroy ``subscription`` between two executor waits."""
        self._on_spin_thread(lambda: self.node.destroy_subscription(subscription))

    def messages(self, topic: str, since: float = 0.0) -> list[Any]:
        """Messages received on ``topic`` after monotonic time ``since``."""
        self._check_spinning()
        with self._lock:
            return [m for t, m in self.received.get(topic, []) if t >= since]

    def arrivals(self, topic: str, since: float = 0.0) -> list[float]:
        """Arrival times on ``topic`` after ``since``."""
        self._check_spinning()
        with self._lock:
            return [t for t, _ in self.received.get(topic, []) if t >= since]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float,
                 proc: subprocess.Popen | None = None, log: Path | None = None) -> bool:
        """Poll ``predicate`` until true or timeout; fail early if ``proc`` died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            if proc is not None and proc.poll() is not None:
                text = log.read_text() if log is not None and log.exists() else ""
                raise AssertionError(f"node process exited ({proc.returncode}):\n{text}")
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self._stop = True
        self._thread.join(timeout=30.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class SyntheticSensors:
    """Cameras + odometry of an ego driving straight along +x at ``speed_mps``."""

    def __init__(self, probe: Probe, cameras: list[str], width_px: int = 96,
                 height_px: int = 60, camera_rate_hz: float = 10.0,
                 odometry_rate_hz: float = 50.0, speed_mps: float = 8.0) -> None:
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Image

        from alpamayo_ros import topics
        from alpamayo_ros.ros.qos import sensor_qos

        self.probe, self.cameras = probe, cameras
        self.width_px, self.height_px, self.speed_mps = width_px, height_px, speed_mps
        node = probe.node
        self._image_pubs = {c: node.create_publisher(Image, topics.image_topic(c, False),
                                                     sensor_qos()) for c in cameras}
        self._odom_pub = node.create_publisher(Odometry, topics.ODOMETRY, sensor_qos())
        self.camera_stamps_ns: list[int] = []
        self.corrupt_next: dict[str, int] = {}
        self.silenced: set[str] = set()
        self._t0_ns = self._now_ns()
        self._rng = np.random.default_rng(0)
        node.create_timer(1.0 / camera_rate_hz, self._publish_cameras)
        node.create_timer(1.0 / odometry_rate_hz, self._publish_odometry)

    def _now_ns(self) -> int:
        return self.probe.node.get_clock().now().nanoseconds

    def position_at_ns(self, stamp_ns: int) -> float:
        """Map x of the ego at a probe-clock stamp (odometry uses the same motion)."""
        return self.speed_mps * (stamp_ns - self._t0_ns) / 1e9

    def _publish_cameras(self) -> None:
        from std_msgs.msg import Header

        from alpamayo_ros.ros.conversions import time_from_ns
        from alpamayo_ros.ros.images import array_to_image

        stamp_ns = self._now_ns()
        img = self._rng.integers(0, 255, (self.height_px, self.width_px, 3), dtype=np.uint8)
        for cam, pub in self._image_pubs.items():
            if cam in self.silenced:
                continue
            msg = array_to_image(img, "rgb8", Header(stamp=time_from_ns(stamp_ns),
                                                     frame_id=cam))
            if self.corrupt_next.get(cam, 0) > 0:
                self.corrupt_next[cam] -= 1
                msg.data = bytes(msg.data)[: len(msg.data) // 2]  # truncated buffer
            pub.publish(msg)
        self.camera_stamps_ns.append(stamp_ns)

    def _publish_odometry(self) -> None:
        from nav_msgs.msg import Odometry

        from alpamayo_ros.ros.conversions import time_from_ns

        stamp_ns = self._now_ns()
        msg = Odometry()
        msg.header.stamp = time_from_ns(stamp_ns)
        msg.header.frame_id, msg.child_frame_id = "map", "base_link"
        msg.pose.pose.position.x = self.position_at_ns(stamp_ns)
        msg.pose.pose.orientation.w = 1.0
        msg.twist.twist.linear.x = self.speed_mps
        self._odom_pub.publish(msg)


def domain_id(env: dict[str, str]) -> int:
    """The private ROS_DOMAIN_ID of ``env``."""
    return int(env["ROS_DOMAIN_ID"])
