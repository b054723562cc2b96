"""Shared pytest fixtures: ROS environment isolation for tests that start processes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


_USED_DOMAINS: set[int] = set()


@pytest.fixture(scope="module")
def ros_env() -> dict[str, str]:
    """Environment for child ROS processes: a private DDS domain and this checkout first.

    A random ROS_DOMAIN_ID, new for every test module, keeps concurrent test runs on one
    machine, and a module's processes that are still shutting down, from seeing the next
    module's topics.
    """
    env = dict(os.environ)
    domain = random.choice([d for d in range(1, 101) if d not in _USED_DOMAINS])
    _USED_DOMAINS.add(domain)
    env["ROS_DOMAIN_ID"] = str(domain)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env
