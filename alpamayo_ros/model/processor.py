"""DrivingSample batches -> model tensors: resizing, normalisation, text and trajectory ids.

The processor is the only place that knows both the data contract
(:class:`alpamayo_ros.sample.DrivingSample`) and the model's input shapes. It keeps the
last ``num_frames`` frames, resizes every image to the model's size (scaling the
intrinsics with it), pads the camera axis to ``max_cameras`` with a validity mask,
turns ego history into normalised features, tokenizes the navigation command and the
CoC text, and passes the training targets through (controls in physical units: the model
normalises them with its dataset statistics; perception targets and decision class ids for
the auxiliary heads). Texts longer than their token budget are cut, and counted in
:attr:`Processor.truncated`, so a trainer can refuse a budget that cuts its data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from alpamayo_ros.data.consistency import decision_spans
from alpamayo_ros.model.configuration import PolicyConfig
from alpamayo_ros.model.tokenizer import CocTokenizer
from alpamayo_ros.sample import DrivingSample
from alpamayo_ros.taxonomy import decision_class_ids
from alpamayo_ros.unicycle import MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M

# The release bounds: the range of the trajectory-token bins, and the default action scale
# of an untrained model (training replaces it with dataset statistics).
CONTROL_SCALE = (MAX_ABS_ACCELERATION_MPS2, MAX_ABS_CURVATURE_PER_M)
EGO_FEATURES = 5  # x, y (scaled), sin/cos heading, speed (scaled)


@dataclass
class ModelInputs:
    """A batch of tensors the model reads; targets are ``None`` at inference."""

    images: torch.Tensor  # uint8 (B, F, C, 3, H, W)
    camera_valid: torch.Tensor  # bool (B, C)
    intrinsics: torch.Tensor  # float (B, C, 3, 3), pixels of the resized images
    camera_to_ego: torch.Tensor  # float (B, C, 4, 4)
    ego_history: torch.Tensor  # float (B, 16, 5)
    speed_mps: torch.Tensor  # float (B,)
    nav_ids: torch.Tensor  # long (B, max_navigation_tokens), pad-filled
    nav_valid: torch.Tensor  # bool (B, max_navigation_tokens)
    controls: torch.Tensor | None = None  # float (B, 64, 2): a m/s^2, kappa 1/m
    reasoning_ids: torch.Tensor | None = None  # long (B, max_reasoning_tokens)
    reasoning_valid: torch.Tensor | None = None  # bool (B, max_reasoning_tokens)
    # bool (B, max_reasoning_tokens): the token lies in a decision phrase (decision_spans)
    reasoning_decision: torch.Tensor | None = None
    perception: torch.Tensor | None = None  # float (B, perception_dim), scaled targets
    perception_mask: torch.Tensor | None = None  # bool (B, perception_dim)
    decision_ids: torch.Tensor | None = None  # long (B, 2): lon, lat class; -1 unknown
    # bool (B,): only the perception targets hold (DrivingSample.perception_only)
    perception_only: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        """Samples in the batch."""
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> ModelInputs:
        """A copy on ``device``."""
        return ModelInputs(**{f.name: None if getattr(self, f.name) is None
                              else getattr(self, f.name).to(device) for f in fields(self)})


def normalize_controls(controls: torch.Tensor) -> torch.Tensor:
    """Controls ``(..., 2)`` in physical units -> [-1, 1] of the release bounds (token bins)."""
    return controls / controls.new_tensor(CONTROL_SCALE)


def denormalize_controls(actions: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_controls`."""
    return actions * actions.new_tensor(CONTROL_SCALE)


