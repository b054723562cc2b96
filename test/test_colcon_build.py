"""The repository builds as a normal colcon workspace package and installs what it should."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_colcon_builds_messages_python_and_data(tmp_path: Path) -> None:
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists():
        pytest.skip("colcon is not installed in this environment")
    src = tmp_path / "ws" / "src" / "alpamayo_ros"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", "build", "install", "log", ".git", "__pycache__", "*.mcap", "out", "artifacts"))
    prefix = str(Path(sys.prefix))
    env = dict(os.environ, AMENT_PREFIX_PATH=prefix, CMAKE_PREFIX_PATH=prefix)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(colcon), "build", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=OFF"],
        cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    install = tmp_path / "ws" / "install" / "alpamayo_ros"
    site = next(install.glob("lib/python3*/site-packages/alpamayo_ros"))
    assert (site / "msg" / "_trajectory.py").is_file()
    assert (site / "unicycle.py").is_file() and (site / "ros" / "images.py").is_file()
    assert (install / "share" / "alpamayo_ros" / "config" / "fastdds_large_data.xml").is_file()
    assert (install / "share" / "alpamayo_ros" / "package.xml").is_file()
    # The installed copy imports on its own: messages and code from one package.
    check = subprocess.run(
        [sys.executable, "-c",
         "import alpamayo_ros, alpamayo_ros.unicycle; from alpamayo_ros.msg import Trajectory;"
         "from alpamayo_ros.paths import share_dir;"
         "print(alpamayo_ros.unicycle.__file__, share_dir())"],
        cwd=tmp_path, env=dict(env, PYTHONPATH=str(site.parent)),
        capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert str(site) in check.stdout and "share/alpamayo_ros" in check.stdout
