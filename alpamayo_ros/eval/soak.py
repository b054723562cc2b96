"""Closed-loop soak with faults injected at seeded random times: schedule and analysis.

The pure core of ``alpamayo soak`` (the ROS side, which runs the ``make demo`` graph and
injects the faults, is :mod:`alpamayo_ros.ros.soak`):

- :func:`default_suite` picks the scenarios (the demo's families on held-out seeds
  9000, 9001, ... until the requested simulated time is reached);
- :func:`schedule_faults` draws each episode's :class:`FaultEvent` list from a seed: the
  kinds cycle through :data:`FAULT_KINDS` in a seeded order, each fault gets its hold
  time and the room it needs to be detected and recovered from before the next one
  starts (or the episode ends), and the slack left is spread at random between them;
- :func:`analyse` turns what was recorded (statuses, commands, speeds, diagnostics and
  the faults as injected, all stamped in sim time) into per-fault detection and
  recovery times, the largest command gap, the at-fault collisions and the pass/fail
  lines of issue #12's soak; :func:`markdown` renders them. The command gap is taken
  between consecutive control cycles in the controller's own stamps: a cycle publishes a
  ``ControlCommand`` and a ``SafetyStatus`` with the same stamp, and either one received
  shows that the cycle ran (the commands-only figure is kept beside it).

Faults (:data:`FAULT_KINDS`) and what counts as detected:

- ``nan_plan`` / ``jerk_plan`` / ``stale_plan``: a burst of invalid plans on the
  trajectory topic (NaN acceleration, a jerk spike, a stamp 3 s old): a ``SafetyStatus``
  names the check in ``failed_checks`` (:data:`PLAN_CHECKS`); no status or command may
  ever carry an injected plan's stamp as the active plan;
- ``policy_freeze``: the policy process stopped (SIGSTOP) for longer than the
  controller's policy timeout: a FALLBACK status whose reason says the policy is silent;
- ``policy_restart``: the policy process killed (SIGKILL) and started again with the same
  command: detected as the freeze;
- ``corrupt_frames``: garbage bytes in place of the jpeg on one camera topic: a bad-frame
  counter in the policy process' ``/diagnostics`` rises (:func:`bad_frame_count`).

Recovery: the first OK status after the fault cleared (and after its detection) that
follows a plan stamped after the fault cleared (the policy works again; for invalid-plan
bursts any OK status after the last one). Driving resumed (:func:`resumed`): within
``resume_window_s`` of the recovery the speed rises, or the ego keeps moving, or the
accepted plans themselves hold the ego stopped (a red light, a stop sign).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

NS_PER_S = 1_000_000_000

FAULT_KINDS = ("nan_plan", "jerk_plan", "stale_plan", "policy_freeze", "policy_restart",
               "corrupt_frames")
PLAN_FAULTS = ("nan_plan", "jerk_plan", "stale_plan")
POLICY_FAULTS = ("policy_freeze", "policy_restart")
PLAN_CHECKS = {"nan_plan": "nonfinite_values", "jerk_plan": "max_longitudinal_jerk_mps3",
               "stale_plan": "max_plan_age_s"}
RECOVERED_OK = "OK on a valid plan"  # the usual recovery (else the table says how)
POLICY_SILENT = "policy silent"  # the controller's FALLBACK reason on a policy timeout
STATE_OK, STATE_DEGRADED, STATE_FALLBACK = 0, 1, 2
SOURCE_POLICY = 0
# Diagnostics keys that count rejected camera frames (the camera sync's per-camera
# counters and the policy's skipped frame sets); see bad_frame_count.
BAD_FRAME_WORDS = ("malformed", "corrupt", "rejected", "invalid")
POLICY_BAD_INPUT_KEY = "skipped_bad_input"


@dataclass(frozen=True)
class SoakConfig:
    """Schedule and pass criteria of the soak.

    - ``seed``: the schedule's seed (same seed, same faults at the same times);
    - ``faults_per_episode``: at most this many faults per scenario (fewer when they do
      not fit);
    - ``first_fault_s``: no fault before this many seconds of an episode (driving begun);
    - ``plan_burst_s``: how long a burst of invalid plans lasts (plans at 10 Hz);
    - ``freeze_min_s`` / ``freeze_max_s``: the policy's SIGSTOP hold, drawn uniformly;
      longer than the controller's ``policy_timeout_s`` (2 s), else it is no fault;
    - ``corrupt_s``: how long one camera's frames are corrupt;
    - ``plan_room_s`` / ``freeze_room_s`` / ``restart_room_s`` / ``corrupt_room_s``: time
      kept free after a fault of that kind clears (detection, recovery, resumed driving)
      before the next fault or the episode's end; a restart needs the policy's start-up;
    - ``detect_grace_s``: a detection may come this long after the fault cleared;
    - ``resume_window_s``: driving must resume within this long after the recovery;
    - ``resume_speed_rise_mps``, ``moving_speed_mps``, ``holding_plan_speed_mps``,
      ``expert_stop_match_m``: what counts as resumed driving (see :func:`resumed`);
    - ``max_command_gap_s``: the largest allowed gap between consecutive control commands
      (node stamps): two 50 Hz control periods.
    """

    seed: int = 0
    faults_per_episode: int = 2
    first_fault_s: float = 4.0
    plan_burst_s: float = 0.3
    freeze_min_s: float = 2.5
    freeze_max_s: float = 3.0
    corrupt_s: float = 1.0
    # each room: detection and recovery (measured: <= 1 s after a burst, a freeze or
    # corrupt frames, <= 4 s after a restart) plus the resume window after them
    plan_room_s: float = 6.5
    freeze_room_s: float = 7.0
    restart_room_s: float = 14.0
    corrupt_room_s: float = 7.0
    detect_grace_s: float = 3.0
    resume_window_s: float = 5.0
    resume_speed_rise_mps: float = 0.3
    moving_speed_mps: float = 1.0
    holding_plan_speed_mps: float = 0.5
    expert_stop_match_m: float = 10.0
    max_command_gap_s: float = 0.04
    kinds: tuple[str, ...] = FAULT_KINDS

    def __post_init__(self) -> None:
        if self.faults_per_episode < 1:
            raise ValueError(f"faults_per_episode must be >= 1, got {self.faults_per_episode}")
        for name in ("first_fault_s", "plan_burst_s", "freeze_min_s", "corrupt_s",
                     "plan_room_s", "freeze_room_s", "restart_room_s", "corrupt_room_s",
                     "detect_grace_s", "resume_window_s", "max_command_gap_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("plan_room_s", "freeze_room_s", "restart_room_s", "corrupt_room_s"):
            if getattr(self, name) <= self.resume_window_s:
                raise ValueError(f"{name} ({getattr(self, name)}) must exceed resume_window_s "
                                 f"({self.resume_window_s}): the room after a fault holds "
                                 "its recovery and the resume window")
        for name in ("resume_speed_rise_mps", "moving_speed_mps", "holding_plan_speed_mps",
                     "expert_stop_match_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.freeze_max_s >= self.freeze_min_s:
            raise ValueError(f"freeze_max_s ({self.freeze_max_s}) must be >= freeze_min_s "
                             f"({self.freeze_min_s})")
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {list(FAULT_KINDS)}, "
                             f"got {list(self.kinds)}")

    def room_s(self, kind: str) -> float:
        """Time kept free after a fault of ``kind`` clears."""
        if kind in PLAN_FAULTS:
            return self.plan_room_s
        return {"policy_freeze": self.freeze_room_s, "policy_restart": self.restart_room_s,
                "corrupt_frames": self.corrupt_room_s}[kind]


@dataclass(frozen=True)
class FaultEvent:
    """One scheduled fault: its kind, start (s of episode time) and hold time (s)."""

    kind: str
    start_s: float
    duration_s: float


# --------------------------------------------------------------------------- suite
def default_suite(families: Sequence[str], durations_s: Sequence[float], sim_minutes: float,
                  first_seed: int = 9000) -> list[tuple[str, int, float]]:
    """``(family, seed, duration_s)`` cycling ``families`` over seeds ``first_seed``, ...

    until at least ``sim_minutes`` of simulated driving (at least one scenario).
    """
    if not families or len(families) != len(durations_s):
        raise ValueError("families and durations_s must be non-empty and of equal length")
    if not (math.isfinite(sim_minutes) and sim_minutes > 0):
        raise ValueError(f"sim_minutes must be a finite number > 0, got {sim_minutes!r}")
    out: list[tuple[str, int, float]] = []
    total_s, seed = 0.0, first_seed
    while total_s < sim_minutes * 60.0:
        for family, duration in zip(families, durations_s):
            if total_s >= sim_minutes * 60.0:
                break
            out.append((family, seed, float(duration)))
            total_s += duration
        seed += 1
    return out


# --------------------------------------------------------------------------- schedule
def _hold_s(kind: str, config: SoakConfig, rng: np.random.Generator) -> float:
    if kind in PLAN_FAULTS:
        return config.plan_burst_s
    if kind == "policy_freeze":
        return float(rng.uniform(config.freeze_min_s, config.freeze_max_s))
    if kind == "policy_restart":
        return 0.0  # killed and started again at once
    return config.corrupt_s


def schedule_faults(durations_s: Sequence[float], config: SoakConfig
                    ) -> list[list[FaultEvent]]:
    """Each episode's faults (episode ``i`` lasts ``durations_s[i]`` s), from ``config.seed``.

    The kinds come in a seeded order cycling through ``config.kinds`` across the whole
    soak; an episode takes the next kinds while they fit (hold + room after each, the
    first not before ``first_fault_s``), so every kind recurs. A kind that fits no
    episode (an episode shorter than its needs) is skipped there and tried again next.
    """
    rng = np.random.default_rng(config.seed)
    kinds = list(config.kinds)
    queue: list[str] = []
    out: list[list[FaultEvent]] = []
    for duration in durations_s:
        if len(queue) < config.faults_per_episode:
            queue += [kinds[i] for i in rng.permutation(len(kinds))]
        available = float(duration) - config.first_fault_s
        chosen: list[tuple[str, float]] = []
        needed = 0.0
        for kind in list(queue):
            if len(chosen) == config.faults_per_episode:
                break
            hold = _hold_s(kind, config, rng)
            if needed + hold + config.room_s(kind) > available:
                break  # keep the order: this kind goes first in the next episode
            chosen.append((kind, hold))
            needed += hold + config.room_s(kind)
            queue.remove(kind)
        slack = max(available - needed, 0.0)
        # slack spread at random before each fault (and after the last)
        parts = rng.dirichlet(np.ones(len(chosen) + 1)) * slack if chosen else []
        events, t = [], config.first_fault_s
        for (kind, hold), gap in zip(chosen, parts):
            t += float(gap)
            events.append(FaultEvent(kind, round(t, 3), round(hold, 3)))
            t += hold + config.room_s(kind)
        out.append(events)
    return out


# --------------------------------------------------------------------------- records
class StatusSample(NamedTuple):
    """One ``SafetyStatus``: node stamp, state, active plan stamp, failed checks, reason."""

    stamp_ns: int
    state: int
    active_plan_ns: int
    failed_checks: tuple[str, ...]
    reason: str


class CommandSample(NamedTuple):
    """One ``ControlCommand``: node stamp, source, the followed plan's stamp."""

    stamp_ns: int
    source: int
    plan_stamp_ns: int


