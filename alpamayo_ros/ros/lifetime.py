"""Process lifetime: a node process ends when the process that started it ends.

``alpamayo up`` sets it in each child (``preexec_fn``) and every node process sets it on
itself (:func:`alpamayo_ros.ros.runner.run_node`), so no node outlives its supervisor:
``ros2 launch`` exits on SIGTERM without stopping its processes ("using SIGTERM can
result in orphaned processes"), and a supervisor killed with SIGKILL stops nothing. The
kernel then sends SIGTERM, which the node handles like a SIGINT (clean shutdown, exit 0).
Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op.

:func:`descendants` / :func:`alive` read ``/proc`` to check that nothing outlived a
bring-up (``alpamayo bench cycles`` and the shutdown tests).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent ends.

    Returns False when the parent had already ended (this process was re-parented
    before the request took effect, so no signal will come): the caller should stop.
    Where ``prctl`` is not available nothing is requested and the result is True.
    """
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):
        return True
    return os.getppid() == parent


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
