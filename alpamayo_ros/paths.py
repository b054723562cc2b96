"""Locate the package's data directories (config/, launch/, rviz/, msg/, weights/).

Works from a source checkout (``make`` development setup) and from an installed colcon
prefix (``<prefix>/share/alpamayo_ros``), without importing ROS.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_NAME = "alpamayo_ros"
_PACKAGE_DIR = Path(__file__).resolve().parent


def share_dir() -> Path:
    """The directory holding ``config/``, ``launch/``, ``rviz/`` for this installation."""
    checkout = _PACKAGE_DIR.parent
    if (checkout / "config").is_dir() and (checkout / "package.xml").is_file():
        return checkout
    # <prefix>/lib/pythonX.Y/site-packages/alpamayo_ros -> <prefix>/share/alpamayo_ros
    candidates = [_PACKAGE_DIR.parents[3] / "share" / PACKAGE_NAME]
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    candidates += [Path(prefix) / "share" / PACKAGE_NAME for prefix in prefixes if prefix]
    for candidate in candidates:
        if (candidate / "config").is_dir():
            return candidate
    raise FileNotFoundError(
        f"cannot find the {PACKAGE_NAME} share directory (looked in {checkout} and {candidates})"
    )


DEFAULT_WEIGHTS = "weights/default"  # relative to the share directory


def default_weights_dir() -> Path:
    """The shipped default policy weights (``<share>/weights/default``); may not exist."""
    return share_dir() / DEFAULT_WEIGHTS


def config_path(name: str) -> Path:
    """Path of a file in ``config/``; raises FileNotFoundError naming it when absent."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    return path