class DiagnosticSample(NamedTuple):
    """One ``/diagnostics`` status: stamp, status name, key/value pairs."""

    stamp_ns: int
    name: str
    values: dict[str, str]


@dataclass
class InjectedFault:
    """A fault as the injector carried it out (sim-time stamps from the odometry)."""

    event: FaultEvent
    start_ns: int
    end_ns: int
    plan_stamps: tuple[int, ...] = ()  # injected plans (plan faults)
    camera: str = ""  # corrupt_frames
    frames: int = 0  # corrupt frames published
    note: str = ""  # what went wrong injecting it, if anything


@dataclass
class EpisodeRecord:
    """What one episode of the soak recorded."""

    label: str
    duration_s: float
    statuses: list[StatusSample] = field(default_factory=list)
    commands: list[CommandSample] = field(default_factory=list)
    speeds: list[tuple[int, float]] = field(default_factory=list)  # odometry (stamp, m/s)
    route_s: list[tuple[int, float]] = field(default_factory=list)  # odometry (stamp, route m)
    # route positions (m) where the expert, driving the same scenario, stands
    expert_stands_s: tuple[float, ...] = ()
    plan_speeds: dict[int, float] = field(default_factory=dict)  # plan stamp -> max m/s
    diagnostics: list[DiagnosticSample] = field(default_factory=list)
    faults: list[InjectedFault] = field(default_factory=list)
    at_fault_collision: bool = False
    expert_collision: bool = False
    error: str = ""  # the episode did not run to its end (process died, no start)


