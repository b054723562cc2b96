"""Camera synchronization node: N cameras + odometry in, synchronized history out.

Subscribes ``/sensing/camera/<name>/image_raw`` (or ``.../compressed``) for every name in
``camera_names``, their ``camera_info`` and the ego odometry, all with the shared sensor
QoS, and groups frames by approximate time with message_filters' semantics. The
``sync_backend`` parameter picks who groups them: ``message_filters``'
``ApproximateTimeSynchronizer`` (fed through one ``SimpleFilter`` per camera, after each
frame is validated), or the package's own
:class:`~alpamayo_ros.sync.synchronizer.ApproximateTimeSynchronizer` (same semantics,
checked against message_filters in test_sync_synchronizer.py); ``auto`` takes
message_filters when it is importable. The drop/skew/staleness accounting
(:class:`~alpamayo_ros.sync.monitor.SyncMonitor`) sees only the frames offered and the sets
emitted, so it is the same for both (message_filters itself discards frames silently).
It keeps the model's multi-frame history and the odometry buffer, and publishes its
health (dropped sets, skew, per-camera staleness, backend) on ``/diagnostics``.

The policy node runs in the same process and reads :meth:`CameraSyncNode.snapshot`
directly (no image is copied or re-published between them, like a composed container
with intra-process communication); run on its own (``ros2 run alpamayo_ros
camera_sync_node``) it is a synchronization monitor for a vehicle or a replayed bag.

Bad input: an image whose size, step or encoding is inconsistent, or with more than
``max_image_bytes`` of data, is dropped at once and counted per camera (``<camera>/
malformed``; raw images are fully validated on arrival; compressed ones by format, magic
bytes and end marker, so a truncated jpeg/png never reaches the synchronizer, and
completely when decoded for the model); odometry with NaN is rejected by the buffer and
counted; a stamp far behind the newest (bag loop, simulator restart) resets the
synchronizer, history and odometry instead of mixing two timelines.

Frozen cameras: every frame's bytes are digested (:func:`~alpamayo_ros.sync.frames.
frame_digest`); with ``frozen_camera_timeout_s`` > 0 (the vehicle bring-up; 0, off, by
default: the repository's image sources are noiseless) a camera repeating the same bytes
that long is refused until its content changes, so no set is emitted with it and the
policy plans nothing from it (the controller then stops on its policy timeout);
``/diagnostics`` WARNs naming it. Sets that stall (a camera beyond ``slop_s``) are WARNed
too, naming the cameras out of slop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from alpamayo_ros import topics
from alpamayo_ros.ros import diagnostics
from alpamayo_ros.ros.conversions import ns_from_time, odometry_to_pose
from alpamayo_ros.ros.images import (
    ImageConversionError,
    compressed_to_rgb,
    image_to_array,
    image_to_rgb,
)
from alpamayo_ros.ros.params import declare_config
from alpamayo_ros.ros.qos import latched_qos, sensor_qos
from alpamayo_ros.sync import CameraSync, HistoryWindow, SyncConfig
from alpamayo_ros.sync.config import CameraInputConfig
from alpamayo_ros.sync.frames import compressed_integrity_error, frame_digest
from alpamayo_ros.sync.odometry import EgoHistory, OdometryBuffer
from alpamayo_ros.sync.synchronizer import (
    ApproximateTimeSynchronizer,
    SetCallback,
    SyncedSet,
    Synchronizer,
)

try:  # the real thing where it is installed (vehicles); absent from the pip wheels
    import message_filters
except ImportError:  # depends on the installation
    message_filters = None

S_TO_NS = 1_000_000_000


class MessageFiltersSynchronizer:
    """message_filters' ApproximateTimeSynchronizer behind the core's ``Synchronizer``.

    Each input is a ``message_filters.SimpleFilter``; an item travels wrapped with its
    stamp as ``header.stamp`` (an rclpy ``Time``, which message_filters reads as is), and
    emitted sets are unwrapped into :class:`SyncedSet`. Set callbacks run inside
    message_filters' lock, during the ``add`` that completed the set.
    """

    class _Stamped:
        __slots__ = ("header", "item")

        def __init__(self, stamp_ns: int, item: Any) -> None:
            self.header = SimpleNamespace(stamp=Time(nanoseconds=stamp_ns))
            self.item = item

    def __init__(self, num_inputs: int, queue_size: int, slop_s: float) -> None:
        if message_filters is None:
            raise RuntimeError("sync_backend 'message_filters': the message_filters package "
                               "is not importable (use 'builtin' or 'auto')")
        self._inputs = [message_filters.SimpleFilter() for _ in range(num_inputs)]
        self._sync = message_filters.ApproximateTimeSynchronizer(
            self._inputs, queue_size, slop_s)
        self._sync.registerCallback(self._on_set)
        self._callbacks: list[SetCallback] = []
        self._emitted = threading.local()

    def register_callback(self, callback: SetCallback) -> None:
        """Call ``callback(synced_set)`` for every emitted set."""
        self._callbacks.append(callback)

    def add(self, input_index: int, stamp_ns: int, item: Any) -> SyncedSet | None:
        """Offer one item; return the set it completed (also sent to callbacks) or None."""
        if not 0 <= input_index < len(self._inputs):
            raise IndexError(f"input_index {input_index} outside 0..{len(self._inputs) - 1}")
        self._emitted.value = None
        self._inputs[input_index].signalMessage(self._Stamped(int(stamp_ns), item))
        emitted, self._emitted.value = self._emitted.value, None
        return emitted

    def _on_set(self, *wrapped: Any) -> None:
        synced = SyncedSet(tuple(w.header.stamp.nanoseconds for w in wrapped),
                           tuple(w.item for w in wrapped))
        self._emitted.value = synced
        for callback in self._callbacks:
            callback(synced)


def resolve_backend(requested: str) -> str:
    """``message_filters`` or ``builtin`` for a ``sync_backend`` parameter value."""
    if requested == "auto":
        return "message_filters" if message_filters is not None else "builtin"
    if requested == "message_filters" and message_filters is None:
        raise ValueError("parameter 'sync_backend' is 'message_filters' but the "
                         "message_filters package is not importable; use 'builtin' or 'auto'")
    return requested


def decode_frame(msg: Image | CompressedImage) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a camera message; raises ImageConversionError."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


@dataclass(frozen=True)
class SyncSnapshot:
    """What the policy reads: the history window plus the camera_info K seen so far."""

    window: HistoryWindow
    camera_names: tuple[str, ...]
    intrinsics: dict[str, np.ndarray]


class CameraSyncNode(Node):
    """Synchronizes cameras, keeps history and odometry, reports health."""

    def __init__(self, node_name: str = "camera_sync", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.sync_config = declare_config(self, SyncConfig)
        self.input_config = declare_config(self, CameraInputConfig)
        self._lock = threading.Lock()
        self._set_listeners: list[Callable[[int], None]] = []
        self._names = self.sync_config.camera_names
        self.backend = resolve_backend(self.input_config.sync_backend)
        self._core = self._new_core()
        self.odometry = OdometryBuffer(self.input_config.odometry_horizon_s)
        self._newest_stamp_ns: int | None = None
        self._intrinsics: dict[str, np.ndarray] = {}
        self.resets = 0
        msg_type = CompressedImage if self.input_config.compressed else Image
        self._subs: list[Any] = []
        for index, name in enumerate(self._names):
            self._subs.append(self.create_subscription(
                msg_type, topics.image_topic(name, self.input_config.compressed),
                lambda msg, i=index: self._on_image(i, msg), sensor_qos()))
        for name in self._names:
            self._subs.append(self.create_subscription(
                CameraInfo, topics.camera_info_topic(name),
                lambda msg, n=name: self._on_info(n, msg), latched_qos()))
        self._subs.append(self.create_subscription(
            Odometry, topics.ODOMETRY, self._on_odometry, sensor_qos()))
        self._diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.create_timer(self.input_config.report_period_s, self._publish_report)
        kind = "compressed" if self.input_config.compressed else "raw"
        self.get_logger().info(f"synchronizing {len(self._names)} {kind} cameras "
                               f"({self.backend}, slop {self.sync_config.slop_s} s)")

    # ------------------------------------------------------------------ inputs
    def _new_core(self) -> CameraSync:
        """A fresh synchronizer (of the selected backend), monitor and history."""
        cfg = self.sync_config
        make = (MessageFiltersSynchronizer if self.backend == "message_filters"
                else ApproximateTimeSynchronizer)
        synchronizer: Synchronizer = make(len(cfg.camera_names), cfg.queue_size, cfg.slop_s)
        return CameraSync(cfg, synchronizer)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _check_clock_jump(self, stamp_ns: int) -> None:
        """Reset everything when a stamp goes far back in time (bag loop, sim restart)."""
        jump_ns = int(self.input_config.clock_jump_reset_s * S_TO_NS)
        if self._newest_stamp_ns is not None and stamp_ns < self._newest_stamp_ns - jump_ns:
            self.get_logger().warning(
                f"camera time jumped back by {(self._newest_stamp_ns - stamp_ns) / 1e9:.2f} s: "
                "resetting synchronizer, history and odometry")
            self._core = self._new_core()
            self.odometry.clear()
            self._newest_stamp_ns = None
            self.resets += 1
        if self._newest_stamp_ns is None or stamp_ns > self._newest_stamp_ns:
            self._newest_stamp_ns = stamp_ns

    def _invalid_reason(self, msg: Image | CompressedImage) -> str | None:
        """Why a frame is refused on arrival, or None (cheap: no decoding)."""
        if len(msg.data) > self.input_config.max_image_bytes:
            return (f"{len(msg.data)} B of data exceed max_image_bytes "
                    f"({self.input_config.max_image_bytes})")
        if isinstance(msg, CompressedImage):
            return compressed_integrity_error(msg.format, msg.data)
        try:
            image_to_array(msg)  # size/step/encoding checks, zero copy
        except ImageConversionError as exc:
            return str(exc)
        return None

    def _valid(self, index: int, msg: Image | CompressedImage) -> bool:
        reason = self._invalid_reason(msg)
        if reason is None:
            return True
        with self._lock:
            self._core.reject(index, self._now_ns())
        self.get_logger().warning(f"dropping malformed image from {self._names[index]}: "
                                  f"{reason}", throttle_duration_sec=5.0)
        return False

    def add_set_listener(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(stamp_ns)`` after each completed frame set.

        It runs on the executor thread (the policy node's frame trigger).
        """
        self._set_listeners.append(callback)

    def _on_image(self, index: int, msg: Image | CompressedImage) -> None:
        if not self._valid(index, msg):
            return
        stamp_ns = ns_from_time(msg.header.stamp)
        digest = frame_digest(msg.data)
        with self._lock:
            self._check_clock_jump(stamp_ns)
            latest = self.odometry.latest
            speed = latest.speed_mps if latest is not None else None
            completed = self._core.add(index, stamp_ns, msg, self._now_ns(), digest, speed)
        if completed is not None:
            for callback in self._set_listeners:
                callback(completed.stamp_ns)

    def _on_info(self, name: str, msg: CameraInfo) -> None:
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        if np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0:
            with self._lock:
                self._intrinsics[name] = k
        else:
            self.get_logger().warning(f"ignoring camera_info of {name}: invalid K {msg.k}",
                                      throttle_duration_sec=5.0)

    def _on_odometry(self, msg: Odometry) -> None:
        pose = odometry_to_pose(msg)
        with self._lock:
            self.odometry.add(pose)

    # ------------------------------------------------------------------ outputs
    def snapshot(self) -> SyncSnapshot | None:
        """The current history window (None until it is ready) and the intrinsics."""
        with self._lock:
            window = self._core.window()
            if window is None:
                return None
            return SyncSnapshot(window, self._names, dict(self._intrinsics))

    def ego_history(self, stamp_ns: int) -> EgoHistory | None:
        """The model's ego history at a camera time (None without odometry there)."""
        with self._lock:
            return self.odometry.history_at(stamp_ns)

    def status(self) -> Any:
        """Current diagnostics status (also published every ``report_period_s``)."""
        with self._lock:
            report = self._core.report(self._now_ns())
            extra = {"backend": self.backend, "resets": self.resets,
                     "odometry_rejected_non_finite": self.odometry.rejected_non_finite,
                     "odometry_rejected_out_of_order": self.odometry.rejected_out_of_order}
        return diagnostics.sync_status(report, self.get_name(), extra)

    def _publish_report(self) -> None:
        self._diag_pub.publish(diagnostics.array(self._now_ns(), [self.status()]))


def main(args: list[str] | None = None) -> None:
    """``ros2 run alpamayo_ros camera_sync_node``: synchronization monitor on its own."""
    from alpamayo_ros.ros.runner import run_node

    run_node(CameraSyncNode, args)


if __name__ == "__main__":
    main()
