"""Decoder-only backbones behind one interface: our transformer and a Hugging Face LM.

The interface the model uses (:class:`Backbone`):

- ``embed(ids) -> (B, S, D)`` token embeddings (vision/ego tokens arrive as embeddings);
- ``forward(embeds, positions, key_valid, cache) -> (hidden, cache)``: causal attention
  over the cache plus the new tokens; ``key_valid (B, L_past + S)`` masks padding keys;
  ``positions (B, S)`` are the rotary positions (padding does not advance them);
- ``logits(hidden)``; ``layer_kv(cache, i)`` the rotated keys and values of layer ``i``
  ``(B, H_kv, L, head_dim)``, what the flow-matching expert attends to;
- ``cache_length(cache)`` and ``crop_cache(cache, length)`` to roll a cache back.

:class:`OwnBackbone` (default) is a Llama-style transformer with tied embeddings.
:class:`HFBackbone` wraps any ``AutoModelForCausalLM`` (Llama, Qwen2, SmolLM2 ...) loaded
from a local directory or GGUF file, with its embeddings resized to our vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from alpamayo_ros.model.configuration import BackboneConfig
from alpamayo_ros.model.layers import (
    DecoderLayer,
    RMSNorm,
    grouped_attention,
    layer_output,
    layer_qkv,
    rotary_tables,
)


class KVCache:
    """Per-layer keys and values ``(B, H_kv, L, head_dim)``, grown by concatenation."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k, v`` to ``layer`` and return the layer's full keys and values."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    @property
    def length(self) -> int:
        """Cached positions."""
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def select(self, index: torch.Tensor) -> None:
        """Keep the positions ``index`` (1-D) in every layer."""
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i].index_select(2, index)
                self.values[i] = self.values[i].index_select(2, index)

    def crop(self, length: int) -> None:
        """Keep the first ``length`` positions."""
        for i in range(len(self.keys)):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i][:, :, :length]
                self.values[i] = self.values[i][:, :, :length]


def causal_mask(key_valid: torch.Tensor, num_new: int) -> torch.Tensor:
    """Bool mask ``(B, 1, S, L)``: new query ``j`` sees valid keys up to its own slot.

    A query always sees itself, so padding queries never get an empty (NaN) row.
    """
    total = key_valid.shape[1]
    past = total - num_new
    q_pos = torch.arange(past, total, device=key_valid.device)[:, None]
    k_pos = torch.arange(total, device=key_valid.device)[None, :]
    causal = k_pos <= q_pos
    mask = causal[None] & (key_valid[:, None, :] | (k_pos == q_pos)[None])
    return mask[:, None]


class Backbone(nn.Module):
    """What every backbone offers (see the module docstring)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    vocab_size: int

    def embed(self, ids: torch.Tensor) -> torch.Tensor:  # noqa: D102
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # noqa: D102
        raise NotImplementedError

    def new_cache(self) -> Any:  # noqa: D102
        raise NotImplementedError

    def layer_kv(self, cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        raise NotImplementedError

    def cache_length(self, cache: Any) -> int:  # noqa: D102
        raise NotImplementedError

    def crop_cache(self, cache: Any, length: int) -> None:  # noqa: D102
        raise NotImplementedError

    def select_cache(self, cache: Any, index: torch.Tensor) -> None:  # noqa: D102
        raise NotImplementedError


class OwnBackbone(Backbone):
    """Our Llama-style decoder (RMSNorm, RoPE, GQA, SwiGLU, tied embeddings)."""

    def __init__(self, cfg: BackboneConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.hidden_size, self.num_layers = cfg.hidden_size, cfg.num_layers
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim, self.rope_theta, self.vocab_size = cfg.head_dim, cfg.rope_theta, vocab_size
        self.tok_emb = nn.Embedding(vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                         cfg.intermediate_size) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        for layer in self.layers:
            for lin in (layer.attn.qkv, layer.mlp.gate_up):
                nn.init.normal_(lin.weight, std=0.02)
            for lin in (layer.attn.o, layer.mlp.down):
                nn.init.normal_(lin.weight, std=0.02 / (2 * cfg.num_layers) ** 0.5)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings."""
        return self.tok_emb(ids)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output head."""
        return hidden @ self.tok_emb.weight.t()

    def new_cache(self) -> KVCache:
        """An empty cache."""
        return KVCache(self.num_layers)

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, key_valid: torch.Tensor,
                cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """Run new tokens ``embeds (B,S,D)`` against ``cache``; returns final-norm hidden."""
        cache = self.new_cache() if cache is None else cache
        if key_valid.shape[1] != cache.length + embeds.shape[1]:
            raise ValueError(f"key_valid covers {key_valid.shape[1]} positions, cache + new "
                             f"tokens are {cache.length + embeds.shape[1]}")
        s = embeds.shape[1]
        cos, sin = rotary_tables(positions, self.head_dim, self.rope_theta, self.num_heads,
                                 self.num_kv_heads, embeds.dtype)
        # One new token with every key valid: nothing to mask (the fast decode path).
        mask = None if s == 1 and bool(key_valid.all()) else causal_mask(key_valid, s)
        rep = self.num_heads // self.num_kv_heads
        if mask is not None and s > 1 and rep > 1:  # one row per grouped query head
            mask = mask.repeat(1, 1, rep, 1)
        b, d = embeds.shape[0], embeds.shape[2]
        x = embeds.reshape(b * s, d)
        for i, layer in enumerate(self.layers):
            w = layer.weights()
            q, k, v = layer_qkv(x, w, b, s, cos, sin)
            k, v = cache.update(i, k, v)
            x = layer_output(x, grouped_attention(q, k, v, mask, b, s), w)
        return self.norm(x).view(b, s, d), cache

    def layer_kv(self, cache: KVCache, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated keys and values of one layer."""
        return cache.keys[layer], cache.values[layer]

    def cache_length(self, cache: KVCache) -> int:
        """Cached positions."""
        return cache.length

    def crop_cache(self, cache: KVCache, length: int) -> None:
        """Roll back to ``length`` positions."""
        cache.crop(length)

    def select_cache(self, cache: KVCache, index: torch.Tensor) -> None:
        """Keep the cached positions ``index``."""
        cache.select(index)


