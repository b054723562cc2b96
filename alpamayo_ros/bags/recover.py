"""Recovering a rosbag2 MCAP bag whose recorder died mid-write (SIGKILL, crash, power cut).

A recorder that is killed never writes the MCAP summary, footer and ``metadata.yaml``,
so no rosbag2 reader opens the directory. The data section before the cut is intact:
records are only ever appended. :func:`recover_bag` reads the ``.mcap`` file front to
back with ``mcap``'s stream reader (which needs no footer), keeps every complete
record (a chunk is kept whole or not at all: its length, decompression and CRC must
check out) and stops at the first one that is cut off or does not parse. The schemas,
channels (with their recorded QoS) and messages found are written into a **new** bag
(``rosbags``, rosbag2 metadata version 9, MCAP); the damaged input is never modified.

What is lost is what the recorder had not yet written to the file: with
:class:`~alpamayo_ros.bags.record.BagWriter` that is at most the messages of the last
``flush_period_s`` (its open chunk), plus whatever was still in flight to the recorder.
The returned :class:`RecoveryReport` says what was kept and how many bytes at the end of
the file could not be used.

Command line: ``alpamayo recover BAG [--out DIR]`` (DIR defaults to ``BAG_recovered``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.metadata import parse_qos

from alpamayo_ros.bags.record import ROSBAG2_VERSION

QOS_KEY = "offered_qos_profiles"  # rosbag2's channel metadata key


class RecoveryError(ValueError):
    """Nothing can be recovered (no MCAP file, not an MCAP file, not the ros2 profile)."""


@dataclass
class RecoveryReport:
    """What :func:`recover_bag` found and wrote."""

    source: Path  # the .mcap file read
    out_dir: Path  # the new bag directory
    messages: dict[str, int] = field(default_factory=dict)  # per topic, written
    chunks: int = 0  # complete chunks read
    start_ns: int | None = None  # first / last log time written
    end_ns: int | None = None
    file_bytes: int = 0
    used_bytes: int = 0  # up to the end of the last complete record
    footer: bool = False  # the file was complete (nothing was cut off)
    skipped_messages: int = 0  # on a channel without a schema (not written by rosbag2)
    stopped_by: str = ""  # why reading stopped before a footer (the cut)

    @property
    def message_count(self) -> int:
        """Messages written into the recovered bag."""
        return sum(self.messages.values())

    @property
    def dropped_bytes(self) -> int:
        """Bytes at the end of the file that held no complete record."""
        return self.file_bytes - self.used_bytes

    def summary(self) -> str:
        """One paragraph for the command line."""
        span = ("" if self.start_ns is None else
                f", {(self.end_ns - self.start_ns) / 1e9:.3f} s of log time")
        state = ("the file was complete" if self.footer else
                 f"the file was cut: {self.dropped_bytes} trailing bytes dropped "
                 f"({self.stopped_by})")
        topics = ", ".join(f"{t}: {n}" for t, n in sorted(self.messages.items()))
        return (f"recovered {self.message_count} messages from {self.chunks} complete "
                f"chunks of {self.source}{span} into {self.out_dir}; {state}. "
                f"Per topic: {topics or 'none'}")


def find_mcap(path: str | Path) -> Path:
    """The ``.mcap`` file of a bag directory (exactly one), or ``path`` if it is one."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise RecoveryError(f"{p} does not exist")
    files = sorted(p.glob("*.mcap"))
    if len(files) != 1:
        raise RecoveryError(f"{p}: expected one .mcap file, found "
                            f"{[f.name for f in files] or 'none'}")
    return files[0]


