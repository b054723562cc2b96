"""Writing rosbag2 (MCAP) bags from serialized messages, with ``rosbags``.

Pure (no rclpy): the recorder node hands over each message's CDR bytes as received;
:class:`BagWriter` stores them unchanged with their receive time as log time, together
with each topic's message definition (the ROS 2 Kilted definitions of ``rosbags`` plus
this package's ``msg/*.msg``, see :func:`alpamayo_ros.data.bag.make_typestore`) and the
QoS its publishers offered, so the bag is self-describing and ``ros2 bag play``
republishes latched topics as latched.

Files are rosbag2 metadata version 9 with MCAP storage (what ``ros2 bag record -s mcap``
writes on Jazzy and Kilted).

Crash safety: ``rosbags`` keeps the open MCAP chunk in memory until it holds 1 MiB, so a
recorder killed with SIGKILL would lose everything since the last full chunk (at a few
kB/s: the whole recording). :meth:`BagWriter.flush` closes the open chunk and hands the
file's buffer to the operating system; the recorder node calls it every
``flush_period_s``, which bounds what a SIGKILL loses to that period. Such a bag has no
summary, footer or ``metadata.yaml``: :func:`alpamayo_ros.bags.recover.recover_bag`
(``alpamayo recover BAG``) turns its complete chunks into a bag again. Not ``fsync``ed:
a power cut may lose what the operating system had not yet written.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Sequence
from pathlib import Path

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer

from alpamayo_ros.bags.replay import QosSpec
from alpamayo_ros.data.bag import make_typestore

ROSBAG2_VERSION = 9


class UnknownMessageType(LookupError):
    """A topic's type has no message definition in the typestore."""


def default_bag_dir(now: datetime.datetime | None = None) -> Path:
    """``rosbag2_YYYY_MM_DD-HH_MM_SS`` in the working directory (``ros2 bag record``'s name)."""
    now = now or datetime.datetime.now()
    return Path(now.strftime("rosbag2_%Y_%m_%d-%H_%M_%S"))


def subscription_qos(offered: Sequence[QosSpec]) -> QosSpec:
    """The QoS to record a topic with, given what its publishers offer (rosbag2's rule).

    Reliable only when every publisher is reliable (a reliable subscription does not
    match a best-effort publisher); transient-local only when every publisher is (so a
    latched topic's last message is recorded even when it was sent before we joined).
    """
    if not offered:
        return QosSpec()
    reliable = all(q.reliability == "reliable" for q in offered)
    latched = all(q.durability == "transient_local" for q in offered)
    return QosSpec("reliable" if reliable else "best_effort",
                   "transient_local" if latched else "volatile",
                   max(RECORD_MIN_DEPTH, max(q.depth for q in offered)))


# Subscription queue of the recorder: deep enough to ride out a ~1 s stall of the
# recording process at 100 Hz without the reader dropping (design choice).
RECORD_MIN_DEPTH = 100


def _rosbags_qos(spec: QosSpec) -> Qos:
    infinite = QosTime(0x7FFFFFFF, 0xFFFFFFFF)  # rmw's "infinite" durations
    return Qos(QosHistory.KEEP_LAST, spec.depth,
               QosReliability.RELIABLE if spec.reliability == "reliable"
               else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if spec.durability == "transient_local"
               else QosDurability.VOLATILE,
               infinite, infinite, QosLiveliness.AUTOMATIC, infinite, False)


class BagWriter:
    """A rosbag2 MCAP directory being written; thread-safe; close it exactly once."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; a recording needs a new directory")
        self._store = make_typestore()
        self._writer = Writer(self.path, version=ROSBAG2_VERSION,
                              storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    def known_type(self, msgtype: str) -> bool:
        """Whether ``msgtype`` (``pkg/msg/Type``) can be recorded."""
        return msgtype in self._store.types

    def add_topic(self, topic: str, msgtype: str,
                  qos: QosSpec | Sequence[QosSpec] | None = None) -> None:
        """Declare a topic before writing to it, with the QoS its publishers offer."""
        offered = [qos] if isinstance(qos, QosSpec) else list(qos or [])
        if not self.known_type(msgtype):
            raise UnknownMessageType(f"{topic}: no message definition for {msgtype}")
        with self._lock:
            if self.closed or topic in self._connections:
                return
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self._store,
                offered_qos_profiles=[_rosbags_qos(q) for q in offered])
            self.counts[topic] = 0

    def write(self, topic: str, log_ns: int, raw: bytes) -> bool:
        """Store one serialized message; False once closed (late callbacks)."""
        with self._lock:
            if self.closed:
                return False
            self._writer.write(self._connections[topic], int(log_ns), bytes(raw))
            self.counts[topic] += 1
            return True

    def flush(self) -> bool:
        """Close the open chunk and flush it to the OS, so that a killed process keeps it.

        Returns whether a chunk was written (False when it held no message or the bag is
        closed). Uses ``rosbags``' MCAP writer's ``close_chunk`` and file object.
        """
        with self._lock:
            storage = None if self.closed else self._writer.storage
            if storage is None or not storage.chunk.msgs:
                return False
            storage.close_chunk()
            storage.bio.flush()
            return True

    def close(self) -> None:
        """Finish the MCAP file and write ``metadata.yaml`` (idempotent)."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._writer.close()
