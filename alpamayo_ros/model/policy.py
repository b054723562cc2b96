"""The high-level policy the ROS node and training call: load, predict, save.

``Policy.from_pretrained(dir, device="auto")`` loads a weights directory;
``policy.predict(samples, mode=..., flow_steps=..., num_samples=...)`` returns a
:class:`Prediction`: controls, unicycle states, the generated reasoning text and
per-stage timings. Modes:

- ``"reasoning"``: generate the CoC reasoning, then the trajectory (AR1's main mode);
- ``"trajectory"``: trajectory only (empty reasoning, the fast path);
- ``num_samples = K``: K trajectories per sample from K noise draws (minADE_K), after
  one reasoning per sample.

``decoder="flow"`` (default) uses the flow-matching expert; ``decoder="tokens"``
decodes the 128 trajectory tokens autoregressively (slow; for comparison and RL).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from alpamayo_ros.model import dynamics
from alpamayo_ros.model.configuration import PolicyConfig, preset
from alpamayo_ros.model.modeling import AlpamayoModel, SpecialIds, count_parameters
from alpamayo_ros.model.processor import ModelInputs, Processor
from alpamayo_ros.model.tokenizer import CocTokenizer, seed_corpus
from alpamayo_ros.model.weights import load_pretrained, save_pretrained
from alpamayo_ros.sample import DrivingSample

MODES = ("reasoning", "trajectory")
DECODERS = ("flow", "tokens")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; ``'cuda'`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:n]', got {device!r}")
    return torch.device(device)


@dataclass
class Prediction:
    """What :meth:`Policy.predict` returns (numpy, on the CPU)."""

    controls: np.ndarray  # float32 (B, K, 64, 2): acceleration m/s^2, curvature 1/m
    states: np.ndarray  # float32 (B, K, 64, 4): x_m, y_m, heading_rad, velocity_mps
    reasoning: list[str]  # (B,) decoded CoC text ("" in trajectory mode)
    reasoning_ids: list[list[int]]  # (B,) generated text token ids
    timings_ms: dict[str, float] = field(default_factory=dict)  # per stage + total
    mode: str = "reasoning"
    decoder: str = "flow"
    flow_steps: int = 0
    # Reasoning decode: backbone passes, and tokens taken from ``reasoning_draft``.
    reasoning_passes: int = 0
    draft_tokens_accepted: int = 0


class Policy:
    """A model + tokenizer + processor on a device."""

    def __init__(self, model: AlpamayoModel, tokenizer: CocTokenizer,
                 device: str | torch.device = "auto") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.processor = Processor(model.config, tokenizer)

    @property
    def config(self) -> PolicyConfig:
        """The model's configuration."""
        return self.model.config

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "auto"
                        ) -> Policy:
        """Load a weights directory (see :mod:`alpamayo_ros.model.weights`)."""
        dev = resolve_device(device)
        model, tokenizer = load_pretrained(directory, dev)
        return cls(model, tokenizer, dev)

    @classmethod
    def from_config(cls, config: PolicyConfig | str, corpus: Sequence[str] | None = None,
                    seed: int = 0, device: str | torch.device = "auto") -> Policy:
        """A freshly initialised (untrained) policy; the BPE trains on ``corpus``.

        Without a corpus the vocabulary is learnt from the taxonomy names only.
        """
        cfg = preset(config) if isinstance(config, str) else config
        texts = list(corpus) if corpus else seed_corpus()
        tokenizer = CocTokenizer.train(texts, cfg.tokenizer.bpe_vocab_size,
                                       cfg.tokenizer.trajectory_bins)
        torch.manual_seed(seed)
        model = AlpamayoModel(cfg, tokenizer.vocab_size, SpecialIds.from_tokenizer(tokenizer))
        return cls(model, tokenizer, device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json + model.safetensors + tokenizer.json."""
        return save_pretrained(self.model, self.tokenizer, directory)

    def num_parameters(self) -> int:
        """Parameter count."""
        return count_parameters(self.model)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def predict(self, inputs: DrivingSample | Sequence[DrivingSample] | ModelInputs,
                mode: str = "reasoning", flow_steps: int | None = None, num_samples: int = 1,
                decoder: str = "flow", max_reasoning_tokens: int | None = None,
                temperature: float = 0.0, seed: int | None = None,
                noise_scale: float = 1.0,
                reasoning_draft: Sequence[int] | None = None) -> Prediction:
        """Predict the plan (and reasoning) for one sample or a batch.

        ``flow_steps`` defaults to the config's (10); ``max_reasoning_tokens`` to the
        tokenizer budget; ``temperature`` > 0 samples the reasoning (and the trajectory
        tokens with ``decoder='tokens'``); ``seed`` makes noise and sampling repeatable;
        ``noise_scale`` multiplies the flow's initial noise (1: the trained distribution;
        below 1 trades sample diversity for plans nearer the mode, like a temperature);
        ``reasoning_draft``: text ids the reasoning is expected to repeat (the previous
        plan's), verified in batches for one sample at temperature 0 (same greedy text,
        fewer backbone passes; see ``AlpamayoModel.generate_reasoning``).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if not (isinstance(noise_scale, (int, float)) and 0.0 <= noise_scale <= 2.0):
            raise ValueError(f"noise_scale must be in [0, 2], got {noise_scale!r}")
        steps = self.config.expert.flow_steps if flow_steps is None else flow_steps
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"flow_steps must be a positive int, got {steps!r}")
        budget = (self.config.tokenizer.max_reasoning_tokens if max_reasoning_tokens is None
                  else max_reasoning_tokens)
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(seed)
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        if isinstance(inputs, DrivingSample):
            inputs = [inputs]
        batch = inputs if isinstance(inputs, ModelInputs) else self.processor(
            list(inputs), with_targets=False)
        batch = batch.to(self.device)
        self._sync()
        t = time.perf_counter()
        timings["preprocess"] = (t - t_start) * 1e3

        def lap(name: str) -> None:
            nonlocal t
            self._sync()
            now = time.perf_counter()
            timings[name] = (now - t) * 1e3
            t = now

        model = self.model
        stats = {"passes": 0, "draft_accepted": 0}
        vision = model.encode_vision(batch)
        lap("vision")
        ctx = model.prefill(batch, vision)
        lap("prefill")
        b = batch.batch_size
        if mode == "reasoning":
            text_ids, ctx = model.generate_reasoning(ctx, budget, temperature, gen,
                                                     draft=reasoning_draft, stats=stats)
            ids = [[int(i) for i in row if int(i) != model.ids.pad] for row in text_ids.cpu()]
        else:
            ctx = model.skip_reasoning(ctx)
            ids = [[] for _ in range(b)]
        lap("reasoning")
        if decoder == "flow":
            controls = model.flow_trajectory(ctx, steps, num_samples, generator=gen,
                                             noise_scale=float(noise_scale))
        else:
            draws = [model.decode_trajectory_tokens(ctx, temperature, gen)[0]
                     for _ in range(num_samples)]
            controls = torch.stack(draws, dim=1)
        lap("trajectory")
        v0 = batch.speed_mps[:, None].expand(b, num_samples)
        states = dynamics.integrate(controls[..., 0].double(), controls[..., 1].double(),
                                    v0.double())
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        return Prediction(
            controls=controls.float().cpu().numpy(), states=states.float().cpu().numpy(),
            reasoning=[self.tokenizer.decode(r) for r in ids], reasoning_ids=ids,
            timings_ms=timings, mode=mode, decoder=decoder,
            flow_steps=steps if decoder == "flow" else 0,
            reasoning_passes=stats["passes"], draft_tokens_accepted=stats["draft_accepted"])
