"""When the controller's first SafetyStatus came in each episode of a soak run.

Reads ``<soak out>/records/*.json`` (``alpamayo soak --out``) and prints, per run, how
many episodes had their first status later than a threshold (sim time after the
simulator started), as docs/RELIABILITY.md reports for the UDP controller:

    python3 tools/soak_first_status.py out/soak [more soak dirs ...] [--after-s 0.7]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    """Print the late first statuses of each soak run given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="soak output directories")
    parser.add_argument("--after-s", type=float, default=0.7)
    args = parser.parse_args()
    for run in args.runs:
        firsts = []
        for path in sorted((run / "records").glob("*.json")):
            transitions = json.loads(path.read_text())["status_transitions"]
            firsts.append(transitions[0]["t_s"] if transitions else float("inf"))
        late = sorted(t for t in firsts if t > args.after_s)
        print(f"{run}: {len(late)} of {len(firsts)} episodes with the first status after "
              f"{args.after_s} s; latest {max(firsts):.2f} s: {late}")


if __name__ == "__main__":
    main()