class Processor:
    """Turns :class:`DrivingSample` lists into :class:`ModelInputs`."""

    def __init__(self, config: PolicyConfig, tokenizer: CocTokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.truncated = {"reasoning": 0, "navigation": 0}  # texts cut to their budget

    def __call__(self, samples: Sequence[DrivingSample], with_targets: bool = True
                 ) -> ModelInputs:
        """Batch ``samples``; targets (controls, CoC text) only when ``with_targets``."""
        if not samples:
            raise ValueError("empty batch")
        items = [self._one(s, with_targets) for s in samples]
        out = {}
        for name in items[0]:
            values = [it[name] for it in items]
            out[name] = None if any(v is None for v in values) else torch.stack(values)
        return ModelInputs(**out)

    def _one(self, s: DrivingSample, with_targets: bool) -> dict:
        cfg, vcfg, tok = self.config, self.config.vision, self.tokenizer
        images = np.asarray(s.images)
        if images.ndim != 5 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"DrivingSample.images must be uint8 (frames, cameras, H, W, 3), "
                             f"got {images.dtype} {images.shape}")
        frames, cams, h, w, _ = images.shape
        if cams != len(s.cameras):
            raise ValueError(f"DrivingSample.images has {cams} cameras, "
                             f"DrivingSample.cameras lists {len(s.cameras)}")
        if cams > vcfg.max_cameras:
            raise ValueError(f"sample has {cams} cameras, VisionConfig.max_cameras is "
                             f"{vcfg.max_cameras}")
        # Last num_frames frames, oldest first; repeat the oldest when there are fewer.
        idx = [max(frames - vcfg.num_frames + i, 0) for i in range(vcfg.num_frames)]
        x = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 1, 4, 2, 3)
        x = x.reshape(-1, 3, h, w).float()
        if (h, w) != (vcfg.image_height_px, vcfg.image_width_px):
            x = F.interpolate(x, size=(vcfg.image_height_px, vcfg.image_width_px),
                              mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8).view(
            vcfg.num_frames, cams, 3, vcfg.image_height_px, vcfg.image_width_px)
        pad = vcfg.max_cameras - cams
        img = torch.cat([x, torch.zeros(vcfg.num_frames, pad, *x.shape[2:],
                                        dtype=torch.uint8)], dim=1)
        sx, sy = vcfg.image_width_px / w, vcfg.image_height_px / h
        k = torch.eye(3).repeat(vcfg.max_cameras, 1, 1)
        t = torch.eye(4).repeat(vcfg.max_cameras, 1, 1)
        for i, cam in enumerate(s.cameras):
            ki = torch.as_tensor(np.asarray(cam.intrinsics, dtype=np.float64)).float().clone()
            ki[0] *= sx
            ki[1] *= sy
            k[i], t[i] = ki, torch.as_tensor(np.asarray(cam.camera_to_ego)).float()
        hist = np.asarray(s.ego_history, dtype=np.float32)
        if hist.shape != (cfg.ego_history_steps, 4):
            raise ValueError(f"DrivingSample.ego_history must be ({cfg.ego_history_steps}, 4), "
                             f"got {hist.shape}")
        ego = torch.from_numpy(np.stack([
            hist[:, 0] / cfg.ego_position_scale_m, hist[:, 1] / cfg.ego_position_scale_m,
            np.sin(hist[:, 2]), np.cos(hist[:, 2]), hist[:, 3] / cfg.speed_scale_mps,
        ], axis=-1).astype(np.float32))
        nav_ids, nav_valid = self._pad(tok.encode(s.navigation) if s.navigation else [],
                                       cfg.tokenizer.max_navigation_tokens, "navigation")
        item = {
            "images": img, "camera_valid": torch.arange(vcfg.max_cameras) < cams,
            "intrinsics": k, "camera_to_ego": t, "ego_history": ego,
            "speed_mps": torch.tensor(float(s.speed_mps)),
            "nav_ids": nav_ids, "nav_valid": nav_valid,
            "controls": None, "reasoning_ids": None, "reasoning_valid": None,
            "reasoning_decision": None,
            "perception": None, "perception_mask": None, "decision_ids": None,
            "perception_only": None,
        }
        if with_targets:
            ctrl = np.asarray(s.future_controls, dtype=np.float32)
            if ctrl.shape != (cfg.num_waypoints, 2):
                raise ValueError(f"DrivingSample.future_controls must be "
                                 f"({cfg.num_waypoints}, 2), got {ctrl.shape}")
            item["controls"] = torch.from_numpy(ctrl)
            text = s.coc.text if s.coc is not None else ""
            ids, offsets = tok.encode_with_offsets(text) if text else ([], [])
            item["reasoning_ids"], item["reasoning_valid"] = self._pad(
                ids, cfg.tokenizer.max_reasoning_tokens, "reasoning")
            spans = decision_spans(text)
            in_phrase = [any(a < e and b > s0 for s0, e in spans) for a, b in offsets]
            item["reasoning_decision"] = torch.zeros(cfg.tokenizer.max_reasoning_tokens,
                                                     dtype=torch.bool)
            n = min(len(in_phrase), cfg.tokenizer.max_reasoning_tokens)
            item["reasoning_decision"][:n] = torch.tensor(in_phrase[:n], dtype=torch.bool)
            item.update(self._aux_targets(s))
            item["perception_only"] = torch.tensor(bool(s.perception_only))
        return item

    def _aux_targets(self, s: DrivingSample) -> dict:
        """Perception targets and decision class ids (zeros / -1 where unknown)."""
        dim = self.config.perception_dim
        out = {"decision_ids": torch.tensor(
            decision_class_ids(*s.decisions) if s.decisions is not None else (-1, -1),
            dtype=torch.long)}
        if dim:
            values = torch.zeros(dim)
            mask = torch.zeros(dim, dtype=torch.bool)
            if s.perception is not None:
                p = np.asarray(s.perception, dtype=np.float32)
                m = (np.ones(p.shape, bool) if s.perception_mask is None
                     else np.asarray(s.perception_mask, dtype=bool))
                # Fields are only appended (alpamayo_ros.perception): a head of ``dim``
                # entries learns the vector's first ``dim``.
                if p.ndim != 1 or p.shape[0] < dim or m.shape != p.shape:
                    raise ValueError(f"DrivingSample.perception must be (n,) with n >= "
                                     f"PolicyConfig.perception_dim {dim} and a mask of the "
                                     f"same shape, got {p.shape} and {m.shape}")
                p, m = p[:dim], m[:dim]
                m = m & np.isfinite(p)
                values = torch.from_numpy(np.where(m, p, 0.0).astype(np.float32))
                mask = torch.from_numpy(m)
            out["perception"], out["perception_mask"] = values, mask
        return out

    def _pad(self, ids: list[int], length: int, what: str = ""
             ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(ids) > length and what:
            self.truncated[what] += 1
        ids = ids[:length]
        out = torch.full((length,), self.tokenizer.pad_id, dtype=torch.long)
        out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out, torch.arange(length) < len(ids)
