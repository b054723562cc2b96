"""``diagnostic_msgs`` builders for the nodes' health reports (RViz/Foxglove, rqt_robot_monitor).

Each node publishes one ``DiagnosticStatus`` per component on ``/diagnostics``; the
values are key/value strings with units in the key names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from alpamayo_ros.ros.conversions import time_from_ns
from alpamayo_ros.sync.monitor import SyncReport

OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                          DiagnosticStatus.STALE)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def status(name: str, hardware_id: str, level: bytes | int, message: str,
           values: Mapping[str, object]) -> DiagnosticStatus:
    """One status with ``values`` formatted as strings."""
    lvl = level if isinstance(level, bytes) else bytes([level])
    return DiagnosticStatus(level=lvl, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=_fmt(v)) for k, v in values.items()])


def array(stamp_ns: int, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    """A ``DiagnosticArray`` stamped ``stamp_ns``."""
    return DiagnosticArray(header=Header(stamp=time_from_ns(stamp_ns)), status=statuses)


def sync_status(report: SyncReport, node_name: str, extra: Mapping[str, object] = {}
                ) -> DiagnosticStatus:
    """Camera synchronization health: drops, skew, per-camera staleness, frozen cameras."""
    stale, frozen, malformed = (report.stale_cameras, report.frozen_cameras,
                                report.malformed_cameras)
    if stale and len(stale) == len(report.cameras):
        level, message = ERROR, "no camera is delivering frames"
    elif stale or frozen or malformed:
        parts = ([f"stale cameras: {', '.join(stale)}"] if stale else []) + (
            [f"frozen cameras: {', '.join(frozen)}"] if frozen else []) + (
            [f"malformed frames from: {', '.join(malformed)}"] if malformed else [])
        level, message = WARN, "; ".join(parts)
    elif report.sets_stalled:
        beyond = ", ".join(report.cameras_beyond_slop) or "none identified"
        level, message = WARN, (f"no synchronized set for {report.set_silence_s:.2f} s "
                                f"(cameras beyond slop: {beyond})")
    else:
        level, message = OK, f"{len(report.cameras)} cameras synchronized"
    values: dict[str, object] = {
        "sets_emitted": report.sets_emitted, "dropped_sets": report.dropped_sets,
        "drop_ratio": report.drop_ratio, "skew_last_s": report.skew_last_s,
        "skew_mean_s": report.skew_mean_s, "skew_max_s": report.skew_max_s,
        "set_silence_s": report.set_silence_s,
    }
    for cam in report.cameras:
        values[f"{cam.name}/frames_received"] = cam.frames_received
        values[f"{cam.name}/frames_dropped"] = cam.frames_dropped
        values[f"{cam.name}/staleness_s"] = cam.staleness_s
        values[f"{cam.name}/stale"] = cam.stale
        values[f"{cam.name}/frozen"] = cam.frozen
        values[f"{cam.name}/frames_frozen"] = cam.frames_frozen
        values[f"{cam.name}/frames_out_of_order"] = cam.frames_out_of_order
        values[f"{cam.name}/offset_s"] = cam.offset_s
        values[f"{cam.name}/malformed"] = cam.frames_malformed
    values.update(extra)
    return status(f"{node_name}: camera sync", node_name, level, message, values)