@dataclass
class FaultResult:
    """The analysis of one injected fault."""

    episode: str
    kind: str
    start_s: float  # episode time
    duration_s: float
    detected: bool
    detection_ms: float | None
    recovered: bool
    recovery_ms: float | None  # fault cleared (or detected, if later) -> recovery
    resumed: bool
    resumed_how: str
    invalid_plan_executed: bool
    detected_by: str = ""
    recovered_how: str = ""
    note: str = ""


# --------------------------------------------------------------------------- analysis
def bad_frame_count(values: dict[str, str], camera: str) -> int:
    """Rejected frames counted in one diagnostics status.

    ``camera``'s counters whose key names a rejection (:data:`BAD_FRAME_WORDS`) plus the
    policy's skipped bad inputs (:data:`POLICY_BAD_INPUT_KEY`).
    """
    total = 0
    for key, value in values.items():
        counts = key == POLICY_BAD_INPUT_KEY or (
            key.startswith(f"{camera}/") and any(w in key for w in BAD_FRAME_WORDS))
        if counts:
            try:
                total += int(float(value))
            except ValueError:
                continue
    return total


def largest_gap_ns(stamps: Iterable[int]) -> tuple[int, int]:
    """Largest difference between consecutive distinct stamps and where it starts."""
    ordered = sorted(set(stamps))
    if len(ordered) < 2:
        return 0, 0
    diffs = np.diff(np.asarray(ordered, dtype=np.int64))
    i = int(np.argmax(diffs))
    return int(diffs[i]), ordered[i]


