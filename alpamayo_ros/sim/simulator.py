"""Closed-loop simulator: the data engine's world with an ego driven by external commands.

:class:`ClosedLoopSim` builds a scenario of the data engine (``make_scenario(family,
seed)``) but drops its expert: the ego follows ``(acceleration_mps2, curvature_per_m)``
commands (the AR1 action space), integrated with the unicycle at ``physics_rate_hz``
(50 Hz by default). Agents and traffic lights keep stepping at the world's 10 Hz with
their own reactive behaviour (IDM car following, scripted cut-ins and braking, waiting
pedestrians), and they react to the commanded ego exactly as they react to the expert:
after every physics step the ego's world pose is projected back to the Frenet
``EgoState`` the agents read (:func:`alpamayo_ros.sim.ego.sync_world_ego`).

Time is counted in physics ticks from the first episode and never goes back (an episode
restart keeps it running), so it can drive ``/clock``. At a tick,
:meth:`ClosedLoopSim.odometry_due` / :meth:`camera_due` say what to publish;
:meth:`render` gives one RGB image per rig camera (the data engine's
:class:`~alpamayo_ros.data.render.SceneRenderer`), :meth:`obstacles` the agents as
oriented boxes with velocity in the map frame, :attr:`ego` the pose and speed.

Commands (decisions, documented in README.md, "Simulation and bags"):

- Engagement: until the autonomy engages, the sim's driver holds the start speed on the
  road's curvature (mode INITIAL), as a safety driver does before handing over. With
  ``engage_on="policy"`` (the default) the first command that follows a plan engages
  (:meth:`ClosedLoopSim.set_command` with ``from_plan=True``; over ROS the
  ``ControlCommand`` source POLICY); stop commands before it (the controller's
  minimal-risk stop while it has no plan yet) are counted in
  ``commands_before_engagement`` and not applied, so a policy that needs a second to
  start does not begin its episode with a hard brake and an ego history nobody drives
  like. With ``engage_on="any"`` the first command of any source engages. Not engaged
  after ``engage_timeout_s``: the driver brakes at ``timeout_decel_mps2``.
- Engaged, a command is held until the next one. Older than ``command_timeout_s`` (sim
  time), the sim brakes at ``timeout_decel_mps2`` to a stop, holding the last curvature.
- Non-finite commands are rejected (counted, never applied); finite ones are clipped to
  the AR1 action bounds (|a| <= 9.8 m/s^2, |kappa| <= 0.2 1/m) and counted when clipped.

Events: the start of a collision with an agent (box overlap), leaving and re-entering
the paved area (any ego corner outside the lanes, shoulder, ramps and junctions), a
command timeout, the end and start of episodes. Collisions are reported, not resolved:
there is no contact physics, the ego drives through.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace

import numpy as np

from alpamayo_ros.data.bag import CLASSIFICATION
from alpamayo_ros.data.cameras import CameraConfig, make_rig
from alpamayo_ros.data.render import SceneRenderer
from alpamayo_ros.data.scenarios import (
    AgentSnapshot,
    Episode,
    Frame,
    agent_snapshot,
    make_scenario,
)
from alpamayo_ros.data.world import DT_S, Agent, World, agent_world_pose, box_corners
from alpamayo_ros.safety.collision import boxes_overlap
from alpamayo_ros.sim.config import SimConfig
from alpamayo_ros.sim.ego import (
    EgoPose,
    ego_pose_from_state,
    frenet_from_world_many,
    step_ego,
    sync_world_ego,
)
from alpamayo_ros.unicycle import MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M

NS_PER_S = 1_000_000_000
JUNCTION_HALF_LENGTH_M = 60.0  # the renderer draws crossing roads 60 m to each side


class CommandMode(str, enum.Enum):
    """Where the control applied to the ego comes from."""

    INITIAL = "initial"  # not engaged yet this episode: start speed on the road curvature
    COMMAND = "command"  # a command younger than command_timeout_s
    TIMEOUT = "timeout"  # commands stopped: braking to a stop


@dataclass(frozen=True)
class ObstacleState:
    """An agent as an oriented box in the map frame (the twin of ``msg/Obstacle.msg``)."""

    id: str
    kind: str
    classification: int  # Obstacle.CLASS_*
    x_m: float
    y_m: float
    z_m: float  # box centre height
    yaw_rad: float
    length_m: float
    width_m: float
    height_m: float
    vx_mps: float
    vy_mps: float


@dataclass(frozen=True)
class SimEvent:
    """Something the node reports (log and diagnostics)."""

    time_ns: int  # sim time since the first episode started
    episode: int
    kind: str  # collision | off_road | on_road | command_timeout | episode_end | episode_start
    detail: str = ""


@dataclass
class SimStatus:
    """Counters and current flags (for diagnostics)."""

    episodes: int = 0
    collisions: int = 0
    off_road_events: int = 0
    command_timeouts: int = 0
    commands_applied: int = 0
    commands_rejected: int = 0
    commands_clipped: int = 0
    commands_before_engagement: int = 0  # not from a plan, before engagement: not applied
    in_collision: set[str] = field(default_factory=set)
    off_road: bool = False
    mode: CommandMode = CommandMode.INITIAL
    engaged: bool = False  # a command was applied this episode (module doc, "Engagement")
    finished: bool = False


class ClosedLoopSim:
    """The data engine's world stepped by external ego commands (see module docstring)."""

    def __init__(self, config: SimConfig = SimConfig()) -> None:
        self.config = config
        self.rig = make_rig(config.rig)
        self.tick = 0
        self.status = SimStatus()
        self._events: list[SimEvent] = []
        self.seed = config.seed
        self._start_episode(config.seed)

    # ------------------------------------------------------------------ episodes
    def _start_episode(self, seed: int) -> None:
        cfg = self.config
        self.seed = seed
        scenario = make_scenario(cfg.family, seed, cfg.duration_s or None)
        self.duration_s = scenario.duration_s
        self.world: World = scenario.world
        road, ego = self.world.road, self.world.ego
        if cfg.initial_speed_mps >= 0:
            ego.v_mps = cfg.initial_speed_mps
        self._pose = replace(ego_pose_from_state(road, ego), acceleration_mps2=0.0)
        sync_world_ego(road, ego, self._pose)
        self.episode_start_tick = self.tick
        self._command = (0.0, self._pose.curvature_per_m)
        self._command_tick = self.tick
        self.status.mode = CommandMode.INITIAL
        self.status.engaged = False
        self.status.episodes += 1
        self.status.in_collision = set()
        self.status.off_road = False
        self.status.finished = False
        self.navigation = scenario.navigation  # the route command of this episode ("" = none)
        self._episode = Episode(cfg.family, seed, self.world, [])
        self._renderer = SceneRenderer(self._episode)
        self._emit("episode_start", f"{cfg.family} seed {seed}")
        self._check_contacts()

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode (same family) with ``seed`` (default: the current one)."""
        self._start_episode(self.seed if seed is None else seed)

    # ------------------------------------------------------------------ time
    @property
    def physics_dt_s(self) -> float:
        """Seconds per physics tick."""
        return 1.0 / self.config.physics_rate_hz

    @property
    def time_ns(self) -> int:
        """Sim time since the first episode started (monotonic across restarts)."""
        return int(round(self.tick * NS_PER_S / self.config.physics_rate_hz))

    @property
    def time_s(self) -> float:
        """:attr:`time_ns` in seconds."""
        return self.tick / self.config.physics_rate_hz

    @property
    def episode_time_s(self) -> float:
        """Seconds since the current episode started."""
        return (self.tick - self.episode_start_tick) / self.config.physics_rate_hz

    @property
    def episode(self) -> int:
        """1-based index of the current episode."""
        return self.status.episodes

    @property
    def finished(self) -> bool:
        """The episode ended and ``on_end`` is ``"stop"``: nothing more to publish."""
        return self.status.finished

    def odometry_due(self) -> bool:
        """Whether odometry is published at the current tick."""
        return not self.finished and self.tick % self.config.ticks_per_odometry == 0

    def camera_due(self) -> bool:
        """Whether camera frames and obstacles are published at the current tick."""
        return not self.finished and self.tick % self.config.ticks_per_camera == 0

    # ------------------------------------------------------------------ commands
    def set_command(self, acceleration_mps2: float, curvature_per_m: float,
                    from_plan: bool = True) -> bool:
        """Apply a command from now on; False (and counted) when it is not finite.

        ``from_plan``: the command follows a plan (``ControlCommand.SOURCE_POLICY``);
        before engagement with ``engage_on="policy"`` other commands are counted and not
        applied (returns True: nothing was wrong with them).
        """
        try:
            a, k = float(acceleration_mps2), float(curvature_per_m)
        except (TypeError, ValueError):
            self.status.commands_rejected += 1
            return False
        if not (math.isfinite(a) and math.isfinite(k)):
            self.status.commands_rejected += 1
            return False
        if not self.status.engaged and not from_plan and self.config.engage_on == "policy":
            self.status.commands_before_engagement += 1
            return True
        ca = min(max(a, -MAX_ABS_ACCELERATION_MPS2), MAX_ABS_ACCELERATION_MPS2)
        ck = min(max(k, -MAX_ABS_CURVATURE_PER_M), MAX_ABS_CURVATURE_PER_M)
        if (ca, ck) != (a, k):
            self.status.commands_clipped += 1
        self._command = (ca, ck)
        self._command_tick = self.tick
        self.status.commands_applied += 1
        self.status.engaged = True
        if self.status.mode != CommandMode.COMMAND:
            self.status.mode = CommandMode.COMMAND
        return True

    def effective_command(self) -> tuple[float, float]:
        """The ``(acceleration, curvature)`` the next physics step applies."""
        age_s = (self.tick - self._command_tick) / self.config.physics_rate_hz
        limit_s = (self.config.command_timeout_s if self.status.engaged
                   else self.config.engage_timeout_s)
        if age_s >= limit_s - 1e-9:  # this step would outlive it
            if self.status.mode != CommandMode.TIMEOUT:
                self.status.mode = CommandMode.TIMEOUT
                self.status.command_timeouts += 1
                self._emit("command_timeout", f"no command for {age_s:.2f} s: braking at "
                                              f"{self.config.timeout_decel_mps2} m/s^2")
            return -self.config.timeout_decel_mps2, self._command[1]
        return self._command

    # ------------------------------------------------------------------ stepping
    def step(self) -> None:
        """Advance one physics tick (no-op once :attr:`finished`)."""
        if self.finished:
            return
        a, k = self.effective_command()
        self._pose = step_ego(self._pose, a, k, self.physics_dt_s)
        sync_world_ego(self.world.road, self.world.ego, self._pose)
        self.tick += 1
        if (self.tick - self.episode_start_tick) % self.config.ticks_per_world_step == 0:
            self.world.step_agents(DT_S)
        ended_by_collision = self._check_contacts()
        if self.episode_time_s >= self.duration_s - 1e-9 or ended_by_collision:
            reason = "collision" if ended_by_collision else f"{self.duration_s:g} s elapsed"
            self._emit("episode_end", reason)
            if self.config.on_end == "restart":
                self._start_episode(self.seed + 1)
            else:
                self.status.finished = True

    def _emit(self, kind: str, detail: str = "") -> None:
        self._events.append(SimEvent(self.time_ns, self.episode, kind, detail))

    def drain_events(self) -> list[SimEvent]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ contacts
    def _check_contacts(self) -> bool:
        """Update collision / off-road flags; True when a new collision ends the episode."""
        pose, ego = self._pose, self.world.ego
        hits: set[str] = set()
        if self.world.agents:
            poses = np.array([agent_world_pose(self.world.road, a) for a in self.world.agents])
            half = np.array([[a.length_m / 2, a.width_m / 2] for a in self.world.agents])
            overlap = boxes_overlap(np.array([pose.x_m, pose.y_m]), np.array(pose.heading_rad),
                                    np.array([ego.length_m / 2, ego.width_m / 2]),
                                    poses[:, :2], poses[:, 2], half)
            hits = {a.id for a, hit in zip(self.world.agents, overlap) if hit}
        new = sorted(hits - self.status.in_collision)
        for aid in new:
            self.status.collisions += 1
            self._emit("collision", aid)
        self.status.in_collision = hits
        off = self._off_road()
        if off != self.status.off_road:
            if off:
                self.status.off_road_events += 1
            self._emit("off_road" if off else "on_road", f"d = {ego.d:.2f} m")
        self.status.off_road = off
        return bool(new) and self.config.end_on_collision

    def _off_road(self) -> bool:
        """Whether any ego corner is outside the paved area."""
        ego = self.world.ego
        return off_road(self.world, self._pose.x_m, self._pose.y_m, self._pose.heading_rad,
                        ego.length_m, ego.width_m, s_hint=ego.s)

    # ------------------------------------------------------------------ outputs
    @property
    def ego(self) -> EgoPose:
        """Ego pose, speed, acceleration and curvature of the last step (map frame)."""
        return self._pose

    @property
    def cameras(self) -> list[CameraConfig]:
        """The rig's cameras, in publishing order."""
        return self.rig.cameras

    def obstacles(self) -> list[ObstacleState]:
        """Every agent as an oriented box with its velocity, in the map frame."""
        road = self.world.road
        out = []
        for a in self.world.agents:
            x, y, yaw = agent_world_pose(road, a)
            vx, vy = _agent_velocity(road, a)
            out.append(ObstacleState(a.id, a.kind, CLASSIFICATION.get(a.kind, 0), x, y,
                                     a.height_m / 2, yaw, a.length_m, a.width_m, a.height_m,
                                     vx, vy))
        return out

    def frame(self) -> Frame:
        """The current state as a data-engine ``Frame`` (what the renderer draws).

        There is no expert in closed loop, so ``decision`` is None: the renderer does
        not read it.
        """
        e, p = self.world.ego, self._pose
        ego_snap = AgentSnapshot("ego", "car", p.x_m, p.y_m, p.heading_rad, e.length_m,
                                 e.width_m, e.height_m, "white", p.speed_mps, e.s, e.d)
        agents = [agent_snapshot(self.world, a) for a in self.world.agents]  # with lamps
        lights = {tl.id: tl.state(self.world.time_s) for tl in self.world.lights}
        return Frame(self.world.time_s, ego_snap, p.acceleration_mps2, agents, lights,
                     None)  # type: ignore[arg-type]

    def render(self, cameras: list[str] | None = None) -> list[np.ndarray]:
        """RGB images (H, W, 3) uint8 of the current state, one per camera of the rig.

        ``cameras``: only these rig cameras, in this order (default: the whole rig).
        """
        rig = {c.name: c for c in self.rig.cameras}
        if cameras is None:
            selected = self.rig.cameras
        else:
            unknown = [c for c in cameras if c not in rig]
            if unknown:
                raise ValueError(f"cameras {unknown} are not in the {self.config.rig!r} rig "
                                 f"(it has {sorted(rig)})")
            selected = [rig[c] for c in cameras]
        self._episode.frames[:] = [self.frame()]
        return self._renderer.render(0, selected)


