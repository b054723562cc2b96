"""A single-slot background worker: runs one job at a time, drops what arrives while busy.

The policy node's timer thread calls :meth:`LatestOnlyWorker.submit` each tick; when the
previous inference is still running the tick is dropped and counted, never queued, so the
plan is always computed from the newest frames (openpilot modeld drops frames the same
way). Jobs run on a dedicated thread, off every ROS callback thread.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerStats:
    """Counters since start; ``last_duration_s`` is the newest finished job's run time."""

    submitted: int
    dropped_busy: int
    completed: int
    failed: int
    last_duration_s: float
    last_error: str

    @property
    def drop_ratio(self) -> float:
        """Dropped ticks over all ticks."""
        total = self.submitted + self.dropped_busy
        return self.dropped_busy / total if total else 0.0


class LatestOnlyWorker:
    """Run submitted callables on one thread; refuse new ones while busy."""

    def __init__(self, name: str = "inference",
                 on_error: Callable[[BaseException, str], None] | None = None) -> None:
        self._cv = threading.Condition()
        self._job: Callable[[], None] | None = None
        self._busy = False
        self._stop = False
        self._on_error = on_error
        self._submitted = self._dropped = self._completed = self._failed = 0
        self._last_duration_s = float("nan")
        self._last_error = ""
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a job is queued or running."""
        with self._cv:
            return self._busy

    def submit(self, job: Callable[[], None]) -> bool:
        """Start ``job`` unless one is running: True when accepted, False when dropped."""
        with self._cv:
            if self._stop:
                raise RuntimeError("worker is stopped")
            if self._busy:
                self._dropped += 1
                return False
            self._busy = True
            self._job = job
            self._submitted += 1
            self._cv.notify()
            return True

    def stats(self) -> WorkerStats:
        """A snapshot of the counters."""
        with self._cv:
            return WorkerStats(self._submitted, self._dropped, self._completed, self._failed,
                               self._last_duration_s, self._last_error)

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no job runs (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the running job (if any) and end the thread."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._stop:
                    self._cv.wait()
                if self._job is None:
                    return
                job = self._job
            t0 = time.perf_counter()
            error: BaseException | None = None
            try:
                job()
            except Exception as exc:  # a failed inference must not kill the worker
                error = exc
                detail = traceback.format_exc()
            with self._cv:
                self._last_duration_s = time.perf_counter() - t0
                if error is None:
                    self._completed += 1
                else:
                    self._failed += 1
                    self._last_error = f"{type(error).__name__}: {error}"
                self._job = None
                self._busy = False
                self._cv.notify_all()
            if error is not None and self._on_error is not None:
                self._on_error(error, detail)
