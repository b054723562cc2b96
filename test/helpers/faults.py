"""Fault-injection measurements: collected by the test_faults_* modules, rendered as a table.

Each fault test calls :func:`record` with what it measured (detection time, largest
command gap in the node's stamps and in arrival time at the probe, recovery time). When
the environment variable ``ALPAMAYO_FAULTS_JSON`` names a file, every record is merged
into it (keyed by fault name, so reruns replace rows). ``python -m test.helpers.faults
PATH [MODULE]`` prints the Markdown table of docs/RELIABILITY.md from that file (only the
rows of test module ``MODULE``, e.g. ``test_faults_sensors.py``, when given).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

ENV_VAR = "ALPAMAYO_FAULTS_JSON"


def record(area: str, fault: str, behaviour: str, test: str, **figures: Any) -> dict:
    """Store one fault's measurements (figures in ms, or text) in ``$ALPAMAYO_FAULTS_JSON``."""
    row = {"area": area, "fault": fault, "behaviour": behaviour, "test": test,
           **{k: (round(v, 1) if isinstance(v, float) and math.isfinite(v) else v)
              for k, v in figures.items()}}
    print(f"FAULT {json.dumps(row)}")
    path = os.environ.get(ENV_VAR)
    if path:
        target = Path(path)
        rows = json.loads(target.read_text()) if target.exists() else {}
        rows[f"{area}/{fault}"] = row
        target.write_text(json.dumps(rows, indent=1, sort_keys=True))
    return row


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def table(rows: dict[str, dict]) -> str:
    """Markdown table, one line per fault, grouped by area in insertion order."""
    lines = ["| Area | Fault | Behaviour (asserted) | Detection ms | Largest command gap ms "
             "(stamps / arrival) | Recovery ms | Test |",
             "|---|---|---|---|---|---|---|"]
    for row in rows.values():
        gap = (f"{_cell(row, 'gap_stamp_ms')} / {_cell(row, 'gap_arrival_ms')}"
               if "gap_stamp_ms" in row else "-")
        lines.append(f"| {row['area']} | {row['fault']} | {row['behaviour']} | "
                     f"{_cell(row, 'detection_ms')} | {gap} | {_cell(row, 'recovery_ms')} | "
                     f"`{row['test']}` |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m test.helpers.faults PATH [MODULE]``: print the table of a measurements file."""
    if len(argv) not in (1, 2):
        print("usage: python -m test.helpers.faults MEASUREMENTS.json [TEST_MODULE]",
              file=sys.stderr)
        return 2
    rows = json.loads(Path(argv[0]).read_text())
    if len(argv) == 2:
        rows = {k: r for k, r in rows.items() if r["test"].startswith(argv[1] + "::")}
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