def off_road(world: World, x_m: float, y_m: float, heading_rad: float, length_m: float,
             width_m: float, s_hint: float | None = None) -> bool:
    """Whether any corner of a box (map frame) lies outside the paved area of ``world``.

    Paved: the lanes, the shoulder on the right, temporary lane spans (ramps, merges) and
    junctions (their crossing roads, ``JUNCTION_HALF_LENGTH_M`` to each side).
    """
    road = world.road
    cfg = road.config
    w = cfg.lane_width_m
    corners = box_corners(x_m, y_m, heading_rad, length_m, width_m)
    s, d = frenet_from_world_many(road, corners[:, 0], corners[:, 1], s_hint=s_hint)
    right = np.full(4, -0.5 * w - cfg.shoulder_m)
    left = np.full(4, (cfg.num_lanes + cfg.oncoming_lanes - 0.5) * w)
    for span in world.lane_spans:
        inside = (span.s_start <= s) & (s <= span.s_end)
        right = np.where(inside, np.minimum(right, (span.lane - 0.5) * w), right)
        left = np.where(inside, np.maximum(left, (span.lane + 0.5) * w), left)
    paved = (right <= d) & (d <= left)
    for j in world.intersections:
        paved |= (np.abs(s - j.s) <= j.width_m / 2) & (np.abs(d) <= JUNCTION_HALF_LENGTH_M)
    return not bool(np.all(paved))


def _agent_velocity(road, a: Agent) -> tuple[float, float]:
    """World velocity (vx, vy) of an agent from its Frenet rates."""
    if a.mode == "static" or not a.active:
        return 0.0, 0.0
    h = float(road.heading_at(a.s))
    if a.mode == "along":
        ds, dd = a.direction * a.v_mps, a.vd_mps
    else:
        ds, dd = 0.0, a.direction * a.v_mps
    c, s = math.cos(h), math.sin(h)
    return ds * c - dd * s, ds * s + dd * c