def _value_at(samples: Sequence[tuple[int, float]], stamp_ns: int) -> float:
    """The last sample's value at or before ``stamp_ns`` (the first one before them all)."""
    before = [v for s, v in samples if s <= stamp_ns]
    return before[-1] if before else (samples[0][1] if samples else math.nan)


def standing_positions(route_s: Sequence[float], speeds_mps: Sequence[float],
                       below_mps: float) -> tuple[float, ...]:
    """Route positions (m, rounded to 0.1 m, each once) where the speed is below ``below_mps``.

    Applied to the expert's run of a scenario: where the scene makes it stand.
    """
    return tuple(sorted({round(float(s), 1) for s, v in zip(route_s, speeds_mps)
                         if v < below_mps}))


def resumed(record: EpisodeRecord, recovery_ns: int, config: SoakConfig,
            fault_start_ns: int | None = None) -> tuple[bool, str]:
    """Whether driving resumed within ``resume_window_s`` of ``recovery_ns``, and how.

    Resumed: the speed rose by ``resume_speed_rise_mps``; or the ego kept moving (never
    below ``moving_speed_mps``); or every plan accepted in the window plans to stay below
    ``holding_plan_speed_mps`` (the policy holds a stop); or the ego ends the window standing
    within ``expert_stop_match_m`` of a route position where the expert stands in the same
    scenario (a red light, a stopped lead: the scene says stop); or the ego already stood
    (below ``moving_speed_mps``) when the fault began at ``fault_start_ns`` and stands
    after it: the fault stopped nothing. Which one is said in the table. Needs the whole
    window recorded, unless the episode's last status falls inside it after 1 s of data.
    """
    end_ns = recovery_ns + int(config.resume_window_s * NS_PER_S)
    window = [(s, v) for s, v in record.speeds if recovery_ns <= s <= end_ns]
    last_ns = record.statuses[-1].stamp_ns if record.statuses else recovery_ns
    if not window or (last_ns < end_ns and last_ns - recovery_ns < NS_PER_S):
        return False, "episode ended before driving could resume"
    v0 = _value_at(record.speeds, recovery_ns)
    speeds = [v for _, v in window]
    if max(speeds) >= v0 + config.resume_speed_rise_mps:
        return True, f"speed rose {v0:.1f} -> {max(speeds):.1f} m/s"
    if min(speeds) >= config.moving_speed_mps:
        return True, f"kept moving (>= {min(speeds):.1f} m/s)"
    accepted = {s.active_plan_ns for s in record.statuses
                if recovery_ns <= s.stamp_ns <= end_ns and s.state == STATE_OK}
    planned = [record.plan_speeds[p] for p in accepted if p in record.plan_speeds]
    if planned and max(planned) < config.holding_plan_speed_mps:
        return True, f"the policy holds the stop (plans <= {max(planned):.1f} m/s)"
    where_s = _value_at(record.route_s, window[-1][0])
    if speeds[-1] < config.moving_speed_mps and record.expert_stands_s and math.isfinite(
            where_s):
        nearest = min(record.expert_stands_s, key=lambda s: abs(s - where_s))
        if abs(nearest - where_s) <= config.expert_stop_match_m:
            return True, (f"stands where the expert stands (route {where_s:.0f} m, the "
                          f"expert at {nearest:.0f} m)")
    if fault_start_ns is not None:
        before = _value_at(record.speeds, fault_start_ns)
        if before < config.moving_speed_mps and max(speeds) < config.moving_speed_mps:
            return True, f"already stopped when the fault began ({before:.1f} m/s)"
    return False, (f"speed {v0:.1f} m/s at recovery, {speeds[-1]:.1f} m/s after "
                   f"{(window[-1][0] - recovery_ns) / NS_PER_S:.1f} s")


