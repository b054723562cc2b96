"""``alpamayo soak`` smoke test: one short scenario through the real graph, two faults.

The shipped policy drives ``merge 9000`` for 19 s through the demo's processes while the
soak injects a burst of NaN plans and corrupt frames on one camera at seeded times; the
graph must detect both (the check named in ``SafetyStatus``, the camera sync counting the
bad frames), never execute an injected plan and recover, and the soak writes its JSON and
markdown. The soak's 40 ms command-gap line is measured here but not asserted: under the
test suite's load it is a scheduling figure (asserted per fault in
test_faults_controller.py; the full soak, docs/RELIABILITY.md, is the closed-loop check).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ros
@pytest.mark.slow
def test_soak_detects_injected_faults_and_writes_its_report(ros_env, tmp_path) -> None:
    weights = tmp_path / "weights"  # a copy: an export may rewrite weights/default meanwhile
    shutil.copytree(ROOT / "weights" / "default", weights)
    out = tmp_path / "soak"
    result = subprocess.run(
        [sys.executable, "-m", "alpamayo_ros.cli", "soak", "--scenarios", "merge:9000",
         "--duration", "19", "--faults", "nan_plan", "corrupt_frames",
         "--faults-per-episode", "2", "--weights", str(weights), "--out", str(out)],
        env=ros_env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    text = result.stdout + result.stderr
    assert result.returncode in (0, 1), text[-6000:]  # 1: a pass line failed (see below)
    soak = json.loads((out / "soak.json").read_text())
    assert (out / "soak.md").read_text().startswith("# Closed-loop soak")
    assert ("soak PASSED" if soak["passed"] else "soak FAILED") in result.stdout
    faults = {f["kind"]: f for f in soak["faults"]}
    assert set(faults) == {"nan_plan", "corrupt_frames"}, text[-4000:]
    nan = faults["nan_plan"]
    assert nan["detected"] and "nonfinite_values" in nan["detected_by"], nan
    assert nan["recovered"] and not nan["invalid_plan_executed"], nan
    corrupt = faults["corrupt_frames"]
    assert corrupt["detected"] and "front_wide bad frames" in corrupt["detected_by"], corrupt
    assert corrupt["recovered"], corrupt
    checks = {c["check"]: c["passed"] for c in soak["checks"]}
    assert checks["every fault detected"] and checks["no invalid plan executed"], checks
    (gap,) = soak["command_gaps"]
    assert gap["commands"] > 300 and gap["gap_ms"] >= 20.0  # 19 s of 50 Hz commands seen
    assert not soak["episode_summaries"][0]["error"]
