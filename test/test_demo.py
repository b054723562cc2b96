"""`alpamayo demo` runs end to end and reports measured figures."""

import json
import re
import subprocess
import sys

import pytest


@pytest.mark.ros
def test_demo_runs_and_every_plan_arrives(ros_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "alpamayo_ros.cli", "demo", "--plans", "6"],
                            env=ros_env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo OK" in result.stdout
    blocks = re.findall(r"^\{.*?^\}", result.stdout, flags=re.S | re.M)
    fit, transport = (json.loads(b) for b in blocks)
    assert fit["plans"] == 6 and fit["fit_error_vs_clean_m"]["max"] < 0.15
    assert transport["trajectories_received_intact"] == "6/6"