def _detection(record: EpisodeRecord, fault: InjectedFault, config: SoakConfig
               ) -> tuple[int | None, str]:
    """Stamp of the first sign of the fault in the graph's outputs, and what it was."""
    kind = fault.event.kind
    until = fault.end_ns + int(config.detect_grace_s * NS_PER_S)
    if kind == "corrupt_frames":
        baseline: dict[str, int] = {}
        for d in sorted(record.diagnostics, key=lambda d: d.stamp_ns):
            count = bad_frame_count(d.values, fault.camera)
            if d.stamp_ns < fault.start_ns:
                baseline[d.name] = count
            elif d.stamp_ns <= until and count > baseline.get(d.name, 0):
                return d.stamp_ns, (f"'{d.name}' diagnostics: {fault.camera} bad frames "
                                    f"{baseline.get(d.name, 0)} -> {count}")
        return None, ""
    for s in record.statuses:
        if not fault.start_ns <= s.stamp_ns <= until:
            continue
        if kind in PLAN_CHECKS and PLAN_CHECKS[kind] in s.failed_checks:
            return s.stamp_ns, f"failed_checks: {', '.join(s.failed_checks)}"
        if kind in POLICY_FAULTS and s.state == STATE_FALLBACK and POLICY_SILENT in s.reason:
            return s.stamp_ns, f"FALLBACK: {s.reason}"
    return None, ""