class HFBackbone(Backbone):
    """A Hugging Face causal LM (Llama/Qwen2 family) behind :class:`Backbone`.

    Built from ``cfg.hf_config`` when present (a saved policy: the weights come from our
    safetensors), else from ``cfg.hf_source`` (a local directory, or a directory holding
    ``cfg.hf_gguf_file``) with its pretrained weights. ``cfg.hf_config`` and the shape
    fields are filled in from the loaded model.
    """

    def __init__(self, cfg: BackboneConfig, vocab_size: int) -> None:
        super().__init__()
        try:
            import transformers
        except ImportError as exc:  # pragma: no cover - exercised only without transformers
            raise ImportError("BackboneConfig.kind='hf' needs the 'transformers' package "
                              "(pip install transformers)") from exc
        if cfg.hf_config:
            hf_cfg = transformers.AutoConfig.for_model(**cfg.hf_config)
            model = transformers.AutoModelForCausalLM.from_config(hf_cfg)
        else:
            kwargs = {"gguf_file": cfg.hf_gguf_file} if cfg.hf_gguf_file else {}
            model = transformers.AutoModelForCausalLM.from_pretrained(
                cfg.hf_source, local_files_only=True, dtype=torch.float32, **kwargs)
        model.config.use_cache = True
        if model.get_input_embeddings().weight.shape[0] != vocab_size:
            model.resize_token_embeddings(vocab_size, mean_resizing=False)
        self.hf = model
        c = model.config
        self.hidden_size, self.num_layers = c.hidden_size, c.num_hidden_layers
        self.num_heads = c.num_attention_heads
        self.num_kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        rope = getattr(c, "rope_parameters", None) or {}
        self.rope_theta = float(rope.get("rope_theta", getattr(c, "rope_theta", 10000.0)))
        self.vocab_size = vocab_size
        # Record what was built so config.json rebuilds it without the source files.
        saved = c.to_dict()
        for key in ("transformers_version", "architectures", "_name_or_path", "dtype",
                    "torch_dtype"):
            saved.pop(key, None)
        cfg.hf_config = saved
        cfg.hidden_size, cfg.num_layers = self.hidden_size, self.num_layers
        cfg.num_heads, cfg.num_kv_heads = self.num_heads, self.num_kv_heads
        cfg.intermediate_size = getattr(c, "intermediate_size", cfg.intermediate_size)
        cfg.rope_theta = self.rope_theta
        cfg.max_positions = getattr(c, "max_position_embeddings", cfg.max_positions)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings."""
        return self.hf.get_input_embeddings()(ids)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head."""
        return self.hf.get_output_embeddings()(hidden)

    def new_cache(self) -> Any:
        """An empty ``DynamicCache``."""
        from transformers import DynamicCache

        return DynamicCache(config=self.hf.config)

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, key_valid: torch.Tensor,
                cache: Any = None) -> tuple[torch.Tensor, Any]:
        """Run new tokens against the cache; returns final-norm hidden states."""
        cache = self.new_cache() if cache is None else cache
        out = self.hf.get_decoder()(
            inputs_embeds=embeds, attention_mask=key_valid.long(), position_ids=positions,
            past_key_values=cache, use_cache=True)
        return out.last_hidden_state, out.past_key_values

    def layer_kv(self, cache: Any, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated keys and values of one layer."""
        entry = cache.layers[layer]
        return entry.keys, entry.values

    def cache_length(self, cache: Any) -> int:
        """Cached positions."""
        return cache.get_seq_length()

    def crop_cache(self, cache: Any, length: int) -> None:
        """Roll back to ``length`` positions."""
        remove = cache.get_seq_length() - length
        if remove > 0:
            cache.crop(-remove)  # a negative count removes tokens in every version

    def select_cache(self, cache: Any, index: torch.Tensor) -> None:
        """Keep the cached positions ``index``."""
        for layer in cache.layers:
            layer.keys = layer.keys.index_select(2, index)
            layer.values = layer.values.index_select(2, index)


def build_backbone(cfg: BackboneConfig, vocab_size: int) -> Backbone:
    """The backbone ``cfg.kind`` names."""
    return OwnBackbone(cfg, vocab_size) if cfg.kind == "own" else HFBackbone(cfg, vocab_size)
