"""Optional ONNX export of the vision tokenizer and the flow-matching expert.

The vision tokenizer exports as ``(images uint8, camera_valid, intrinsics,
camera_to_ego) -> tokens`` for a fixed camera count; the expert as one velocity
evaluation ``(x_t, t, context keys, context values, context_valid, start_positions) ->
v`` for a fixed context length, so the stateless Euler solver
(:func:`alpamayo_ros.model.flow_matching.euler_solve`) can drive an onnxruntime session
exactly as it drives the torch module. Needs the ``onnx`` package (and ``onnxruntime`` to
run the result); uses the TorchScript-based exporter.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from alpamayo_ros.model.modeling import AlpamayoModel

ONNX_OPSET = 17


class _VisionWrapper(nn.Module):
    def __init__(self, model: AlpamayoModel) -> None:
        super().__init__()
        self.vision = model.vision

    def forward(self, images: torch.Tensor, camera_valid: torch.Tensor,
                intrinsics: torch.Tensor, camera_to_ego: torch.Tensor) -> torch.Tensor:
        return self.vision(images, camera_valid, intrinsics, camera_to_ego)


class _ExpertWrapper(nn.Module):
    def __init__(self, model: AlpamayoModel) -> None:
        super().__init__()
        self.expert = model.expert

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, keys: torch.Tensor,
                values: torch.Tensor, ctx_valid: torch.Tensor,
                start_positions: torch.Tensor) -> torch.Tensor:
        prepared = self.expert.prepare(list(keys.unbind(0)), list(values.unbind(0)),
                                       ctx_valid, start_positions, always_mask=True)
        return self.expert.run(x_t, t, prepared)


def vision_example(model: AlpamayoModel, num_cameras: int) -> tuple[torch.Tensor, ...]:
    """Example inputs of the vision graph (batch 1)."""
    v = model.config.vision
    images = torch.randint(0, 256, (1, v.num_frames, num_cameras, 3, v.image_height_px,
                                    v.image_width_px), dtype=torch.uint8)
    k = torch.tensor([[v.image_width_px * 0.6, 0.0, v.image_width_px / 2],
                      [0.0, v.image_width_px * 0.6, v.image_height_px / 2], [0.0, 0.0, 1.0]])
    return (images, torch.ones(1, num_cameras, dtype=torch.bool),
            k.expand(1, num_cameras, 3, 3).contiguous(),
            torch.eye(4).expand(1, num_cameras, 4, 4).contiguous())


def export_vision(model: AlpamayoModel, path: str | Path, num_cameras: int) -> Path:
    """Write the vision tokenizer graph for ``num_cameras`` cameras."""
    path = Path(path)
    with torch.no_grad():
        torch.onnx.export(
            _VisionWrapper(model).eval(), vision_example(model, num_cameras), str(path),
            input_names=["images", "camera_valid", "intrinsics", "camera_to_ego"],
            output_names=["tokens"], opset_version=ONNX_OPSET, dynamo=False)
    return path


def expert_inputs(keys: list[torch.Tensor], values: list[torch.Tensor], ctx_valid: torch.Tensor,
                  start_positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Stack the per-layer context for the expert graph."""
    return torch.stack(keys), torch.stack(values), ctx_valid, start_positions


def export_expert(model: AlpamayoModel, path: str | Path, context_length: int) -> Path:
    """Write one velocity evaluation of the expert for a context of ``context_length``."""
    path = Path(path)
    b = model.backbone
    layers = model.config.expert.num_layers
    kv = torch.randn(layers, 1, b.num_kv_heads, context_length, b.head_dim)
    example = (torch.randn(1, model.config.num_waypoints, 2), torch.tensor([0.3]), kv,
               kv.clone(), torch.ones(1, context_length, dtype=torch.bool),
               torch.tensor([context_length]))
    with torch.no_grad():
        torch.onnx.export(
            _ExpertWrapper(model).eval(), example, str(path),
            input_names=["x_t", "t", "keys", "values", "context_valid", "start_positions"],
            output_names=["velocity"], opset_version=ONNX_OPSET, dynamo=False)
    return path