def _recovery(record: EpisodeRecord, fault: InjectedFault, after_ns: int
              ) -> tuple[int | None, str]:
    """When the system recovered from ``fault`` (cleared at ``after_ns``), and how.

    Normally the first OK status following a valid plan (for a policy or sensor fault, a
    plan stamped after the fault). When another cause held the controller out of OK as the
    fault began (a plan on a collision course behind a stopped lead), or holds it as the
    fault clears (a collision course found while the policy was frozen: the status names
    a failed check that is not the fault's own), no OK status can be asked of the fault;
    then the fault's own path counts: for a policy or sensor fault the policy's first plan
    stamped after the fault, for a plan burst the first status that no longer names the
    burst's check.
    """
    kind = fault.event.kind
    fresh_plan = kind not in PLAN_FAULTS
    for s in record.statuses:
        if s.stamp_ns < after_ns or s.state != STATE_OK:
            continue
        if s.active_plan_ns in fault.plan_stamps:
            continue
        if fresh_plan and s.active_plan_ns <= fault.end_ns:
            continue  # still the plan from before the fault
        return s.stamp_ns, RECOVERED_OK
    before = [s for s in record.statuses if s.stamp_ns < fault.start_ns]
    at_clear = [s for s in record.statuses if s.stamp_ns < after_ns]
    own_check = PLAN_CHECKS.get(kind)
    if before and before[-1].state != STATE_OK:
        held = f"the controller stayed out of OK as before the fault ({before[-1].reason})"
    elif at_clear and at_clear[-1].state != STATE_OK and any(
            c != own_check for c in at_clear[-1].failed_checks):
        held = ("the controller stayed out of OK for a cause found during the fault "
                f"({at_clear[-1].reason})")
    else:
        return None, ""
    if fresh_plan:
        plans = sorted(p for p in record.plan_speeds
                       if p > max(after_ns, fault.end_ns) and p not in fault.plan_stamps)
        if plans:
            return plans[0], f"the policy planned again; {held}"
        return None, ""
    for s in record.statuses:
        if s.stamp_ns >= after_ns and PLAN_CHECKS[kind] not in s.failed_checks:
            return s.stamp_ns, f"the burst's check cleared; {held}"
    return None, ""


def analyse_fault(record: EpisodeRecord, fault: InjectedFault, config: SoakConfig
                  ) -> FaultResult:
    """Detection, recovery and resumed driving of one injected fault."""
    detected_ns, detected_by = _detection(record, fault, config)
    executed = bool(fault.plan_stamps) and (
        any(c.plan_stamp_ns in fault.plan_stamps for c in record.commands)
        or any(s.active_plan_ns in fault.plan_stamps for s in record.statuses))
    cleared_ns = max(fault.end_ns, detected_ns or 0)
    recovery_ns, recovered_how = (_recovery(record, fault, cleared_ns)
                                  if detected_ns is not None else (None, ""))
    ok_resumed, how = (resumed(record, recovery_ns, config, fault.start_ns)
                       if recovery_ns is not None
                       else (False, "not recovered"))
    return FaultResult(
        episode=record.label, kind=fault.event.kind, start_s=fault.event.start_s,
        duration_s=round((fault.end_ns - fault.start_ns) / NS_PER_S, 3),
        detected=detected_ns is not None,
        detection_ms=(round((detected_ns - fault.start_ns) / 1e6, 1)
                      if detected_ns is not None else None),
        recovered=recovery_ns is not None,
        recovery_ms=(round((recovery_ns - cleared_ns) / 1e6, 1)
                     if recovery_ns is not None else None),
        resumed=ok_resumed, resumed_how=how, invalid_plan_executed=executed,
        detected_by=detected_by, recovered_how=recovered_how, note=fault.note)


