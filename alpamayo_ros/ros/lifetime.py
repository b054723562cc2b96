"""Process lifetime: a node process ends when the process that started it ends.

``alpamayo up`` sets it in each child (``preexec_fn``) and every node process sets it on
itself (:func:`alpamayo_ros.ros.runner.run_node`), so no node outlives its supervisor:
``ros2 launch`` exits on SIGTERM without stopping its processes ("using SIGTERM can
result in orphaned processes"), and a supervisor killed with SIGKILL stops nothing. The
kernel then sends SIGTERM, which the node handles like a SIGINT (clean shutdown, exit 0).
Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere a no-op.

:func:`descendants` / :func:`alive` read ``/proc`` to check that nothing outlived a
bring-up (``alpamayo bench cycles`` and the shutdown tests).

:func:`set_process_nice` gives every thread of a process one nice value (the controller
node's ``process_nice``, 0 by default: -10 was measured to make its command gaps worse,
see ``ControllerConfig``).
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


def process_nices(pid: int | str = "self") -> dict[int, int]:
    """The nice value of each thread of ``pid`` (Linux ``/proc``; {} elsewhere)."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(task.name)] = int(fields[16])  # field 19 of stat(5), after pid and comm
    return out


def set_process_nice(nice: int) -> str | None:
    """Give every current thread of this process the nice value ``nice`` (-20..19).

    On Linux a nice value belongs to a thread, and rclpy's DDS threads exist before a
    node reads its parameters, so each thread of ``/proc/self/task`` is set; threads
    started later inherit from their creator. Returns None when done, else why not: a
    lower value than the current one needs CAP_SYS_NICE (root, or ``setcap
    cap_sys_nice+ep`` on the interpreter), and without it the process keeps its priority.
    """
    threads = process_nices() or {os.getpid(): os.getpriority(os.PRIO_PROCESS, 0)}
    failed = []
    for tid, current in threads.items():
        if current == nice:
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError:  # the thread ended
            continue
        except PermissionError as exc:
            failed.append(f"thread {tid}: {exc.strerror}")
    if failed:
        return (f"could not set nice {nice} ({'; '.join(failed[:2])}): lowering it needs "
                "CAP_SYS_NICE; running at the inherited priority")
    return None
