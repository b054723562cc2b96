r"""pytest plugin: log every garbage collection of the test process longer than 10 ms.

Each line is ``<wall time> gc gen<N> <ms> ms`` or ``<wall time> start <test id>``, so a
pause can be matched to the test that was running. docs/RELIABILITY.md ("Command gap
failures of the tests") used it:

    GC_PAUSE_LOG=/tmp/gc.log PYTHONPATH=$PWD:$PWD/tools AMENT_PREFIX_PATH=$PWD/.venv \
      CMAKE_PREFIX_PATH=$PWD/.venv .venv/bin/python -m pytest -q -p gc_pause_log \
      $(ls test/test_*.py | sort | sed '/test_faults_sigkill/q')
"""

from __future__ import annotations

import gc
import os
import time

_log = open(os.environ.get("GC_PAUSE_LOG", "gc_pauses.log"), "a")  # noqa: SIM115
_started: dict[str, float] = {}


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _started["t"] = time.perf_counter()
        return
    pause_s = time.perf_counter() - _started.get("t", time.perf_counter())
    if pause_s > 0.01:
        _log.write(f"{time.time():.3f} gc gen{info['generation']} {pause_s * 1e3:.0f} ms\n")
        _log.flush()


gc.callbacks.append(_on_gc)


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    """Mark where each test starts."""
    _log.write(f"{time.time():.3f} start {nodeid}\n")
    _log.flush()
