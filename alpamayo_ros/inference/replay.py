"""A data-engine episode as a camera + odometry stream (10 Hz frames, ego poses).

The input of ``alpamayo bench latency`` (which publishes it to the policy process) and of
the fast-decode tests (which feed it to :class:`~alpamayo_ros.inference.runner.
PolicyRunner` tick by tick, as the policy node would): the expert drives the scenario
(open loop: the policy's plans do not move the ego), the renderer draws the model's
cameras at the rig's resolution.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from alpamayo_ros.sync.odometry import EgoHistory, EgoPose, OdometryBuffer

FRAME_DT_NS = 100_000_000  # the data engine's world rate (10 Hz)


@dataclass(frozen=True)
class ReplayFrame:
    """One camera tick: time since the episode start, RGB images, the ego's map pose."""

    time_ns: int
    images: list[np.ndarray]  # uint8 (H, W, 3), one per requested camera, in order
    pose: EgoPose  # stamp_ns = time_ns


@dataclass(frozen=True)
class ReplayEpisode:
    """The frames of one scenario and its route command."""

    family: str
    seed: int
    navigation: str
    frames: list[ReplayFrame]


def render_episode(family: str, seed: int, cameras: Sequence[str], rig: str = "ar1",
                   duration_s: float | None = None, max_frames: int | None = None
                   ) -> ReplayEpisode:
    """Simulate scenario ``family``/``seed`` with its expert and render ``cameras``."""
    from alpamayo_ros.data.cameras import make_rig
    from alpamayo_ros.data.render import SceneRenderer
    from alpamayo_ros.data.scenarios import make_scenario, simulate

    by_name = {c.name: c for c in make_rig(rig).cameras}
    unknown = [c for c in cameras if c not in by_name]
    if unknown:
        raise ValueError(f"cameras {unknown} are not in rig {rig!r} (it has {sorted(by_name)})")
    episode = simulate(make_scenario(family, seed, duration_s))
    renderer = SceneRenderer(episode)
    selected = [by_name[c] for c in cameras]
    count = len(episode.frames) if max_frames is None else min(max_frames, len(episode.frames))
    frames = []
    for i in range(count):
        f = episode.frames[i]
        t_ns = i * FRAME_DT_NS
        frames.append(ReplayFrame(t_ns, renderer.render(i, selected),
                                  EgoPose(t_ns, f.ego.x, f.ego.y, f.ego.heading, f.ego.v_mps)))
    return ReplayEpisode(family, seed, episode.navigation, frames)


def policy_inputs(episode: ReplayEpisode, num_frames: int
                  ) -> Iterator[tuple[int, list[list[np.ndarray]], EgoHistory]]:
    """``(stamp_ns, frames [oldest first][camera], ego history)`` at each tick.

    Starts once ``num_frames`` frames exist; the odometry buffer holds the poses up to
    each tick (what the camera sync node would have).
    """
    odometry = OdometryBuffer(horizon_s=5.0)
    for i, frame in enumerate(episode.frames):
        odometry.add(frame.pose)
        if i + 1 < num_frames:
            continue
        history = odometry.history_at(frame.time_ns)
        if history is None:
            continue
        window = [episode.frames[j].images for j in range(i + 1 - num_frames, i + 1)]
        yield frame.time_ns, window, history
