"""Shared pytest fixtures: ROS environment isolation for tests that start processes."""

from __future__ import annotations

import faulthandler
import os
import random
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Last resort against a hang inside a C call that holds the GIL (seen once: the probe's
# executor thread looping in Fast DDS' rcl_take), where pytest-timeout's SIGALRM handler
# never runs: faulthandler's watchdog thread needs no GIL; it dumps every thread's stack
# and ends the run, so CI fails loudly instead of sitting until its own limit.
HANG_WATCHDOG_S = 600.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # noqa: ANN001, ANN201 - pytest hook
    """Arm the hang watchdog for each test (setup, call and teardown)."""
    faulthandler.dump_traceback_later(HANG_WATCHDOG_S, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session", autouse=True)
def ros_logs_in_the_session_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Write this session's ROS log files (this process and its children) under basetemp.

    Otherwise every rclpy process of every run adds files to ~/.ros/log on a reused CI
    machine; under basetemp they go with the session's other temporary files.
    """
    if "ROS_LOG_DIR" not in os.environ:
        os.environ["ROS_LOG_DIR"] = str(tmp_path_factory.mktemp("ros_log"))


_USED_DOMAINS: set[int] = set()


@pytest.fixture(scope="module")
def ros_env() -> dict[str, str]:
    """Environment for child ROS processes: a private DDS domain and this checkout first.

    A random ROS_DOMAIN_ID, new for every test module, keeps concurrent test runs on one
    machine, and a module's processes that are still shutting down, from seeing the next
    module's topics.
    """
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(_new_domain())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _new_domain() -> int:
    domain = random.choice([d for d in range(1, 101) if d not in _USED_DOMAINS])
    _USED_DOMAINS.add(domain)
    return domain


@pytest.fixture
def own_ros_env(ros_env: dict[str, str]) -> dict[str, str]:
    """``ros_env`` with a domain of its own, for a test beside the module's running nodes."""
    return {**ros_env, "ROS_DOMAIN_ID": str(_new_domain())}
