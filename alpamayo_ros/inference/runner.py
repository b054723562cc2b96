"""PolicyRunner: synchronized camera frames + odometry -> plan, reasoning and timings.

The policy node's core (no rclpy): it builds a :class:`~alpamayo_ros.sample.DrivingSample`
from the frames of a history window (numpy RGB, already decoded, oldest first) and the
ego history at the window's camera time, runs :class:`~alpamayo_ros.model.policy.Policy`
and returns a :class:`PolicyOutput` whose trajectory is stamped with that camera time.
The generated reasoning text is published as generated; the decisions in the Reasoning
message are parsed from that text with the data engine's rule-based parser and the
meta-actions are derived from the predicted trajectory, so they are never invented.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from alpamayo_ros.inference.config import PolicyNodeConfig
from alpamayo_ros.sample import EGO_HISTORY_STEPS, CameraGeometry, CocLabel, DrivingSample
from alpamayo_ros.sync.odometry import EgoHistory, EgoPose
from alpamayo_ros.trajectory import Trajectory
from alpamayo_ros.unicycle import NUM_WAYPOINTS


class InputError(ValueError):
    """The frames or the ego history cannot be turned into a model input."""


@dataclass
class PolicyOutput:
    """One inference: the plan (``samples[0]``), extra samples, the reasoning, timings."""

    trajectory: Trajectory
    samples: list[Trajectory]
    coc: CocLabel
    timings_ms: dict[str, float] = field(default_factory=dict)
    reasoning_passes: int = 0  # backbone passes of the reasoning decode
    draft_tokens_accepted: int = 0  # reasoning tokens taken from the previous plan's


def load_rig_geometry(rig: str) -> dict[str, CameraGeometry]:
    """Camera geometry by name from a rig preset name or a ``rig.json`` path."""
    from alpamayo_ros.data.cameras import RIG_PRESETS, make_rig

    if rig in RIG_PRESETS:
        return {c.name: c.geometry() for c in make_rig(rig).cameras}
    path = Path(rig)
    if not path.is_file():
        raise ValueError(f"camera_rig {rig!r} is neither a preset {sorted(RIG_PRESETS)} "
                         f"nor an existing rig.json file")
    from alpamayo_ros.data.bag import read_rig_json

    try:
        return read_rig_json(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"camera_rig {path}: not a valid rig.json ({exc})") from exc


def geometry_for_image(base: CameraGeometry, width_px: int, height_px: int,
                       intrinsics: np.ndarray | None = None) -> CameraGeometry:
    """``base`` adapted to an image of ``width_px`` x ``height_px``.

    Uses ``intrinsics`` (camera_info K) when given and valid, else the rig's K scaled to
    the image size.
    """
    if intrinsics is not None:
        k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
        if np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0:
            return replace(base, width_px=width_px, height_px=height_px, intrinsics=k)
    k = np.array(base.intrinsics, dtype=np.float64)
    k[0] *= width_px / base.width_px
    k[1] *= height_px / base.height_px
    return replace(base, width_px=width_px, height_px=height_px, intrinsics=k)


class PolicyRunner:
    """Holds the loaded policy and turns inputs into :class:`PolicyOutput`."""

    def __init__(self, config: PolicyNodeConfig, policy, rig: dict[str, CameraGeometry]
                 ) -> None:
        missing = [c for c in config.model_cameras if c not in rig]
        if missing:
            raise ValueError(f"model_cameras {missing} are not in camera_rig "
                             f"{config.camera_rig!r} (it has {sorted(rig)})")
        max_cams = policy.config.vision.max_cameras
        if len(config.model_cameras) > max_cams:
            raise ValueError(f"model_cameras lists {len(config.model_cameras)} cameras, the "
                             f"model takes at most {max_cams} (VisionConfig.max_cameras)")
        self.config = config
        self.policy = policy
        self.rig = rig
        self.intrinsics: dict[str, np.ndarray] = {}
        cfg = policy.model.config
        self.model_id = f"{Path(config.weights_dir).name or 'policy'}:{cfg.preset}"
        from alpamayo_ros.model.weights import FORMAT_VERSION

        self.model_version = str(FORMAT_VERSION)
        self.tick = 0
        self._previous_reasoning: list[int] | None = None  # the draft of the next tick

    @property
    def num_frames(self) -> int:
        """History frames the model reads."""
        return self.policy.config.vision.num_frames

    def set_intrinsics(self, camera: str, k: np.ndarray) -> None:
        """Intrinsics from ``camera_info`` (replaces the rig's for that camera)."""
        self.intrinsics[camera] = np.asarray(k, dtype=np.float64).reshape(3, 3)

    def set_extrinsics(self, camera: str, camera_to_ego: np.ndarray) -> None:
        """Mounting (4x4 camera-to-ego, e.g. from TF) replacing the rig's for that camera."""
        self.rig[camera] = replace(self.rig[camera],
                                   camera_to_ego=np.asarray(camera_to_ego, dtype=np.float64))

    def build_sample(self, frames: Sequence[Sequence[np.ndarray]], stamp_ns: int,
                     history: EgoHistory, navigation: str = "") -> DrivingSample:
        """``frames[f][c]``: RGB uint8 (H, W, 3) of model camera ``c`` in frame ``f``.

        ``navigation``: the current route command ("" = none).
        """
        cams = self.config.model_cameras
        if not frames or any(len(f) != len(cams) for f in frames):
            raise InputError(f"expected frames x {len(cams)} model cameras, got "
                             f"{[len(f) for f in frames]}")
        first = frames[0]
        shapes = {c: np.asarray(img).shape for c, img in zip(cams, first)}
        for f in frames:
            for c, img in zip(cams, f):
                arr = np.asarray(img)
                if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                    raise InputError(f"camera {c}: expected uint8 (H, W, 3) RGB, got "
                                     f"{arr.dtype} {arr.shape}")
                if arr.shape != shapes[c]:
                    raise InputError(f"camera {c}: image size changed within the window "
                                     f"({shapes[c]} -> {arr.shape})")
        sizes = {s[:2] for s in shapes.values()}
        if len(sizes) != 1:
            target = max(sizes)
            frames = [[_resize(np.asarray(img), target) for img in f] for f in frames]
            height, width = target
        else:
            height, width = sizes.pop()
        images = np.stack([np.stack([np.asarray(img) for img in f]) for f in frames])
        geometry = [geometry_for_image(self.rig[c], width, height, self.intrinsics.get(c))
                    for c in cams]
        if history.poses.shape != (EGO_HISTORY_STEPS, 4):
            raise InputError(f"ego history must be ({EGO_HISTORY_STEPS}, 4), got "
                             f"{history.poses.shape}")
        return DrivingSample(
            stamp_ns=int(stamp_ns), images=images, cameras=geometry,
            ego_history=history.poses, future_xyh=np.zeros((NUM_WAYPOINTS, 3), np.float32),
            future_controls=np.zeros((NUM_WAYPOINTS, 2), np.float32),
            speed_mps=float(history.pose.speed_mps), navigation=str(navigation))

    def infer(self, sample: DrivingSample) -> PolicyOutput:
        """Run the policy on one sample; the plan is stamped with ``sample.stamp_ns``."""
        from alpamayo_ros.data.consistency import meta_actions_from_trajectory, parse_reasoning

        cfg = self.config
        seed = None if cfg.seed < 0 else cfg.seed + self.tick
        self.tick += 1
        t0 = time.perf_counter()
        draft = self._previous_reasoning if cfg.reasoning and cfg.reuse_reasoning else None
        pred = self.policy.predict(
            sample, mode="reasoning" if cfg.reasoning else "trajectory",
            flow_steps=cfg.flow_steps, num_samples=cfg.num_samples,
            max_reasoning_tokens=cfg.max_reasoning_tokens or None, seed=seed,
            noise_scale=float(cfg.flow_noise_scale), reasoning_draft=draft)
        self._previous_reasoning = list(pred.reasoning_ids[0]) if cfg.reasoning else None
        t_model = time.perf_counter()
        trajectories = [
            Trajectory.from_controls(
                pred.controls[0, k, :, 0], pred.controls[0, k, :, 1], sample.speed_mps,
                stamp_ns=sample.stamp_ns, frame_id=cfg.frame_id, model_id=self.model_id,
                model_version=self.model_version, inference_time_s=t_model - t0)
            for k in range(pred.controls.shape[1])]
        plan = trajectories[0]
        text = pred.reasoning[0]
        parsed = parse_reasoning(text) if text else None
        meta = meta_actions_from_trajectory(
            np.stack([plan.x_m, plan.y_m, plan.heading_rad], axis=1), sample.speed_mps)
        coc = CocLabel(
            longitudinal_decision=(parsed.longitudinal or "") if parsed else "",
            lateral_decision=(parsed.lateral or "") if parsed else "",
            components=[], text=text,
            longitudinal_meta_action=meta.longitudinal, lateral_meta_action=meta.lateral)
        timings = dict(pred.timings_ms)
        timings["postprocess"] = (time.perf_counter() - t_model) * 1e3
        return PolicyOutput(plan, trajectories[1:], coc, timings, pred.reasoning_passes,
                            pred.draft_tokens_accepted)

    def warmup(self, runs: int) -> float:
        """Run ``runs`` inferences on a blank input; returns the last one's seconds."""
        rig_cams = [self.rig[c] for c in self.config.model_cameras]
        elapsed = 0.0
        for _ in range(runs):
            frames = [[np.zeros((g.height_px, g.width_px, 3), np.uint8) for g in rig_cams]
                      for _ in range(self.num_frames)]
            history = EgoHistory(np.zeros((EGO_HISTORY_STEPS, 4), np.float32), 0,
                                 EgoPose(0, 0.0, 0.0, 0.0, 0.0))
            t0 = time.perf_counter()
            self.infer(self.build_sample(frames, 0, history))
            elapsed = time.perf_counter() - t0
        self.tick = 0
        self._previous_reasoning = None  # a blank scene's reasoning is no draft
        return elapsed


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if img.shape[:2] == size:
        return img
    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
