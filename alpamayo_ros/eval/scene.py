"""Ground-truth scene geometry for evaluation and rewards: episodes, agent boxes, collisions.

The data engine's episodes are deterministic in ``(family, seed)``, so the agents' true
future can be recovered for any sample from its ``meta`` (family, seed, frame index)
without storing it in the dataset:

- :func:`episode_for` simulates (and caches) the episode of a family and seed;
- :func:`agents_future_boxes` gives every agent's box at the plan's times (0.1 .. 6.4 s)
  in the ego frame of one frame;
- :func:`plan_collides` tests an ego plan against those boxes with the separating-axis
  test of :mod:`alpamayo_ros.safety.collision`.

Frame conventions: the data engine's ego and agent ``(x, y)`` are box centres (see
``data.world.agent_world_pose``), and ``DrivingSample.future_xyh`` is the ego centre's path
in the ego frame at the sample's frame, so the ego box is centred on each plan pose.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from alpamayo_ros.data.scenarios import Episode, make_scenario, simulate
from alpamayo_ros.safety.collision import boxes_overlap
from alpamayo_ros.unicycle import NUM_WAYPOINTS

EGO_LENGTH_M = 4.8  # data.world.EgoState defaults: the ego the expert drove
EGO_WIDTH_M = 1.9
BOX_FIELDS = ("x", "y", "heading", "length", "width")


@functools.lru_cache(maxsize=32)
def episode_for(family: str, seed: int, duration_s: float | None = None) -> Episode:
    """The simulated episode of scenario ``family`` and ``seed`` (cached; no rendering).

    The cache returns the same object on repeated calls: treat it as read-only.
    """
    return simulate(make_scenario(family, int(seed), duration_s))


def agents_future_boxes(episode: Episode, index: int, steps: int = NUM_WAYPOINTS) -> np.ndarray:
    """Boxes of every agent at frames ``index + 1 .. index + steps`` in the ego frame at ``index``.

    Returns float64 ``(steps, N, 5)``: x, y, heading, length, width per step and agent
    (``N`` = every agent id seen in the episode, in order of first appearance), NaN where
    an agent is absent at that step or the step lies past the episode's end. Step ``k``
    (0-based) is at ``(k + 1) * 0.1`` s, the time of the plan's waypoint ``k``.
    """
    frames = episode.frames
    if not 0 <= index < len(frames):
        raise ValueError(f"index must be in [0, {len(frames)}), got {index}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ids: dict[str, int] = {}
    for frame in frames:
        for agent in frame.agents:
            ids.setdefault(agent.id, len(ids))
    out = np.full((steps, len(ids), 5), np.nan)
    origin = frames[index].ego
    c, s = math.cos(origin.heading), math.sin(origin.heading)
    for k in range(steps):
        j = index + 1 + k
        if j >= len(frames):
            break
        for agent in frames[j].agents:
            dx, dy = agent.x - origin.x, agent.y - origin.y
            heading = math.atan2(math.sin(agent.heading - origin.heading),
                                 math.cos(agent.heading - origin.heading))
            out[k, ids[agent.id]] = (c * dx + s * dy, -s * dx + c * dy, heading,
                                     agent.length_m, agent.width_m)
    return out


def plan_collides(plan_xyh: np.ndarray, boxes: np.ndarray, ego_length_m: float = EGO_LENGTH_M,
                  ego_width_m: float = EGO_WIDTH_M) -> tuple[bool, int]:
    """Whether the ego box centred on each plan pose overlaps an agent box at the same step.

    ``plan_xyh`` ``(T, 3)`` and ``boxes`` ``(T, N, 5)`` (from :func:`agents_future_boxes`)
    share their time steps. Agents that are NaN at a step are absent there. Returns
    ``(collides, first colliding step or -1)``; touching boxes count as a collision.
    """
    plan = np.asarray(plan_xyh, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    if plan.ndim != 2 or plan.shape[1] != 3:
        raise ValueError(f"plan_xyh must be (T, 3), got shape {plan.shape}")
    if boxes.ndim != 3 or boxes.shape[2] != 5 or boxes.shape[0] != plan.shape[0]:
        raise ValueError(f"boxes must be (T={plan.shape[0]}, N, 5), got shape {boxes.shape}")
    if not np.all(np.isfinite(plan)):
        raise ValueError("plan_xyh contains NaN or inf")
    if not (ego_length_m > 0 and ego_width_m > 0):
        raise ValueError(f"ego_length_m and ego_width_m must be > 0, got "
                         f"{ego_length_m}, {ego_width_m}")
    if boxes.shape[1] == 0:
        return False, -1
    present = np.all(np.isfinite(boxes), axis=-1)  # (T, N)
    safe = np.where(present[..., None], boxes, 0.0)
    ego_half = np.array([ego_length_m / 2, ego_width_m / 2])
    hit = boxes_overlap(plan[:, None, :2], plan[:, None, 2], ego_half[None, None, :],
                        safe[..., :2], safe[..., 2], safe[..., 3:5] / 2) & present
    steps = np.flatnonzero(hit.any(axis=1))
    return (True, int(steps[0])) if steps.size else (False, -1)
