"""Vision tokenizer: per-camera patch encoder + multi-camera fusion to a fixed budget.

1. Each camera image is encoded on its own into patch tokens: ours (conv patchify +
   bidirectional transformer) or EfficientNet-Lite0 (stride-32 feature map).
2. Every patch token gets a camera-geometry encoding: the ray through the patch centre in
   the ego frame (``camera_to_ego @ K^-1 [u, v, 1]``) and the camera position, in
   Fourier features. This is the 3D inductive bias: a token knows where it looks, so no
   camera index is needed and any rig works.
3. Per timestep, the patches of all cameras are fused into a fixed budget of
   ``tokens_per_timestep`` tokens, whatever the number of cameras (compression vs one
   token per patch: ``cameras * patches_per_image / tokens_per_timestep``):

   - ``fusion="queries"``: learned queries cross-attend to all patches of all (valid)
     cameras of that frame, then self-attend;
   - ``fusion="camera_grid"``: each camera slot's patch grid is max-pooled into
     ``grid_rows x grid_cols`` cells, one token each, and a missing camera's cells are a
     learned token. A max keeps a small object (a car 60 m ahead) that an attention
     average loses (session 10's probe, docs/RESULTS.md). With ``grid_queries`` learned
     queries follow the cells, as in ``"queries"``: they keep where things are (the lane
     lines), which a cell's maximum loses.
"""

from __future__ import annotations

import torch
from torch import nn

from alpamayo_ros.model.configuration import VisionConfig
from alpamayo_ros.model.layers import EncoderBlock

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAMERA_POSITION_SCALE_M = 2.0  # camera mounts are within a few metres of the ego origin
_FOURIER_BANDS = 4


