"""Unit tests of the vision options: conv stem, camera-grid fusion, max-pooled perception."""

import pytest
import torch
from torch import nn

from alpamayo_ros.model.configuration import PolicyConfig, VisionConfig, preset
from alpamayo_ros.model.modeling import PerceptionHead
from alpamayo_ros.model.vision import VisionTokenizer, conv_stem, grid_max

GRID = {"stem": "conv", "fusion": "camera_grid", "grid_rows": 2, "grid_cols": 3,
        "tokens_per_timestep": 24}


def tiny_grid_config() -> VisionConfig:
    return preset("tiny", vision=GRID).vision


def rig(batch: int, cams: int) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.tensor([[40.0, 0.0, 24.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])
    intrinsics = k.expand(batch, cams, 3, 3).clone()
    extrinsics = torch.eye(4).expand(batch, cams, 4, 4).clone()
    extrinsics[..., 1, 3] = torch.arange(cams, dtype=torch.float32)  # distinct mounts
    return intrinsics, extrinsics


@pytest.mark.parametrize("size", [(6, 10), (6, 9), (3, 3), (5, 7)])
def test_grid_max_equals_adaptive_max_pooling(size):
    x = torch.randn(2, 5, *size)
    want = nn.functional.adaptive_max_pool2d(x, (2, 3)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(grid_max(x, 2, 3), want)


@pytest.mark.parametrize("patch", [4, 8, 16])
def test_conv_stem_has_the_patch_stride_and_the_hidden_width(patch):
    out = conv_stem(32, patch)(torch.zeros(1, 3, 48, 80))
    assert out.shape == (1, 32, 48 // patch, 80 // patch)


def test_vision_options_are_validated_naming_the_field():
    with pytest.raises(ValueError, match="VisionConfig.tokens_per_timestep 16 must be"):
        VisionConfig(fusion="camera_grid", tokens_per_timestep=16, max_cameras=4)
    with pytest.raises(ValueError, match="VisionConfig.stem 'conv' needs"):
        VisionConfig(stem="conv", patch_size_px=12, image_height_px=48, image_width_px=72)
    with pytest.raises(ValueError, match="VisionConfig.fusion must be one of"):
        VisionConfig(fusion="mean")
    with pytest.raises(ValueError, match="VisionConfig.grid_rows x grid_cols"):
        VisionConfig(fusion="camera_grid", grid_rows=8, grid_cols=1, tokens_per_timestep=32,
                     image_height_px=48, image_width_px=80, patch_size_px=8)
    with pytest.raises(ValueError, match="PolicyConfig.perception_pooling"):
        PolicyConfig(perception_pooling="mean")
    with pytest.raises(ValueError, match="VisionConfig.grid_queries 4 needs fusion"):
        VisionConfig(grid_queries=4)
    with pytest.raises(ValueError, match="VisionConfig.grid_queries must be an int >= 0"):
        VisionConfig(fusion="camera_grid", grid_queries=-1, tokens_per_timestep=23)
    with pytest.raises(ValueError, match=r"grid_cols \+ grid_queries = 28"):
        VisionConfig(fusion="camera_grid", grid_queries=4, tokens_per_timestep=24)


def test_weights_saved_before_the_options_load_with_the_old_vision_path():
    """A config written before session 11 has no stem/fusion/pooling keys: the old path."""
    data = preset("tiny").to_dict()
    for key in ("stem", "fusion", "grid_rows", "grid_cols"):
        del data["vision"][key]
    del data["perception_pooling"]
    cfg = PolicyConfig.from_dict(data)
    assert (cfg.vision.stem, cfg.vision.fusion, cfg.perception_pooling) == \
        ("linear", "queries", "attention")
    assert preset("default").vision.fusion == "camera_grid"
    assert "grid_queries" not in data["vision"] or cfg.vision.grid_queries == 0


def test_camera_grid_tokens_are_per_camera_cells_and_a_missing_camera_is_one_token():
    cfg = tiny_grid_config()
    torch.manual_seed(0)
    vision = VisionTokenizer(cfg, 16).eval()
    b, f, c = 2, cfg.num_frames, cfg.max_cameras
    images = torch.randint(0, 255, (b, f, c, 3, cfg.image_height_px, cfg.image_width_px),
                           dtype=torch.uint8)
    valid = torch.tensor([[True, True, False, True], [True, False, False, False]])
    intrinsics, extrinsics = rig(b, c)
    with torch.no_grad():
        tokens = vision(images, valid, intrinsics, extrinsics)
        assert tokens.shape == (b, f * 24, 16)
        cells = tokens.view(b, f, c, 6, 16)
        # a missing camera's cells are its learned token (+ the frame), whatever its pixels
        images2 = images.clone()
        images2[0, :, 2] = 0
        torch.testing.assert_close(vision(images2, valid, intrinsics, extrinsics), tokens)
        assert torch.allclose(cells[1, 0, 1], cells[1, 0, 2])
        assert not torch.allclose(cells[0, 0, 0], cells[0, 0, 1])  # valid cameras differ
        # fewer camera slots than max_cameras: the absent slots read as missing cameras
        short = vision(images[:, :, :2], valid[:, :2], intrinsics[:, :2], extrinsics[:, :2])
        torch.testing.assert_close(short.view(b, f, c, 6, 16)[:, :, :2], cells[:, :, :2])
        torch.testing.assert_close(short.view(b, f, c, 6, 16)[0, :, 3], cells[1, :, 3])


def test_a_small_bright_object_moves_only_its_own_cell_of_its_own_camera():
    """The max keeps a few pixels: one cell of one camera changes, the others do not."""
    cfg = preset("tiny", vision={**GRID, "encoder_layers": 0}).vision  # no cross-patch mixing
    torch.manual_seed(1)
    vision = VisionTokenizer(cfg, 16).eval()
    c, h, w = cfg.max_cameras, cfg.image_height_px, cfg.image_width_px
    images = torch.full((1, cfg.num_frames, c, 3, h, w), 90, dtype=torch.uint8)
    valid = torch.ones(1, c, dtype=torch.bool)
    intrinsics, extrinsics = rig(1, c)
    with torch.no_grad():
        base = vision(images, valid, intrinsics, extrinsics).view(cfg.num_frames, c, 6, 16)
        images[0, -1, 1, :, 2:6, 2:6] = 255  # a 4x4 px object, top-left, camera 1, last frame
        moved = vision(images, valid, intrinsics, extrinsics).view(cfg.num_frames, c, 6, 16)
    changed = (moved - base).abs().amax(-1) > 1e-6
    assert changed[-1, 1, 0]
    assert int(changed.sum()) == 1


def test_max_perception_head_is_order_free_and_sees_one_token():
    torch.manual_seed(0)
    head = PerceptionHead(16, 5, queries=4, pooling="max").eval()
    tokens = torch.randn(3, 10, 16)
    with torch.no_grad():
        out = head(tokens)
        torch.testing.assert_close(head(tokens[:, torch.randperm(10)]), out)
        spiked = tokens.clone()
        spiked[0, 7] *= 20.0
        changed = head(spiked)
    assert not torch.allclose(changed[0], out[0])
    torch.testing.assert_close(changed[1:], out[1:])
    assert not hasattr(head, "queries")


def test_max_mean_head_reads_the_max_and_the_mean_and_trains_every_token():
    torch.manual_seed(0)
    head = PerceptionHead(16, 5, queries=4, pooling="max_mean")
    tokens = torch.randn(3, 10, 16, requires_grad=True)
    out = head(tokens)
    want = head.mlp(torch.cat([tokens.amax(1), tokens.mean(1)], -1))
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(head(tokens[:, torch.randperm(10)]), out)  # order-free
    out.sum().backward()
    assert (tokens.grad.abs().sum(-1) > 0).all()  # every token gets a gradient
    max_only = PerceptionHead(16, 5, queries=4, pooling="max")
    tokens.grad = None
    max_only(tokens).sum().backward()  # the max alone: only each feature's argmax token
    assert int((tokens.grad != 0).sum()) <= 3 * 16


def test_grid_queries_follow_each_frames_cells_and_attend_to_every_camera():
    """Per frame: the grid-only path's cells, then the queries, which read every patch."""
    torch.manual_seed(2)
    grid_only = VisionTokenizer(preset("tiny", vision={**GRID, "encoder_layers": 0}).vision,
                                16).eval()
    cfg = preset("tiny", vision={**GRID, "grid_queries": 3, "tokens_per_timestep": 27,
                                 "encoder_layers": 0}).vision
    vision = VisionTokenizer(cfg, 16).eval()
    missing = vision.load_state_dict(grid_only.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("queries", "fusion.")) for k in missing)
    b, f, c, h, w = 1, cfg.num_frames, cfg.max_cameras, cfg.image_height_px, cfg.image_width_px
    images = torch.full((b, f, c, 3, h, w), 90, dtype=torch.uint8)
    valid = torch.ones(b, c, dtype=torch.bool)
    intrinsics, extrinsics = rig(b, c)
    with torch.no_grad():
        tokens = vision(images, valid, intrinsics, extrinsics)
        assert tokens.shape == (b, f * 27, 16)
        cells = grid_only(images, valid, intrinsics, extrinsics).view(f, 24, 16)
        torch.testing.assert_close(tokens.view(f, 27, 16)[:, :24], cells)
        images[0, -1, 1, :, 2:6, 2:6] = 255  # a 4x4 px object, camera 1, last frame
        moved = vision(images, valid, intrinsics, extrinsics).view(f, 27, 16)
    changed = (moved - tokens.view(f, 27, 16)).abs().amax(-1) > 1e-6
    assert changed[-1, 24:].all()  # every query of that frame sees it
    assert int(changed[-1, :24].sum()) == 1 and not changed[0].any()