def _records(f, report: RecoveryReport) -> Iterator[object]:
    """Complete records of an open MCAP file, chunks broken up; stops at the cut."""
    from mcap.exceptions import McapError
    from mcap.records import Chunk, Footer, Header
    from mcap.stream_reader import StreamReader, breakup_chunk

    reader = StreamReader(f, emit_chunks=True, validate_crcs=True,
                          record_size_limit=max(report.file_bytes, 1))
    records = reader.records
    try:
        first = next(records)
    except (McapError, ValueError, EOFError, StopIteration) as exc:
        raise RecoveryError(f"{report.source} is not an MCAP file: "
                            f"{type(exc).__name__} {exc}".rstrip()) from None
    if not isinstance(first, Header) or first.profile != "ros2":
        raise RecoveryError(f"{report.source}: not a rosbag2 MCAP file (header {first!r:.120})")
    report.used_bytes = f.tell()
    while True:
        try:
            record = next(records)
            inner = (breakup_chunk(record, validate_crc=True) if isinstance(record, Chunk)
                     else [record])
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - any unreadable record is the cut
            report.stopped_by = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            return
        report.used_bytes = f.tell()
        if isinstance(record, Chunk):
            report.chunks += 1
        if isinstance(record, Footer):
            report.footer = True
        yield from inner


def _definition(schema: object) -> tuple[str, str]:
    """The message definition stored in the bag and its RIHS01 type hash.

    The bag's own definition is kept (not this package's), so a recovered bag describes
    its messages exactly as the original did, whatever version of the type it recorded.
    """
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    text = schema.data.decode()
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(get_types_from_idl(text) if schema.encoding in ("ros2idl", "omgidl")
                       else get_types_from_msg(text, schema.name))
        return text, store.hash_rihs01(schema.name)
    except Exception as exc:  # noqa: BLE001 - whatever the parser says about a bad text
        raise RecoveryError(f"the bag's definition of {schema.name} does not parse: "
                            f"{type(exc).__name__}: {exc}") from None


def recover_bag(path: str | Path, out_dir: str | Path | None = None) -> RecoveryReport:
    """Write the readable part of the bag at ``path`` into the new bag ``out_dir``.

    ``out_dir`` defaults to ``<bag directory>_recovered`` and must not exist. Raises
    :class:`RecoveryError` when the input is no ros2 MCAP file, ``FileExistsError`` when
    ``out_dir`` exists.
    """
    from mcap.records import Channel, Message, Schema

    source = find_mcap(path)
    bag_dir = source.parent if Path(path).is_file() else Path(path)
    out = Path(out_dir) if out_dir else bag_dir.with_name(bag_dir.name + "_recovered")
    if out.exists():
        raise FileExistsError(f"{out} exists; recovery writes a new bag directory")
    report = RecoveryReport(source, out, file_bytes=source.stat().st_size)
    if not report.file_bytes:
        raise RecoveryError(f"{source} is empty: the recorder wrote nothing to it (killed "
                            "before its first flush?)")
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    connections: dict[int, object] = {}
    writer: Writer | None = None
    try:
        with open(source, "rb") as f:
            for record in _records(f, report):
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    if record.channel_id not in connections:
                        channel = channels.get(record.channel_id)
                        schema = schemas.get(channel.schema_id) if channel else None
                        if schema is None:  # no type to write it with: not rosbag2's
                            report.skipped_messages += 1
                            continue
                        if writer is None:
                            writer = Writer(out, version=ROSBAG2_VERSION,
                                            storage_plugin=StoragePlugin.MCAP)
                            writer.open()
                        msgdef, rihs01 = _definition(schema)
                        qos = parse_qos(channel.metadata.get(QOS_KEY, ""))
                        connections[record.channel_id] = writer.add_connection(
                            channel.topic, schema.name, msgdef=msgdef, rihs01=rihs01,
                            serialization_format=channel.message_encoding,
                            offered_qos_profiles=qos)
                        report.messages.setdefault(channel.topic, 0)
                    writer.write(connections[record.channel_id], record.log_time, record.data)
                    report.messages[channels[record.channel_id].topic] += 1
                    t = record.log_time
                    report.start_ns = t if report.start_ns is None else min(report.start_ns, t)
                    report.end_ns = t if report.end_ns is None else max(report.end_ns, t)
        if writer is None:  # nothing readable: still an (empty) bag, so tools open it
            writer = Writer(out, version=ROSBAG2_VERSION, storage_plugin=StoragePlugin.MCAP)
            writer.open()
        writer.close()
    except BaseException:
        if writer is not None and writer.storage is not None:
            writer.abort()
        raise
    return report