def patch_rays(intrinsics: torch.Tensor, camera_to_ego: torch.Tensor, grid_h: int,
               grid_w: int, stride_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit ray directions in the ego frame through each patch centre.

    ``intrinsics (..., 3, 3)`` in the pixels of the encoded image, ``camera_to_ego
    (..., 4, 4)`` -> rays ``(..., grid_h * grid_w, 3)`` and camera origins ``(..., 3)``.
    """
    dev, dt = intrinsics.device, intrinsics.dtype
    v = (torch.arange(grid_h, device=dev, dtype=dt) + 0.5) * stride_px
    u = (torch.arange(grid_w, device=dev, dtype=dt) + 0.5) * stride_px
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    uu, vv = uu.reshape(-1), vv.reshape(-1)  # (N,)
    # Closed-form inverse of a pinhole K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]] (exports
    # to ONNX, which has no matrix inverse).
    fx, skew, cx = intrinsics[..., 0, 0:1], intrinsics[..., 0, 1:2], intrinsics[..., 0, 2:3]
    fy, cy = intrinsics[..., 1, 1:2], intrinsics[..., 1, 2:3]
    y_n = (vv - cy) / fy
    x_n = (uu - cx - skew * y_n) / fx
    rays_cam = torch.stack([x_n, y_n, torch.ones_like(x_n)], dim=-1)  # (..., N, 3)
    rays = rays_cam @ camera_to_ego[..., :3, :3].transpose(-1, -2)
    rays = rays / rays.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return rays, camera_to_ego[..., :3, 3]


def geometry_features(rays: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """Fourier features of ray + origin: ``(..., N, 3)``, ``(..., 3)`` -> ``(..., N, F)``."""
    origin = (origins / _CAMERA_POSITION_SCALE_M)[..., None, :].expand_as(rays)
    base = torch.cat([rays, origin], dim=-1)  # (..., N, 6)
    freqs = torch.pi * 2.0 ** torch.arange(_FOURIER_BANDS, device=rays.device,
                                          dtype=rays.dtype)
    ang = base[..., None] * freqs  # (..., N, 6, bands)
    feats = torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)
    return torch.cat([base, feats], dim=-1)


GEOMETRY_DIM = 6 + 6 * 2 * _FOURIER_BANDS


def conv_stem(hidden_size: int, patch_size_px: int) -> nn.Sequential:
    """``log2(patch_size_px)`` stride-2 3x3 convolutions: a small CNN with the patch stride.

    Widths grow to ``hidden_size`` (a quarter, a half, then full for a 16 px patch), SiLU
    between layers, none after the last (the tokens are summed with the geometry next).
    """
    layers = patch_size_px.bit_length() - 1
    widths = [hidden_size // 2 ** max(0, layers - 2 - i) for i in range(layers)]
    modules: list[nn.Module] = []
    channels = 3
    for i, width in enumerate(widths):
        modules.append(nn.Conv2d(channels, width, 3, 2, 1))
        if i < layers - 1:
            modules.append(nn.SiLU())
        channels = width
    return nn.Sequential(*modules)


def grid_max(features: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Max over ``rows x cols`` cells of ``(N, D, H, W)`` -> ``(N, rows * cols, D)``.

    Cell edges as in adaptive max pooling (``floor(i * H / rows)`` to ``ceil((i + 1) * H /
    rows)``), written as slices so that it exports to ONNX for any grid size.
    """
    h, w = features.shape[-2:]
    cells = []
    for r in range(rows):
        top, bottom = (r * h) // rows, -((-(r + 1) * h) // rows)
        for c in range(cols):
            left, right = (c * w) // cols, -((-(c + 1) * w) // cols)
            cells.append(features[..., top:bottom, left:right].amax(dim=(-2, -1)))
    return torch.stack(cells, dim=1)


class PatchEncoder(nn.Module):
    """Our per-camera encoder: a patchify stem (linear or conv); blocks follow in the tokenizer."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.patchify = (conv_stem(cfg.hidden_size, cfg.patch_size_px) if cfg.stem == "conv"
                         else nn.Conv2d(3, cfg.hidden_size, cfg.patch_size_px,
                                        cfg.patch_size_px))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [0, 1] -> ``(N, patches, D)``."""
        return self.patchify(images * 2.0 - 1.0).flatten(2).transpose(1, 2)


class EfficientNetEncoder(nn.Module):
    """EfficientNet-Lite0 feature map (stride 32, 1280 channels) projected to ``D``."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        from alpamayo_ros.model.pretrained import efficientnet_lite0

        self.net = efficientnet_lite0(cfg.pretrained)
        self.net._fc = nn.Identity()  # classifier unused
        self.proj = nn.Linear(1280, cfg.hidden_size)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [0, 1] -> ``(N, patches, D)``."""
        feats = self.net.extract_features((images - self.mean) / self.std)
        return self.proj(feats.flatten(2).transpose(1, 2))


class VisionTokenizer(nn.Module):
    """Images of all cameras and frames -> ``frames * tokens_per_timestep`` tokens."""

    def __init__(self, cfg: VisionConfig, out_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.encoder = (EfficientNetEncoder(cfg) if cfg.encoder == "efficientnet_lite0"
                        else PatchEncoder(cfg))
        self.geometry = nn.Sequential(nn.Linear(GEOMETRY_DIM, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(EncoderBlock(d, cfg.num_heads, 3 * d)
                                    for _ in range(cfg.encoder_layers))
        self.frame_embedding = nn.Parameter(torch.zeros(cfg.num_frames, d))
        queries = cfg.tokens_per_timestep if cfg.fusion == "queries" else cfg.grid_queries
        if queries:
            self.queries = nn.Parameter(torch.randn(queries, d) * 0.02)
            self.fusion = nn.ModuleList(EncoderBlock(d, cfg.num_heads, 3 * d, cross=True)
                                        for _ in range(cfg.fusion_layers))
        if cfg.fusion == "camera_grid":
            self.missing_camera = nn.Parameter(torch.randn(d) * 0.02)
        self.out = nn.Linear(d, out_dim)

    def forward(self, images: torch.Tensor, camera_valid: torch.Tensor,
                intrinsics: torch.Tensor, camera_to_ego: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, F * tokens_per_timestep, out_dim)``.

        ``images (B, F, C, 3, H, W)`` uint8 or float in [0, 1]; ``camera_valid (B, C)``
        bool; ``intrinsics (B, C, 3, 3)`` in the pixels of the ``H x W`` images;
        ``camera_to_ego (B, C, 4, 4)``.
        """
        b, f, c, _, h, w = images.shape
        cfg = self.cfg
        if (h, w) != (cfg.image_height_px, cfg.image_width_px):
            raise ValueError(f"images are {h}x{w}, the model expects "
                             f"{cfg.image_height_px}x{cfg.image_width_px} (use the processor)")
        if f != cfg.num_frames:
            raise ValueError(f"images have {f} frames, the model expects {cfg.num_frames}")
        x = images.reshape(b * f * c, 3, h, w)
        x = x.float() / 255.0 if images.dtype == torch.uint8 else x.float()
        tokens = self.encoder.features(x)  # (B*F*C, N, D)
        n = tokens.shape[1]
        rays, origins = patch_rays(intrinsics.float(), camera_to_ego.float(),
                                   h // cfg.stride_px, w // cfg.stride_px, cfg.stride_px)
        geo = self.geometry(geometry_features(rays, origins))  # (B, C, N, D)
        tokens = tokens.view(b, f, c, n, -1) + geo[:, None]
        tokens = tokens.reshape(b * f * c, n, -1)
        for block in self.blocks:
            tokens = block(tokens)
        if cfg.fusion == "queries":
            q = self._queries(tokens, camera_valid, b, f, c)
            return self.out(q.reshape(b, f * cfg.tokens_per_timestep, -1))
        cells = self._camera_grid(tokens, camera_valid, b, f, c, h // cfg.stride_px,
                                  w // cfg.stride_px)
        if cfg.grid_queries:
            q = self._queries(tokens, camera_valid, b, f, c).view(b, f, cfg.grid_queries, -1)
            cells = torch.cat([cells.view(b, f, -1, cells.shape[-1]), q], dim=2)
        return self.out(cells.reshape(b, f * cfg.tokens_per_timestep, -1))

    def _queries(self, tokens: torch.Tensor, camera_valid: torch.Tensor, b: int, f: int,
                 c: int) -> torch.Tensor:
        """Patch tokens ``(B*F*C, N, D)`` -> ``(B*F, queries, D)``: learned queries fused."""
        n = tokens.shape[1]
        context = tokens.reshape(b * f, c * n, -1)
        mask = camera_valid[:, None, :, None].expand(b, f, c, n).reshape(b * f, c * n)
        q = self.queries[None].expand(b * f, -1, -1)
        q = q + self.frame_embedding[None].expand(b, -1, -1).reshape(b * f, 1, -1)
        for block in self.fusion:
            q = block(q, context, mask)
        return q

    def _camera_grid(self, tokens: torch.Tensor, camera_valid: torch.Tensor, b: int, f: int,
                     c: int, grid_h: int, grid_w: int) -> torch.Tensor:
        """Patch tokens ``(B*F*C, N, D)`` -> ``(B, F * max_cameras * cells, D)`` cell maxima."""
        cfg = self.cfg
        if c > cfg.max_cameras:
            raise ValueError(f"images have {c} cameras, VisionConfig.max_cameras is "
                             f"{cfg.max_cameras}")
        d = tokens.shape[-1]
        grid = tokens.transpose(1, 2).reshape(b * f * c, d, grid_h, grid_w)
        cells = grid_max(grid, cfg.grid_rows, cfg.grid_cols).view(b, f, c, -1, d)
        valid = camera_valid[:, None, :, None, None]
        cells = torch.where(valid, cells, self.missing_camera)
        if c < cfg.max_cameras:  # absent slots read as missing cameras
            pad = self.missing_camera.expand(b, f, cfg.max_cameras - c, cells.shape[3], d)
            cells = torch.cat([cells, pad], dim=2)
        cells = cells + self.frame_embedding[None, :, None, None]
        return cells.reshape(b, f * cfg.max_cameras * cells.shape[3], d)
