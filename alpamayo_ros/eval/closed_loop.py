"""Closed-loop evaluation in process: simulator -> policy -> safety monitor -> controller.

The pure-core twin of the ``simulation`` bring-up, run faster than real time: a
:class:`~alpamayo_ros.sim.simulator.ClosedLoopSim` episode (a data-engine scenario on a
test seed, its expert removed), a :class:`Planner` called at the policy rate on the model
cameras' frames and the odometry history (what the camera-sync and policy nodes feed the
model), the plan delivered to a :class:`~alpamayo_ros.control.core.ControllerCore` after
``plan_latency_s`` (its safety monitor checks the plan against the agents, as the
controller node does), and the controller's 50 Hz commands driving the simulator. As on
the ROS graph, the simulator's driver holds the start speed until the first command that
follows an adopted plan engages the autonomy (``SimConfig.engage_on``), so no row starts
with the controller's minimal-risk stop of the 0.7 s before its first plan.

Rows (one :class:`Planner` each, same scenarios; :func:`run_suite`):

- ``model``: the policy with reasoning (the node's defaults: flow mode, 2 Hz);
- ``model, trajectory only``: the same weights without reasoning, or separate
  trajectory-only weights when given, labelled as what they are;
- ``model, no monitor``: the model's plans go to the tracker unchecked (eval only: the
  controller node always checks);
- ``constant velocity``: holds the current speed and curvature, through the same monitor
  and controller;
- ``expert``: the data engine's expert driving the same scenario in its own world
  (:func:`alpamayo_ros.data.scenarios.simulate`), the reference.

Metrics per scenario (:func:`scenario_metrics`, all from a :class:`Trace` of the ego and
the agents' boxes, one definition for every row):

- ``collision``: an at-fault collision (box overlap) happened. Not at fault (NAVSIM's
  rule): the ego was stopped (< :data:`STOPPED_SPEED_MPS`) or the other box's centre was
  behind the ego's centre (rear-ended);
- ``close_encounter``: no collision, but at some step an agent ahead would overlap the
  ego within :data:`TTC_HORIZON_S` at constant velocities (NAVSIM's TTC term);
- ``off_road``: an ego corner left the paved area;
- ``red_light``: the ego's front bumper crossed a traffic light's stop line while the
  light was red (NAVSIM v2's traffic-light compliance; yellow is not counted);
- ``stop_sign``: the ego's front bumper crossed a stop sign's stop line without having
  stood still (< :data:`STOPPED_SPEED_MPS`) with the bumper within
  :data:`STOP_SIGN_ZONE_M` before it (CARLA leaderboard's "running a stop sign"
  infraction; NAVSIM has no stop-sign term);
- ``oncoming_share``: the share of the run with the ego's centre in an oncoming lane.
  Not a violation by itself (the expert overtakes and nudges out of its lane through the
  oncoming lane), so it is reported, with the expert's, rather than scored;
- ``progress_m``: distance along the route (Frenet ``s``); ``progress_ratio`` is it over
  the expert's in the same scenario, capped at 1 (NAVSIM's ego progress);
- ``comfort``: the executed motion stayed within AR1's comfort bounds
  (:data:`alpamayo_ros.eval.metrics.COMFORT_BOUNDS`), from 10 Hz finite differences;
- ``interventions``: plans the safety monitor rejected, and the share of control cycles
  in DEGRADED or FALLBACK;
- ``pdm_score``: NAVSIM-style PDMS = no-collision x drivable-area x (5 EP + 5 TTC + 2 C)
  / 12 (v1 weights, no drive-direction term).
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from alpamayo_ros.control.config import ControllerConfig
from alpamayo_ros.control.core import ControllerCore
from alpamayo_ros.control.fallback import CommandSource, SafetyState
from alpamayo_ros.data.scenarios import FAMILIES, make_scenario, simulate
from alpamayo_ros.eval.metrics import COMFORT_BOUNDS
from alpamayo_ros.safety.collision import Obstacle, ObstacleClass, boxes_overlap, obstacles_in_frame
from alpamayo_ros.safety.monitor import SafetyReport
from alpamayo_ros.sample import EGO_HISTORY_STEPS
from alpamayo_ros.sim.config import SimConfig
from alpamayo_ros.sim.simulator import ClosedLoopSim, ObstacleState, off_road
from alpamayo_ros.sync.odometry import EgoHistory, EgoPose, OdometryBuffer
from alpamayo_ros.trajectory import Trajectory
from alpamayo_ros.unicycle import NUM_WAYPOINTS

if TYPE_CHECKING:
    from alpamayo_ros.inference.runner import PolicyRunner

RESULTS_VERSION = 3  # 2: red_light, oncoming_share; 3: stop_sign
NS_PER_S = 1_000_000_000
STOPPED_SPEED_MPS = 0.5  # below this a collision is not the ego's fault (NAVSIM)
# A stop counts for a stop sign when made with the front bumper at most this far before
# its line (design choice: two car lengths; CARLA checks a trigger box of similar size).
STOP_SIGN_ZONE_M = 10.0
TTC_HORIZON_S = 1.0  # NAVSIM's time-to-collision horizon
TTC_STEP_S = 0.1
TRACE_DT_S = 0.1  # metrics are computed on 10 Hz samples of every row
HISTORY_STRIDE_S = 0.1  # the model's frames are 0.1 s apart (config/sync.yaml)
COLUMNS = ("collision_rate", "close_encounter_rate", "off_road_rate", "red_light_rate",
           "stop_sign_rate",
           "oncoming_share", "progress_ratio", "progress_m", "comfort", "rejected_plans",
           "fallback_share", "pdm_score", "scenarios")


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ClosedLoopConfig:
    """What the suite runs.

    - ``families`` / ``seeds``: scenarios (every family x every seed). Default: all 20
      families on the 4 test seeds 9000-9003 (80 scenarios; AR1 used 75 of 20 s).
    - ``duration_s``: episode length (AR1's AlpaSim: 20 s); 0 = each family's own.
    - ``policy_rate_hz``: planner calls per second (the policy node's default 2 Hz).
    - ``plan_latency_s``: camera stamp -> the controller receives the plan. Fixed, so
      results do not depend on this machine's speed (the node's measured latency is in
      ``alpamayo bench latency``).
    - ``rig``: the simulator's camera rig (the bring-up's ``ar1``).
    - ``model_cameras`` / ``history_frames``: what the planner reads.
    - ``navigation``: give the planner the scenario's route command (as the simulator
      node publishes it).
    - ``engage_timeout_s``: the simulator's driver holds the start speed at most this long
      waiting for the first command that follows a plan (``SimConfig.engage_timeout_s``),
      then brakes; short, so a row whose plans are all refused gets little of the driver's
      progress. Each scenario records when it engaged (``engaged_at_s``).
    """

    families: tuple[str, ...] = tuple(FAMILIES)
    seeds: tuple[int, ...] = (9000, 9001, 9002, 9003)
    duration_s: float = 20.0
    policy_rate_hz: float = 2.0
    plan_latency_s: float = 0.2
    rig: str = "ar1"
    model_cameras: tuple[str, ...] = ("cross_left", "front_wide", "cross_right", "front_tele")
    history_frames: int = 2
    navigation: bool = True
    engage_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise ValueError(f"families must be a non-empty subset of {sorted(FAMILIES)}, "
                             f"got {list(self.families)}")
        if not self.seeds or any(int(s) < 0 for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of seeds >= 0, got "
                             f"{list(self.seeds)}")
        if not self.duration_s >= 0 or not math.isfinite(self.duration_s):
            raise ValueError(f"duration_s must be >= 0 (0 = family default), got "
                             f"{self.duration_s}")
        if not 0 < self.policy_rate_hz <= 10:
            raise ValueError(f"policy_rate_hz must be in (0, 10] (the camera rate), got "
                             f"{self.policy_rate_hz}")
        if not 0 <= self.plan_latency_s < 1.0 / self.policy_rate_hz + 1e-9:
            raise ValueError(f"plan_latency_s must be in [0, 1 / policy_rate_hz], got "
                             f"{self.plan_latency_s}")
        if not self.engage_timeout_s > 0:
            raise ValueError(f"engage_timeout_s must be > 0, got {self.engage_timeout_s}")
        if self.history_frames < 1:
            raise ValueError(f"history_frames must be >= 1, got {self.history_frames}")
        if not self.model_cameras:
            raise ValueError("model_cameras must name at least one camera")


# --------------------------------------------------------------------------- planners
@dataclass(frozen=True)
class PlanRequest:
    """What a planner sees at a policy tick (the policy node's inputs)."""

    stamp_ns: int  # the newest frames' camera time
    frames: list[list[np.ndarray]]  # [history frame, oldest first][model camera] RGB uint8
    history: EgoHistory  # the model's ego history at stamp_ns
    navigation: str
    curvature_per_m: float  # the ego's current curvature (for kinematic baselines)


@dataclass(frozen=True)
class PlanResult:
    """A plan and, for a reasoning policy, its text and parsed decisions."""

    trajectory: Trajectory
    reasoning: str = ""
    decisions: tuple[str, str] = ("", "")
    inference_s: float = 0.0


class Planner(Protocol):
    """A driving policy in the loop."""

    name: str
    description: str

    def plan(self, request: PlanRequest) -> PlanResult:
        """A plan in the ego frame at ``request.stamp_ns``."""
        ...


class PolicyPlanner:
    """The policy node's core (:class:`~alpamayo_ros.inference.runner.PolicyRunner`)."""

    def __init__(self, runner: PolicyRunner, name: str, description: str) -> None:
        self.runner, self.name, self.description = runner, name, description

    def plan(self, request: PlanRequest) -> PlanResult:
        """Build the model's sample from the request and run the policy once."""
        sample = self.runner.build_sample(request.frames, request.stamp_ns, request.history,
                                          request.navigation)
        t0 = time.perf_counter()
        out = self.runner.infer(sample)
        return PlanResult(out.trajectory, out.coc.text,
                          (out.coc.longitudinal_decision, out.coc.lateral_decision),
                          time.perf_counter() - t0)


class ConstantVelocityPlanner:
    """Holds the current speed and curvature for 6.4 s."""

    name = "constant velocity"
    description = "current speed and curvature held (through the same monitor)"

    def plan(self, request: PlanRequest) -> PlanResult:
        """Zero acceleration at the current curvature from the current speed."""
        v0 = float(request.history.pose.speed_mps)
        traj = Trajectory.from_controls(
            np.zeros(NUM_WAYPOINTS), np.full(NUM_WAYPOINTS, request.curvature_per_m), v0,
            stamp_ns=request.stamp_ns, frame_id="base_link", model_id="constant_velocity",
            model_version="1")
        return PlanResult(traj)


def policy_planner(weights_dir: str | Path, reasoning: bool, name: str, description: str,
                   config: ClosedLoopConfig, device: str = "cpu",
                   max_reasoning_tokens: int = 0, policy: Any = None) -> PolicyPlanner:
    """A :class:`PolicyPlanner` with the policy node's defaults (``PolicyNodeConfig``)."""
    from alpamayo_ros.inference.config import PolicyNodeConfig
    from alpamayo_ros.inference.runner import PolicyRunner, load_rig_geometry
    from alpamayo_ros.model.policy import Policy

    node_cfg = PolicyNodeConfig(weights_dir=str(weights_dir), device=device,
                                rate_hz=config.policy_rate_hz, reasoning=reasoning,
                                max_reasoning_tokens=max_reasoning_tokens,
                                model_cameras=list(config.model_cameras),
                                camera_rig=config.rig, seed=0)
    if policy is None:
        policy = Policy.from_pretrained(weights_dir, device=device)
    return PolicyPlanner(PolicyRunner(node_cfg, policy, load_rig_geometry(config.rig)),
                         name, description)


# --------------------------------------------------------------------------- controllers
class UnmonitoredController(ControllerCore):
    """Eval only: adopts every plan without the safety monitor (the no-monitor variant).

    Policy silence still falls back (that is the watchdog, not the monitor).
    """

    def submit_plan(self, traj: Trajectory, now_ns: int, obstacles: Any = None,
                    obstacles_stamp_ns: int | None = None) -> tuple[SafetyReport, bool]:
        """Adopt ``traj`` (unless older than the active plan) without any check."""
        with self._lock:
            self._last_arrival_ns = int(now_ns)
            report = SafetyReport(traj.stamp_ns, int(now_ns), ())
            self._latest_report, self._latest_rejected = report, False
            if self._active is not None and traj.stamp_ns < self._active.stamp_ns:
                return report, False
            self._active, self._invalid_reason = traj, ""
            return report, True

    def update_obstacles(self, obstacles: Any, now_ns: int,
                         obstacles_stamp_ns: int | None = None) -> None:
        """Ignored: without the monitor no plan is dropped for a collision course."""
        return None


# --------------------------------------------------------------------------- traces
@dataclass
class Trace:
    """10 Hz samples of one scenario run, the input of :func:`scenario_metrics`."""

    family: str
    seed: int
    row: str
    t_s: list[float] = field(default_factory=list)
    ego: list[tuple[float, float, float, float]] = field(default_factory=list)  # x y h v
    s_m: list[float] = field(default_factory=list)  # route progress (Frenet s)
    off_road: list[bool] = field(default_factory=list)
    oncoming: list[bool] = field(default_factory=list)  # centre in an oncoming lane
    # the scenario's traffic lights: (id, stop line s in m, [(start s, colour), ...])
    lights: list[tuple[str, float, list[tuple[float, str]]]] = field(default_factory=list)
    # the scenario's stop signs: (id, stop line s in m)
    stop_signs: list[tuple[str, float]] = field(default_factory=list)
    # per step: (N, 7) agents x, y, yaw, length, width, vx, vy (map frame) and their ids
    agents: list[np.ndarray] = field(default_factory=list)
    agent_ids: list[tuple[str, ...]] = field(default_factory=list)
    ego_size_m: tuple[float, float] = (4.8, 2.0)
    plans: list[dict[str, Any]] = field(default_factory=list)
    rejected_plans: int = 0
    control_cycles: int = 0
    fallback_cycles: int = 0
    inference_s: list[float] = field(default_factory=list)
    engaged_at_s: float | None = None  # the autonomy took over from the sim's driver

    def add(self, t_s: float, x: float, y: float, h: float, v: float, s: float,
            is_off_road: bool, agents: np.ndarray, ids: tuple[str, ...],
            in_oncoming_lane: bool = False) -> None:
        """One 10 Hz sample."""
        self.t_s.append(t_s)
        self.ego.append((x, y, h, v))
        self.s_m.append(s)
        self.off_road.append(bool(is_off_road))
        self.oncoming.append(bool(in_oncoming_lane))
        self.agents.append(agents)
        self.agent_ids.append(ids)


def trace_lights(world: Any) -> list[tuple[str, float, list[tuple[float, str]]]]:
    """A world's traffic lights as :attr:`Trace.lights` holds them."""
    return [(tl.id, float(tl.stop_line_s), [(float(t), str(c)) for t, c in tl.schedule])
            for tl in world.lights]


def trace_stop_signs(world: Any) -> list[tuple[str, float]]:
    """A world's stop signs as :attr:`Trace.stop_signs` holds them."""
    return [(sign.id, float(sign.stop_line_s)) for sign in world.stop_signs]


def in_oncoming_lane(world: Any, d_m: float) -> bool:
    """Whether lateral offset ``d_m`` lies in one of the road's oncoming lanes."""
    road = world.road
    return road.lane_direction(road.lane_of(d_m)) < 0


def _obstacle_array(obstacles: Sequence[ObstacleState]) -> tuple[np.ndarray, tuple[str, ...]]:
    arr = np.array([[o.x_m, o.y_m, o.yaw_rad, o.length_m, o.width_m, o.vx_mps, o.vy_mps]
                    for o in obstacles], dtype=np.float64).reshape(-1, 7)
    return arr, tuple(o.id for o in obstacles)


def safety_obstacles(obstacles: Sequence[ObstacleState]) -> list[Obstacle]:
    """Simulator agents as the safety monitor's obstacles (map frame)."""
    return [Obstacle(o.x_m, o.y_m, o.yaw_rad, o.length_m, o.width_m, o.vx_mps, o.vy_mps,
                     o.height_m, o.id, ObstacleClass(o.classification)
                     if o.classification in ObstacleClass._value2member_map_
                     else ObstacleClass.UNKNOWN)
            for o in obstacles]


# --------------------------------------------------------------------------- metrics
def collisions(trace: Trace) -> list[dict[str, Any]]:
    """Start of every ego-agent box overlap, with ``at_fault`` (see module docstring)."""
    out, touching = [], set()
    half_ego = np.array([trace.ego_size_m[0] / 2, trace.ego_size_m[1] / 2])
    for t, (x, y, h, v), agents, ids in zip(trace.t_s, trace.ego, trace.agents,
                                            trace.agent_ids):
        hits = set()
        if len(agents):
            overlap = boxes_overlap(np.array([x, y]), np.array(h), half_ego, agents[:, :2],
                                    agents[:, 2], agents[:, 3:5] / 2)
            hits = {i for i, hit in enumerate(overlap) if hit}
        for i in sorted(hits):
            if ids[i] in touching:
                continue
            dx, dy = agents[i, 0] - x, agents[i, 1] - y
            ahead_m = math.cos(h) * dx + math.sin(h) * dy
            rear_ended = ahead_m < 0.0
            stopped = v < STOPPED_SPEED_MPS
            out.append({"t_s": round(t, 2), "agent": ids[i], "ego_speed_mps": round(v, 2),
                        "at_fault": not (rear_ended or stopped)})
        touching = {ids[i] for i in hits}
    return out


def light_colour(schedule: Sequence[tuple[float, str]], t_s: float) -> str:
    """A light's colour at ``t_s`` from its schedule (as world.TrafficLight.state)."""
    current = schedule[0][1]
    for start, colour in schedule:
        if t_s + 1e-9 >= start:
            current = colour
    return current


def red_light_violations(trace: Trace) -> list[dict[str, Any]]:
    """Every stop line the ego's front bumper crossed while its light was red."""
    out = []
    half = trace.ego_size_m[0] / 2
    for k in range(1, len(trace.s_m)):
        before, after = trace.s_m[k - 1] + half, trace.s_m[k] + half
        for light_id, line_s, schedule in trace.lights:
            if before < line_s <= after and light_colour(schedule, trace.t_s[k]) == "red":
                out.append({"t_s": round(trace.t_s[k], 2), "light": light_id})
    return out


def stop_sign_violations(trace: Trace) -> list[dict[str, Any]]:
    """Every stop line the front bumper crossed without a stop in the zone before it."""
    out = []
    half = trace.ego_size_m[0] / 2
    for sign_id, line_s in trace.stop_signs:
        stopped = False
        for k in range(len(trace.s_m)):
            front = trace.s_m[k] + half
            if line_s - STOP_SIGN_ZONE_M <= front <= line_s and \
                    trace.ego[k][3] < STOPPED_SPEED_MPS:
                stopped = True
            if k and trace.s_m[k - 1] + half < line_s <= front:
                if not stopped:
                    out.append({"t_s": round(trace.t_s[k], 2), "sign": sign_id,
                                "speed_mps": round(trace.ego[k][3], 2)})
                break
    return out


def close_encounter(trace: Trace) -> bool:
    """Whether an agent ahead would overlap the ego within :data:`TTC_HORIZON_S`.

    Constant velocities of both, at a step without an overlap already.
    """
    half_ego = np.array([trace.ego_size_m[0] / 2, trace.ego_size_m[1] / 2])
    horizon = np.arange(TTC_STEP_S, TTC_HORIZON_S + 1e-9, TTC_STEP_S)
    for (x, y, h, v), agents in zip(trace.ego, trace.agents):
        if not len(agents) or v < STOPPED_SPEED_MPS:
            continue
        c, s = math.cos(h), math.sin(h)
        ahead = c * (agents[:, 0] - x) + s * (agents[:, 1] - y) > 0.0
        if not ahead.any():
            continue
        a = agents[ahead]
        if boxes_overlap(np.array([x, y]), np.array(h), half_ego, a[:, :2], a[:, 2],
                         a[:, 3:5] / 2).any():
            continue  # a collision, counted there
        for dt in horizon:
            centre = np.array([x + c * v * dt, y + s * v * dt])
            moved = a[:, :2] + a[:, 5:7] * dt
            if boxes_overlap(centre, np.array(h), half_ego, moved, a[:, 2],
                             a[:, 3:5] / 2).any():
                return True
    return False


def motion_comfort(trace: Trace) -> tuple[bool, dict[str, float]]:
    """Whether the executed 10 Hz motion stays within AR1's comfort bounds; worst values."""
    ego = np.asarray(trace.ego, dtype=np.float64)
    if len(ego) < 4:
        return True, {}
    dt = TRACE_DT_S
    v = ego[:, 3]
    yaw = np.unwrap(ego[:, 2])
    acc = np.diff(v) / dt
    jerk = np.diff(acc) / dt
    yaw_rate = np.diff(yaw) / dt
    yaw_acc = np.diff(yaw_rate) / dt
    lat_acc = v[1:] * yaw_rate
    worst = {
        "longitudinal_jerk_mps3": float(np.max(np.abs(jerk))),
        "lateral_accel_mps2": float(np.max(np.abs(lat_acc))),
        "max_longitudinal_accel_mps2": float(np.max(acc)),
        "min_longitudinal_accel_mps2": float(np.min(acc)),
        "yaw_rate_radps": float(np.max(np.abs(yaw_rate))),
        "yaw_accel_radps2": float(np.max(np.abs(yaw_acc))),
    }
    broken = {
        "longitudinal_jerk_mps3": worst["longitudinal_jerk_mps3"]
        > COMFORT_BOUNDS["longitudinal_jerk_mps3"],
        "lateral_accel_mps2": worst["lateral_accel_mps2"] > COMFORT_BOUNDS["lateral_accel_mps2"],
        "max_longitudinal_accel_mps2": worst["max_longitudinal_accel_mps2"]
        > COMFORT_BOUNDS["max_longitudinal_accel_mps2"],
        "min_longitudinal_accel_mps2": worst["min_longitudinal_accel_mps2"]
        < COMFORT_BOUNDS["min_longitudinal_accel_mps2"],
        "yaw_rate_radps": worst["yaw_rate_radps"] > COMFORT_BOUNDS["yaw_rate_radps"],
        "yaw_accel_radps2": worst["yaw_accel_radps2"] > COMFORT_BOUNDS["yaw_accel_radps2"],
    }
    return not any(broken.values()), {k: round(worst[k], 3) for k, b in broken.items() if b}


def pdm_score(collision: bool, is_off_road: bool, progress_ratio: float,
              encounter: bool, comfortable: bool) -> float:
    """NAVSIM-style PDMS: NC x DAC x (5 EP + 5 TTC + 2 C) / 12 (v1 weights)."""
    if collision or is_off_road:
        return 0.0
    ep = min(max(progress_ratio, 0.0), 1.0)
    return (5.0 * ep + 5.0 * (0.0 if encounter else 1.0) + 2.0 * float(comfortable)) / 12.0


def scenario_metrics(trace: Trace, expert_progress_m: float | None) -> dict[str, Any]:
    """Every per-scenario metric of a trace (see the module docstring)."""
    hits = collisions(trace)
    at_fault = any(h["at_fault"] for h in hits)
    encounter = not hits and close_encounter(trace)
    progress_m = float(trace.s_m[-1] - trace.s_m[0]) if trace.s_m else 0.0
    if expert_progress_m is None:
        ratio = 1.0
    elif expert_progress_m <= 0.5:  # the expert stays put: any non-negative progress is fine
        ratio = 1.0 if progress_m >= -0.5 else 0.0
    else:
        ratio = min(max(progress_m / expert_progress_m, 0.0), 1.0)
    comfortable, broken = motion_comfort(trace)
    left_road = any(trace.off_road)
    red = red_light_violations(trace)
    ran_stop_signs = stop_sign_violations(trace)
    return {
        "family": trace.family, "seed": trace.seed,
        "collision": at_fault, "collisions": hits,
        "close_encounter": encounter, "off_road": left_road,
        "red_light": bool(red), "red_lights": red,
        "stop_sign": bool(ran_stop_signs), "stop_signs": ran_stop_signs,
        "oncoming_share": (round(float(np.mean(trace.oncoming)), 4) if trace.oncoming
                           else 0.0),
        "progress_m": round(progress_m, 2), "progress_ratio": round(ratio, 4),
        "comfort": comfortable, "comfort_broken": broken,
        "rejected_plans": trace.rejected_plans, "plans": len(trace.plans),
        "fallback_share": (trace.fallback_cycles / trace.control_cycles
                           if trace.control_cycles else 0.0),
        "pdm_score": round(pdm_score(at_fault, left_road, ratio, encounter, comfortable), 4),
        "final_speed_mps": round(trace.ego[-1][3], 2) if trace.ego else 0.0,
        "median_inference_ms": (round(1e3 * float(np.median(trace.inference_s)), 1)
                                if trace.inference_s else None),
        "decisions": _decision_summary(trace.plans),
        "engaged_at_s": trace.engaged_at_s,
    }


def _decision_summary(plans: list[dict[str, Any]]) -> dict[str, Any]:
    """Most frequent parsed decisions and one cited text (reasoning planners only)."""
    texts = [p for p in plans if p.get("reasoning")]
    if not texts:
        return {}
    lon = Counter(p["decisions"][0] or "unparsed" for p in texts)
    lat = Counter(p["decisions"][1] or "unparsed" for p in texts)
    return {"longitudinal": dict(lon.most_common()), "lateral": dict(lat.most_common()),
            "example": texts[len(texts) // 2]["reasoning"]}


# --------------------------------------------------------------------------- running
PlanCallback = Callable[[str, Trace, dict[str, Any]], None]


def run_planner(planner: Planner, family: str, seed: int, config: ClosedLoopConfig,
                monitor: bool = True, on_plan: PlanCallback | None = None,
                frame_sink: Callable[[dict[str, Any]], None] | None = None) -> Trace:
    """One scenario closed loop with ``planner`` (see the module docstring).

    ``on_plan(row, trace, plan_record)`` is called after each plan reaches the controller
    (progress display). ``frame_sink`` receives, at each plan, the images, plan, ego and
    agents (the demo's report).
    """
    sim_cfg = SimConfig(family=family, seed=seed, duration_s=config.duration_s,
                        on_end="stop", rig=config.rig, publish_clock=False,
                        real_time_factor=0.0, engage_timeout_s=config.engage_timeout_s)
    sim = ClosedLoopSim(sim_cfg)
    ctl_cfg = ControllerConfig()
    controller: ControllerCore = (ControllerCore(ctl_cfg) if monitor
                                  else UnmonitoredController(ctl_cfg))
    odometry = OdometryBuffer(horizon_s=EGO_HISTORY_STEPS * 0.1 + 1.0)
    trace = Trace(family, seed, planner.name,
                  ego_size_m=(sim.world.ego.length_m, sim.world.ego.width_m),
                  lights=trace_lights(sim.world), stop_signs=trace_stop_signs(sim.world))
    navigation = sim.navigation if config.navigation else ""
    rate = sim_cfg.physics_rate_hz
    ticks_per_plan = int(round(rate / config.policy_rate_hz))
    ticks_per_control = max(1, int(round(rate * ctl_cfg.period_s)))
    ticks_per_trace = int(round(rate * TRACE_DT_S))
    latency_ticks = int(round(rate * config.plan_latency_s))
    frames: deque[tuple[int, list[np.ndarray]]] = deque(maxlen=config.history_frames)
    obstacles_map: list[Obstacle] = []
    obstacle_array, obstacle_ids = np.zeros((0, 7)), ()
    poses: dict[int, EgoPose] = {}
    pending: list[tuple[int, PlanResult]] = []
    while not sim.finished:
        tick, now_ns = sim.tick, sim.time_ns
        pose = sim.ego
        if sim.odometry_due():
            odom = EgoPose(now_ns, pose.x_m, pose.y_m, pose.heading_rad, pose.speed_mps)
            odometry.add(odom)
            poses[now_ns] = odom
        if sim.camera_due():
            states = sim.obstacles()
            obstacles_map = safety_obstacles(states)
            obstacle_array, obstacle_ids = _obstacle_array(states)
            frames.append((now_ns, sim.render(list(config.model_cameras))))
            if monitor:
                controller.update_obstacles(
                    obstacles_in_frame(obstacles_map, pose.x_m, pose.y_m, pose.heading_rad),
                    now_ns, now_ns)
        if tick % ticks_per_trace == 0:
            trace.add(sim.episode_time_s, pose.x_m, pose.y_m, pose.heading_rad,
                      pose.speed_mps, sim.world.ego.s, sim.status.off_road, obstacle_array,
                      obstacle_ids, in_oncoming_lane(sim.world, sim.world.ego.d))
        if tick % ticks_per_plan == 0 and tick > 0 and len(frames) == config.history_frames:
            stamps = [s for s, _ in frames]
            regular = all(b - a == int(HISTORY_STRIDE_S * NS_PER_S)
                          for a, b in zip(stamps, stamps[1:]))
            history = odometry.history_at(stamps[-1])
            if regular and history is not None:
                request = PlanRequest(stamps[-1], [imgs for _, imgs in frames], history,
                                      navigation, pose.curvature_per_m)
                result = planner.plan(request)
                pending.append((tick + latency_ticks, result))
                if frame_sink is not None:
                    frame_sink({"t_s": sim.episode_time_s, "images": frames[-1][1],
                                "plan": result, "ego": pose, "obstacles": sim.obstacles(),
                                "world": sim.world})
        for due, result in [p for p in pending if p[0] <= tick]:
            pending.remove((due, result))
            plan_pose = odometry.pose_at(result.trajectory.stamp_ns)
            local = (obstacles_in_frame(obstacles_map, plan_pose.x_m, plan_pose.y_m,
                                        plan_pose.heading_rad) if plan_pose else [])
            report, accepted = controller.submit_plan(result.trajectory, now_ns, local,
                                                      result.trajectory.stamp_ns)
            if not report.passed:
                trace.rejected_plans += 1
            record = {"t_s": round(sim.episode_time_s, 2), "accepted": bool(accepted),
                      "failed_checks": list(report.failed_checks),
                      "reasoning": result.reasoning, "decisions": list(result.decisions)}
            trace.plans.append(record)
            if result.inference_s:
                trace.inference_s.append(result.inference_s)
            if on_plan is not None:
                on_plan(planner.name, trace, record)
        if tick % ticks_per_control == 0:
            command, status = controller.step(now_ns, pose.speed_mps)
            sim.set_command(command.acceleration_mps2, command.curvature_per_m,
                            from_plan=command.source == CommandSource.POLICY)
            if trace.engaged_at_s is None and sim.status.engaged:
                trace.engaged_at_s = round(sim.episode_time_s, 2)
            trace.control_cycles += 1
            trace.fallback_cycles += status.state != SafetyState.OK
        sim.step()
    return trace


def expert_trace(family: str, seed: int, config: ClosedLoopConfig) -> Trace:
    """The data engine's expert on the same scenario, sampled like the other rows."""
    scenario = make_scenario(family, seed, config.duration_s or None)
    world = scenario.world
    ego = world.ego
    trace = Trace(family, seed, "expert", ego_size_m=(ego.length_m, ego.width_m),
                  lights=trace_lights(world), stop_signs=trace_stop_signs(world),
                  engaged_at_s=0.0)
    episode = simulate(scenario)
    for frame in episode.frames:
        e = frame.ego
        agents = np.array([[a.x, a.y, a.heading, a.length_m, a.width_m,
                            a.v_mps * math.cos(a.heading), a.v_mps * math.sin(a.heading)]
                           for a in frame.agents], dtype=np.float64).reshape(-1, 7)
        trace.add(frame.time_s, e.x, e.y, e.heading, e.v_mps, e.s,
                  off_road(world, e.x, e.y, e.heading, e.length_m, e.width_m, s_hint=e.s),
                  agents, tuple(a.id for a in frame.agents), in_oncoming_lane(world, e.d))
    return trace


# --------------------------------------------------------------------------- the suite
@dataclass(frozen=True)
class Row:
    """One row of the suite: a planner and whether the monitor checks its plans."""

    planner: Planner | None  # None: the expert
    monitor: bool = True
    name: str = ""
    description: str = ""


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Row metrics: rates and means over scenarios."""
    n = len(records)
    if not n:
        return {c: None for c in COLUMNS}

    def mean(key: str) -> float:
        return round(float(np.mean([float(r[key]) for r in records])), 4)

    return {
        "collision_rate": mean("collision"), "close_encounter_rate": mean("close_encounter"),
        "off_road_rate": mean("off_road"), "red_light_rate": mean("red_light"),
        "stop_sign_rate": mean("stop_sign"),
        "oncoming_share": mean("oncoming_share"), "progress_ratio": mean("progress_ratio"),
        "progress_m": mean("progress_m"), "comfort": mean("comfort"),
        "rejected_plans": round(float(np.sum([r["rejected_plans"] for r in records])) /
                                max(1, sum(r["plans"] for r in records)), 4),
        "fallback_share": mean("fallback_share"), "pdm_score": mean("pdm_score"),
        "scenarios": n,
    }


def run_suite(rows: Sequence[Row], config: ClosedLoopConfig, progress: bool = True,
              on_plan: PlanCallback | None = None) -> dict[str, Any]:
    """Every row on every scenario; JSON-ready results (:func:`write_results`)."""
    scenarios = [(f, int(s)) for f in config.families for s in config.seeds]
    expert_progress: dict[tuple[str, int], float] = {}
    for family, seed in scenarios:  # the reference for progress_ratio
        trace = expert_trace(family, seed, config)
        expert_progress[(family, seed)] = float(trace.s_m[-1] - trace.s_m[0])
    out_rows = []
    started = time.perf_counter()
    for row in rows:
        name = row.name or (row.planner.name if row.planner else "expert")
        records = []
        t0 = time.perf_counter()
        for i, (family, seed) in enumerate(scenarios):
            if row.planner is None:
                trace = expert_trace(family, seed, config)
            else:
                trace = run_planner(row.planner, family, seed, config, row.monitor, on_plan)
            trace.row = name
            ref = None if row.planner is None else expert_progress[(family, seed)]
            records.append(scenario_metrics(trace, ref))
            if progress:
                r = records[-1]
                print(f"  [{name}] {i + 1}/{len(scenarios)} {family} {seed}: "
                      f"progress {r['progress_m']:.0f} m, collision {r['collision']}, "
                      f"off-road {r['off_road']}, red light {r['red_light']}, "
                      f"pdms {r['pdm_score']:.2f}",
                      file=sys.stderr, flush=True)
        out_rows.append({"name": name, "description": row.description or (
            row.planner.description if row.planner else "the data engine's expert driver"),
            "monitor": row.monitor, "metrics": summarize(records),
            "by_family": {f: summarize([r for r in records if r["family"] == f])
                          for f in config.families},
            "scenarios": records, "wall_s": round(time.perf_counter() - t0, 1)})
    return {"version": RESULTS_VERSION, "config": asdict(config), "rows": out_rows,
            "wall_s": round(time.perf_counter() - started, 1)}


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "–"
    if column == "scenarios":
        return str(int(value))
    if column == "progress_m":
        return f"{value:.0f}"
    if column.endswith("_rate") or column in ("comfort", "fallback_share", "rejected_plans"):
        return f"{100 * value:.1f} %"
    return f"{value:.3f}"


def results_markdown(results: dict[str, Any], title: str = "Closed-loop evaluation") -> str:
    """The rows as a markdown table, then a per-family PDM score table."""
    cfg = results["config"]
    lines = [f"# {title}", "",
             f"{len(cfg['families'])} families x seeds {cfg['seeds']} "
             f"({len(cfg['families']) * len(cfg['seeds'])} scenarios of "
             f"{cfg['duration_s'] or 'the family length'} s), policy at "
             f"{cfg['policy_rate_hz']} Hz, plan latency {cfg['plan_latency_s']} s, "
             f"rig {cfg['rig']}.", "",
             "| row | " + " | ".join(COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for row in results["rows"]:
        m = row["metrics"]
        lines.append(f"| {row['name']} | " + " | ".join(_cell(m[c], c) for c in COLUMNS)
                     + " |")
    lines += ["", "PDM score by family:", "",
              "| family | " + " | ".join(r["name"] for r in results["rows"]) + " |",
              "|---|" + "---|" * len(results["rows"])]
    for family in cfg["families"]:
        cells = [_cell(r["by_family"][family]["pdm_score"], "pdm_score")
                 for r in results["rows"]]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``closed_loop.json`` and ``closed_loop.md`` in ``out_dir``."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "closed_loop.json", out / "closed_loop.md"
    json_path.write_text(json.dumps(results, indent=1))
    md_path.write_text(results_markdown(results))
    return json_path, md_path
