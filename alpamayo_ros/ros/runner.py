"""Process entry helper for rclpy nodes: transport setup, init, spin and clean shutdown.

Every node process of the package ends the same way on SIGINT and SIGTERM, with exit
code 0: the signal only sets a flag; the spin loop returns within ``POLL_S``; each node's
``destroy_node`` stops its own threads (inference worker, simulator, bag player) and
closes what it writes (bags) while the context is still valid; then the context shuts
down. rclpy's own signal handlers are not installed: they shut the context down inside
the handler, under callbacks and threads that are still publishing (a controller died of
``RCLError: publisher's context is invalid`` in 1 of 4 shutdowns that way), and they let
a second ``KeyboardInterrupt`` land in the middle of ``destroy_node``. Later signals
during the shutdown are ignored (``ros2 launch`` escalates to SIGKILL if it hangs).
SIGINT is handled even when the process inherited it as ignored (a ``ros2 launch``
started in the background by a script), so ``ros2 launch`` can stop its nodes; and the
process receives SIGTERM when the process that started it ends
(:mod:`alpamayo_ros.ros.lifetime`), so no node outlives ``ros2 launch``.

A node may also end its process itself by shutting its context down (``max_duration_s``
of the recorder, the end of a bag).

Stalls are reported, not guessed at: a watchdog thread (:mod:`faulthandler`, C level, so
it runs while the main thread is stuck inside rcl or DDS with the GIL held) prints every
thread's stack to stderr when the main thread has not come back to the spin loop for
``STALL_REPORT_S``, when the start (``rclpy.init``, creating the nodes: DDS
participants, weights, warm-up) has not reached the spin loop after ``STARTUP_REPORT_S``
(a policy process once hung silently there, before its first log line, among 14 processes
started at once; test_faults_files.py), or when the clean-up after a stop signal takes
longer than ``SHUTDOWN_REPORT_S`` (``ros2 launch`` escalates to SIGTERM 5 s after SIGINT,
so the stacks reach the launch log first). Nothing else changes: the process keeps
waiting.

Uses ``rclpy.init()`` plus ``try/finally`` rather than ``with rclpy.init()`` so the same
code runs on Jazzy (where the context manager does not exist) and Kilted.
"""

from __future__ import annotations

import faulthandler
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

import rclpy
from rclpy.executors import (
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from alpamayo_ros.ros.lifetime import die_with_parent
from alpamayo_ros.ros.transport import configure_dds_transport

POLL_S = 0.1  # longest wait between a signal and the end of spinning
STALL_REPORT_S = 10.0  # main thread away from the spin loop this long: print the stacks
SHUTDOWN_REPORT_S = 3.0  # clean-up after a stop signal this long: print the stacks
# Start not done this long: print the stacks. Starts take seconds: the 13 processes of
# test_faults_files.py that reached their error, started at once on 2 cores, did in 7 s.
STARTUP_REPORT_S = 60.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownRequest:
    """SIGINT/SIGTERM handlers that record the request instead of raising.

    Installed only from the main thread (Python delivers signals there); elsewhere
    :attr:`installed` is False and the caller keeps rclpy's default handling.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.installed = threading.current_thread() is threading.main_thread()
        self._previous: dict[int, object] = {}
        if self.installed:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.signal is not None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum

    def restore(self) -> None:
        """Put back the handlers that were installed before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}


def run_node(make_node: Callable[[], Node | Sequence[Node]],
             args: Sequence[str] | None = None, threads: int = 1,
             shared_memory: bool = True) -> None:
    """Create the node(s) after ``rclpy.init(args)`` and spin them until shutdown.

    ``make_node`` returns one node or several (spun by one executor, destroyed in reverse
    order). ``threads == 1`` (the default) spins a SingleThreadedExecutor, else a
    MultiThreadedExecutor with that many threads. Every node of the package keeps its
    callbacks short (long work runs on its own thread), and with rclpy's
    MultiThreadedExecutor we measured stalls of about 1 s between a 50 Hz timer's
    callbacks (controller commands at 7-40 Hz in 2 of 3 runs; 50 Hz with the
    single-threaded one in 4 of 4). Returns normally on SIGINT/SIGTERM (exit code 0);
    an exception from a node propagates after the cleanup. A ``ValueError`` (a parameter
    that does not validate, ``ConfigError``) or ``OSError`` (a missing file) while the
    nodes are created, and ROS arguments that rcl rejects (a ``--params-file`` that
    cannot be read), end the process with exit code 1 and the message on one line
    (:func:`fatal`). ``shared_memory`` picks the DDS transport
    (:func:`~alpamayo_ros.ros.transport.configure_dds_transport`).
    """
    configure_dds_transport(shared_memory=shared_memory)
    faulthandler.dump_traceback_later(STARTUP_REPORT_S)  # re-armed by the StallWatchdog
    stop = ShutdownRequest()
    if stop.installed and not die_with_parent(signal.SIGTERM):
        stop.signal = signal.SIGTERM  # the process that started this one is gone
    options = SignalHandlerOptions.NO if stop.installed else None
    try:
        rclpy.init(args=list(args) if args is not None else None,
                   signal_handler_options=options)
    except RuntimeError as exc:  # rcl's RCLError: e.g. a --params-file that cannot be read
        faulthandler.cancel_dump_traceback_later()
        stop.restore()
        fatal(f"ROS arguments rejected: {exc}")
    context = rclpy.get_default_context()
    nodes: list[Node] = []
    executor = None
    start_error: Exception | None = None
    try:
        try:
            made = make_node()
        except (ValueError, OSError) as exc:  # parameters, files: the message says which
            start_error = exc
            return
        nodes = [made] if isinstance(made, Node) else list(made)
        executor = (SingleThreadedExecutor() if threads == 1
                    else MultiThreadedExecutor(num_threads=threads))
        for node in nodes:
            executor.add_node(node)
        watchdog = StallWatchdog()
        while not stop.requested and context.ok():
            executor.spin_once(timeout_sec=POLL_S)
            watchdog.still_alive()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        faulthandler.dump_traceback_later(SHUTDOWN_REPORT_S)
        if executor is not None:
            executor.shutdown(timeout_sec=POLL_S)
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
        stop.restore()
        if start_error is not None:
            fatal(str(start_error))


class StallWatchdog:
    """Prints every thread's stack when the spin loop stops coming back (module docstring).

    :meth:`still_alive` re-arms :func:`faulthandler.dump_traceback_later` at most once a
    second (re-arming restarts its thread), so a stall is reported after
    ``STALL_REPORT_S`` to ``STALL_REPORT_S + 1`` s, once.
    """

    def __init__(self, report_after_s: float | None = None) -> None:
        self.report_after_s = STALL_REPORT_S if report_after_s is None else report_after_s
        self._armed_at = -math.inf
        self.still_alive()

    def still_alive(self) -> None:
        """The main thread is back in the spin loop."""
        now = time.monotonic()
        if now - self._armed_at >= 1.0:
            faulthandler.dump_traceback_later(self.report_after_s)
            self._armed_at = now


def fatal(message: str) -> NoReturn:
    """End a node process that cannot start: one line on stderr, exit code 1.

    For the documented start-up errors (a parameter's value, a file that cannot be
    read), whose message names the parameter or file; a traceback would only bury it.
    """
    print(f"[{Path(sys.argv[0]).stem or 'alpamayo_ros'}] fatal: {message}", file=sys.stderr,
          flush=True)
    raise SystemExit(1)