def record_summary(record: EpisodeRecord) -> dict[str, Any]:
    """A compact, readable dump of an episode's record (times in s from its start).

    Status transitions (state, active plan, failed checks or reason changed), the plans
    received, the faults as injected and every diagnostics status: for looking into a
    fault the analysis did not pass.
    """
    t0 = record.speeds[0][0] if record.speeds else (
        record.statuses[0].stamp_ns if record.statuses else 0)

    def t(ns: int) -> float:
        return round((ns - t0) / NS_PER_S, 3)

    transitions, previous = [], None
    for st in record.statuses:
        key = (st.state, st.active_plan_ns, st.failed_checks, st.reason.split(" for ")[0])
        if key != previous:
            transitions.append({"t_s": t(st.stamp_ns), "state": st.state,
                                "plan_t_s": t(st.active_plan_ns) if st.active_plan_ns else None,
                                "failed_checks": list(st.failed_checks), "reason": st.reason})
            previous = key
    return {
        "episode": record.label, "duration_s": record.duration_s, "error": record.error,
        "faults": [{"kind": f.event.kind, "start_t_s": t(f.start_ns), "end_t_s": t(f.end_ns),
                    "plan_t_s": [t(p) for p in f.plan_stamps], "frames": f.frames,
                    "note": f.note} for f in record.faults],
        "status_transitions": transitions,
        "plans_t_s": sorted(t(p) for p in record.plan_speeds),
        "commands": len(record.commands),
        "speed_mps_every_s": [round(v, 2) for s, v in record.speeds[::50]],
        "diagnostics": [{"t_s": t(d.stamp_ns), "name": d.name, "values": d.values}
                        for d in record.diagnostics],
    }


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return {"n": len(values), "median": round(float(np.median(arr)), 1),
            "max": round(float(arr.max()), 1)}


