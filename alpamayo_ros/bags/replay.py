"""Reading rosbag2 bags for playback: topics, QoS, messages in time order, pacing.

Pure (``rosbags``, no rclpy). The player node publishes the serialized CDR bytes as they
are stored, so headers and stamps are exactly those of the bag and any message type
works whose Python class the graph has, the package's own ``alpamayo_ros/msg/*``
included. :class:`PlaybackClock` maps bag time to wall time at a rate and back (for
``/clock``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import Connection, ConnectionExtRosbag2
from rosbags.rosbag2 import Reader

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class QosSpec:
    """The QoS of a topic in the terms rosbag2 stores (and rclpy takes)."""

    reliability: str = "reliable"  # | "best_effort"
    durability: str = "volatile"  # | "transient_local"
    depth: int = 10


@dataclass(frozen=True)
class BagTopic:
    """One topic of a bag."""

    name: str
    msgtype: str  # "pkg/msg/Type"
    count: int
    qos: QosSpec | None  # as recorded (None when the bag has no offered QoS)


@dataclass(frozen=True)
class BagInfo:
    """What is in a bag."""

    path: Path
    topics: dict[str, BagTopic]
    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        """Time between the first and last message."""
        return (self.end_ns - self.start_ns) / NS_PER_S


@dataclass(frozen=True)
class BagMessage:
    """One stored message: topic, type, log time and CDR bytes."""

    topic: str
    msgtype: str
    log_ns: int
    raw: bytes


def _bag_path(path: str | Path) -> Path:
    """The bag directory for a directory or one of its storage files."""
    p = Path(path)
    if not str(path):
        raise ValueError("bag must name a rosbag2 directory")
    if p.is_file() and p.suffix in (".mcap", ".db3"):
        p = p.parent
    if not (p / "metadata.yaml").is_file():
        hint = (f"; it holds {', '.join(f.name for f in p.glob('*.mcap'))} without it: the "
                f"recorder did not finish (killed?), restore it with `alpamayo recover {p}`"
                if p.is_dir() and any(p.glob("*.mcap")) else "")
        raise FileNotFoundError(f"bag {path}: no rosbag2 directory (metadata.yaml) there{hint}")
    return p


def _recorded_qos(conn: Connection) -> QosSpec | None:
    ext = conn.ext
    if not isinstance(ext, ConnectionExtRosbag2) or not ext.offered_qos_profiles:
        return None
    q = ext.offered_qos_profiles[0]
    reliability = "best_effort" if q.reliability.name.lower() == "best_effort" else "reliable"
    durability = ("transient_local" if q.durability.name.lower() == "transient_local"
                  else "volatile")
    return QosSpec(reliability, durability, max(int(q.depth), 1))


def read_info(path: str | Path) -> BagInfo:
    """Topics, types, counts, recorded QoS and time span of a bag."""
    bag = _bag_path(path)
    with Reader(bag) as reader:
        topics: dict[str, BagTopic] = {}
        for conn in reader.connections:
            prev = topics.get(conn.topic)
            count = conn.msgcount + (prev.count if prev else 0)
            topics[conn.topic] = BagTopic(conn.topic, conn.msgtype, count,
                                          prev.qos if prev and prev.qos else _recorded_qos(conn))
        return BagInfo(bag, topics, reader.start_time, reader.end_time)


def select_topics(info: BagInfo, wanted: Sequence[str]) -> list[str]:
    """The topics to play (all when ``wanted`` is empty); unknown names are an error."""
    if not wanted:
        return sorted(info.topics)
    missing = sorted(set(wanted) - set(info.topics))
    if missing:
        raise ValueError(f"topics {missing} are not in {info.path} (it has "
                         f"{sorted(info.topics)})")
    return sorted(set(wanted))


def iter_messages(path: str | Path, topics: Sequence[str], start_ns: int | None = None
                  ) -> Iterator[BagMessage]:
    """Messages of ``topics`` from ``start_ns`` on, in log-time order."""
    bag = _bag_path(path)
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic in set(topics)]
        if not conns:
            return
        for conn, log_ns, raw in reader.messages(connections=conns, start=start_ns):
            yield BagMessage(conn.topic, conn.msgtype, int(log_ns), bytes(raw))


def default_qos_kind(topic: str) -> str:
    """The package's QoS family for a topic without recorded QoS.

    ``latched`` for ``camera_info``, ``sensor`` for cameras and odometry, ``clock`` for
    ``/clock``, ``plan`` otherwise (see :mod:`alpamayo_ros.ros.qos`).
    """
    if topic.endswith("/camera_info"):
        return "latched"
    if topic == "/clock":
        return "clock"
    if topic.startswith("/sensing/") or topic.startswith("/localization/"):
        return "sensor"
    return "plan"


class PlaybackClock:
    """Bag time <-> wall time at a playback rate, anchored when playback (re)starts."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self._wall0 = 0.0
        self._bag0 = 0

    def start(self, wall_s: float, bag_ns: int) -> None:
        """``bag_ns`` plays at ``wall_s``."""
        self._wall0, self._bag0 = wall_s, bag_ns

    def wall_for(self, bag_ns: int) -> float:
        """Wall time at which ``bag_ns`` is due."""
        return self._wall0 + (bag_ns - self._bag0) / NS_PER_S / self.rate

    def bag_at(self, wall_s: float) -> int:
        """Bag time at ``wall_s``."""
        return self._bag0 + int(round((wall_s - self._wall0) * self.rate * NS_PER_S))
