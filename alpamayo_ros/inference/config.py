"""Parameters of the policy node (ROS parameter names = field names)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from alpamayo_ros.inference.trigger import TRIGGERS
from alpamayo_ros.sync.config import AR1_CAMERA_NAMES

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class PolicyNodeConfig:
    """Policy node parameters.

    - ``weights_dir``: exported weights (``config.json`` + ``model.safetensors`` +
      ``tokenizer.json``); empty: the package's shipped ``weights/default``.
    - ``device``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    - ``rate_hz``: inference ticks per second; a tick that finds the previous inference
      still running is dropped and counted, never queued (openpilot modeld).
    - ``trigger``: what starts a tick. ``frames`` (the default): the camera sync node
      completing a frame set, at most ``rate_hz`` by camera time
      (:class:`~alpamayo_ros.inference.trigger.FrameTrigger`), so no set waits for a
      timer; ``timer``: a free-running ``rate_hz`` timer on the node clock (a set then
      waits half a period on average).
    - ``flow_steps``: Euler steps of the flow-matching expert (AR1: 10; 5 allowed).
    - ``flow_noise_scale``: multiplies the flow's initial noise (1: the trained
      distribution; 0: the flow's mode, every sample the same); ``Policy.predict``'s
      ``noise_scale``. Default 0: chosen on the val split for the shipped weights (one
      plan's ADE 4.22 m at 0 vs 4.80 m at 1, AR1 comfort 1.00 vs 0.88; docs/RESULTS.md).
      Extra samples (``num_samples`` > 1) differ only with a scale > 0.
    - ``reasoning``: generate the CoC reasoning before the trajectory (false: trajectory
      only, the fast path; the Reasoning topic then carries no text).
    - ``reuse_reasoning``: decode the reasoning with the previous plan's reasoning as a
      draft that the model verifies in batched passes (speculative decoding: the same
      greedy text, one backbone pass per changed stretch instead of one per token);
      false decodes token by token (the reference path).
    - ``num_samples``: trajectories per tick; the first is the plan, the others go to
      ``Trajectory.samples`` (and RViz) for multi-modal inspection.
    - ``max_reasoning_tokens``: cap on generated reasoning tokens (0 = the model's budget).
    - ``max_frame_age_s``: a frame set older than this (node clock minus its camera
      stamp) is not used; the tick is skipped and counted as stale.
    - ``model_cameras``: the synchronized cameras fed to the model, in order (AR1's
      release: cross-left, front-wide, cross-right, front-tele).
    - ``camera_rig``: rig preset (``ar1``, ``train_small``, ``tiny``) or a ``rig.json``
      path giving each camera's mounting (camera-to-ego); intrinsics come from
      ``camera_info`` when it arrives, else from the rig scaled to the image size.
    - ``navigation_default``: the route command used until one arrives on the latched
      navigation topic (``topics.NAVIGATION``, std_msgs/String). Empty (the default) means
      no route command: the model was trained with and without one, so it then drives by
      what it sees and takes no route-dependent turn or exit.
    - ``warmup_runs``: inferences on a blank input at configure time (first-call costs).
    - ``seed``: >= 0 makes the flow noise repeatable per tick; -1 draws fresh noise.
    - ``frame_id``: frame of the published plan (the ego frame at the camera time).
    - ``diagnostics_period_s``: period of ``/diagnostics``.
    - ``plan_timing_diagnostics``: also publish, with every plan, a ``/diagnostics`` status
      ``<node>: plan timing`` holding that plan's stage times (camera stamp to tick,
      decode, model stages, publish; what ``alpamayo bench latency`` reads).
    - ``torch_threads``: intra-op CPU threads of the model (0: torch's default, one per
      core). On a small shared CPU one thread avoids the threads' contention with the
      other nodes (docs/RESULTS.md, Latency).
    - ``autostart``: a lifecycle node configures and activates itself at start-up (no
      lifecycle manager needed); false waits for ``configure``/``activate`` transitions.
    """

    weights_dir: str = ""
    device: str = "auto"
    rate_hz: float = 2.0
    trigger: str = "frames"
    flow_steps: int = 10
    flow_noise_scale: float = 0.0
    reasoning: bool = True
    reuse_reasoning: bool = True
    num_samples: int = 1
    max_reasoning_tokens: int = 0
    max_frame_age_s: float = 0.5
    model_cameras: tuple[str, ...] = AR1_CAMERA_NAMES
    camera_rig: str = "ar1"
    navigation_default: str = ""
    warmup_runs: int = 1
    seed: int = -1
    frame_id: str = "base_link"
    diagnostics_period_s: float = 1.0
    plan_timing_diagnostics: bool = False
    torch_threads: int = 0
    autostart: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not (
                self.device in DEVICES or self.device.startswith("cuda:")):
            raise ValueError(f"device must be one of {DEVICES} or 'cuda:N', got {self.device!r}")
        for name in ("rate_hz", "max_frame_age_s", "diagnostics_period_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}, got {self.trigger!r}")
        for name, low in (("flow_steps", 1), ("num_samples", 1), ("max_reasoning_tokens", 0),
                          ("warmup_runs", 0), ("seed", -1), ("torch_threads", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        scale = self.flow_noise_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
                0.0 <= scale <= 2.0):
            raise ValueError(f"flow_noise_scale must be a number in [0, 2], got {scale!r}")
        cams = self.model_cameras
        if isinstance(cams, str) or not cams or not all(isinstance(c, str) and c for c in cams):
            raise ValueError(f"model_cameras must list at least one camera name, got {cams!r}")
        if len(set(cams)) != len(cams):
            raise ValueError(f"model_cameras must be unique, got {cams!r}")
        object.__setattr__(self, "model_cameras", tuple(cams))
        if not isinstance(self.camera_rig, str) or not self.camera_rig:
            raise ValueError(f"camera_rig must be a rig preset or a rig.json path, "
                             f"got {self.camera_rig!r}")
        if not isinstance(self.navigation_default, str):
            raise ValueError(f"navigation_default must be a string, "
                             f"got {self.navigation_default!r}")
        if not isinstance(self.frame_id, str) or not self.frame_id:
            raise ValueError(f"frame_id must be a non-empty frame name, got {self.frame_id!r}")

    @property
    def period_s(self) -> float:
        """Inference tick period (s)."""
        return 1.0 / self.rate_hz