def analyse(records: Sequence[EpisodeRecord], config: SoakConfig,
            target_sim_s: float) -> dict[str, Any]:
    """The soak's result: per-fault rows, per-kind figures, gap, collisions, pass lines."""
    faults = [analyse_fault(r, f, config) for r in records for f in r.faults]
    gaps = []
    for r in records:
        # a cycle publishes a command and a status with one stamp: either received counts
        gap_ns, at_ns = largest_gap_ns([c.stamp_ns for c in r.commands]
                                       + [s.stamp_ns for s in r.statuses])
        commands_gap_ns, _ = largest_gap_ns(c.stamp_ns for c in r.commands)
        t0 = r.speeds[0][0] if r.speeds else at_ns
        gaps.append({"episode": r.label, "gap_ms": gap_ns / 1e6,
                     "at_s": round((at_ns - t0) / NS_PER_S, 2) if gap_ns else None,
                     "commands_only_gap_ms": commands_gap_ns / 1e6,
                     "commands": len(r.commands), "statuses": len(r.statuses)})
    worst = max(gaps, key=lambda g: g["gap_ms"], default=None)
    # an episode that ran to its end (the simulator reported it finished) drove its duration
    sim_s = sum(r.duration_s for r in records if not r.error)
    received_s = sum((r.speeds[-1][0] - r.speeds[0][0]) / NS_PER_S
                     for r in records if r.speeds)
    collisions = [r.label for r in records if r.at_fault_collision]
    errors = [f"{r.label}: {r.error}" for r in records if r.error]
    by_kind = {}
    for kind in FAULT_KINDS:
        rows = [f for f in faults if f.kind == kind]
        if rows:
            by_kind[kind] = {
                "injected": len(rows), "detected": sum(f.detected for f in rows),
                "recovered": sum(f.recovered for f in rows),
                "resumed": sum(f.resumed for f in rows),
                "detection_ms": _stats([f.detection_ms for f in rows
                                        if f.detection_ms is not None]),
                "recovery_ms": _stats([f.recovery_ms for f in rows
                                       if f.recovery_ms is not None])}
    max_gap_ms = worst["gap_ms"] if worst else 0.0
    limit_ms = config.max_command_gap_s * 1e3
    undetected = [f for f in faults if not f.detected]
    not_resumed = [f for f in faults if not f.resumed]
    executed = [f for f in faults if f.invalid_plan_executed]

    def where(rows: list[FaultResult]) -> str:
        return ", ".join(f"{f.kind} in {f.episode} at {f.start_s:g} s" for f in rows[:5]) + (
            f" and {len(rows) - 5} more" if len(rows) > 5 else "")

    checks = [
        {"check": "no at-fault collision", "passed": not collisions,
         "detail": f"{len(collisions)} ({', '.join(collisions) or 'none'})"},
        {"check": "every fault detected", "passed": bool(faults) and not undetected,
         "detail": (f"{len(faults) - len(undetected)}/{len(faults)}"
                    + (f"; missed: {where(undetected)}" if undetected else ""))},
        {"check": f"largest command gap <= {limit_ms:g} ms (node stamps)",
         "passed": bool(worst) and worst["commands"] > 1 and max_gap_ms <= limit_ms + 1e-6,
         "detail": (f"{max_gap_ms:.1f} ms ({worst['episode']} at {worst['at_s']} s)"
                    if worst else "no commands")},
        {"check": "driving resumed after each fault",
         "passed": bool(faults) and not not_resumed,
         "detail": (f"{len(faults) - len(not_resumed)}/{len(faults)}"
                    + (f"; not: {where(not_resumed)}" if not_resumed else ""))},
        {"check": "no invalid plan executed", "passed": not executed,
         "detail": f"{len(executed)}" + (f" ({where(executed)})" if executed else "")},
        {"check": f"simulated driving >= {target_sim_s / 60:.2f} min, every episode ran",
         "passed": sim_s >= target_sim_s - 1e-6 and not errors,
         "detail": f"{sim_s / 60:.2f} min in {len(records)} episodes (odometry received "
                   f"over {received_s / 60:.2f} min)"
                   + (f"; errors: {'; '.join(errors)}" if errors else "")},
    ]
    return {"passed": all(c["passed"] for c in checks), "checks": checks,
            "faults": [asdict(f) for f in faults], "by_kind": by_kind,
            "command_gaps": gaps, "max_command_gap_ms": max_gap_ms,
            "sim_minutes": round(sim_s / 60, 2), "episodes": len(records),
            "odometry_minutes": round(received_s / 60, 2),
            "at_fault_collisions": collisions,
            "expert_collisions": [r.label for r in records if r.expert_collision],
            "config": asdict(config)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _pair(stats: dict[str, float] | None) -> str:
    return "-" if stats is None else f"{stats['median']:.0f} / {stats['max']:.0f}"


def markdown(result: dict[str, Any]) -> str:
    """``soak.md``: the pass/fail lines, the per-kind figures and the per-fault table."""
    lines = ["# Closed-loop soak", "",
             f"{result['episodes']} episodes, {result['sim_minutes']} simulated minutes, "
             f"{len(result['faults'])} faults (seed {result['config']['seed']}): "
             f"**{'PASSED' if result['passed'] else 'FAILED'}**", ""]
    lines += [f"- [{'x' if c['passed'] else ' '}] {c['check']}: {c['detail']}"
              for c in result["checks"]]
    lines += ["", "| Fault | Injected | Detected | Recovered | Resumed | Detection ms "
              "(median / max) | Recovery ms (median / max) |", "|---|---|---|---|---|---|---|"]
    for kind, k in result["by_kind"].items():
        lines.append(f"| {kind} | {k['injected']} | {k['detected']} | {k['recovered']} | "
                     f"{k['resumed']} | {_pair(k['detection_ms'])} | "
                     f"{_pair(k['recovery_ms'])} |")
    lines += ["", "| Episode | Fault | At s | Held s | Detection ms | Recovery ms | Detected by "
              "| Resumed | Note |", "|---|---|---|---|---|---|---|---|---|"]
    for f in result["faults"]:
        how = f.get("recovered_how", "")
        held = f"recovered: {how}" if how and how != RECOVERED_OK else ""
        note = "; ".join(n for n in (f["note"], held, "INVALID PLAN EXECUTED"
                                     if f["invalid_plan_executed"] else "") if n)
        lines.append(f"| {f['episode']} | {f['kind']} | {f['start_s']:g} | "
                     f"{f['duration_s']:g} | {_fmt(f['detection_ms'])} | "
                     f"{_fmt(f['recovery_ms'])} | {f['detected_by'] or '-'} | "
                     f"{'yes' if f['resumed'] else 'NO'}: {f['resumed_how']} | {note} |")
    return "\n".join(lines) + "\n"
