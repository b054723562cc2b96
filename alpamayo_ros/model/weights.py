"""Weights directories: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``.

``config.json`` carries the format version, the full :class:`PolicyConfig`, the
vocabulary size, the special token ids and the SHA-256 of ``model.safetensors``. Loading
is strict and never unpickles: a missing file, another format version, a config that does
not validate, a checksum or parse failure (a corrupt file), a missing/unexpected tensor or
a shape mismatch each raise :class:`WeightsError` with what is wrong and where. The
tensor names and shapes are checked against the safetensors header *before* the model is
allocated (the config builds a skeleton on PyTorch's meta device), so a config.json that
asks for a huge model fails with a WeightsError instead of exhausting memory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from alpamayo_ros.model.configuration import FORMAT_VERSION, PolicyConfig
from alpamayo_ros.model.modeling import AlpamayoModel, SpecialIds, count_parameters
from alpamayo_ros.model.tokenizer import TOKENIZER_FILE, CocTokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE)


class WeightsError(ValueError):
    """A weights directory that cannot be loaded, with the reason."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_pretrained(model: AlpamayoModel, tokenizer: CocTokenizer, directory: str | Path
                    ) -> Path:
    """Write the three files into ``directory`` (created if needed); returns it."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:  # tied weights are stored once
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().contiguous().cpu()
    weights_path = out / WEIGHTS_FILE
    save_file(tensors, str(weights_path), metadata={"format_version": str(FORMAT_VERSION),
                                                    "aliases": json.dumps(aliases)})
    tokenizer.save(out)
    config = model.config.to_dict()
    config["vision"]["pretrained"] = False  # the weights file has every tensor
    meta = {
        "format_version": FORMAT_VERSION,
        "policy": config,
        "vocab_size": model.vocab_size,
        "special_ids": asdict(model.ids),
        "num_parameters": count_parameters(model),
        "weights_sha256": _sha256(weights_path),
    }
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[AlpamayoModel, CocTokenizer]:
    """Rebuild the model and tokenizer saved by :func:`save_pretrained` (strict)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(directory)
    if not root.is_dir():
        raise WeightsError(f"weights directory {root} does not exist")
    for name in REQUIRED_FILES:
        if not (root / name).is_file():
            raise WeightsError(f"weights directory {root} is missing {name} "
                               f"(expected {', '.join(REQUIRED_FILES)})")
    try:
        meta = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise WeightsError(f"{root / CONFIG_FILE} is not valid JSON (corrupt?): "
                           f"{exc or 'nested too deeply'}") from exc
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        hints = {
            1: " (version 1 stored separate q/k/v and gate/up projections; version 2 fuses "
               "them: save the weights again with this code)",
            2: " (version 2 has no action statistics and no auxiliary heads: retrain, or "
               "export again with this code)",
        }
        hint = hints.get(version, "") if isinstance(version, int) else ""
        raise WeightsError(f"{root / CONFIG_FILE}: format_version {version!r} is not the "
                           f"supported {FORMAT_VERSION}{hint}")
    try:
        config = PolicyConfig.from_dict(meta["policy"])
        ids = SpecialIds(**meta["special_ids"])
        vocab_size = int(meta["vocab_size"])
        expected_sha = str(meta["weights_sha256"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise WeightsError(f"{root / CONFIG_FILE} is invalid: {exc!r}") from exc
    weights_path = root / WEIGHTS_FILE
    if _sha256(weights_path) != expected_sha:
        raise WeightsError(f"{weights_path} does not match the SHA-256 in {CONFIG_FILE} "
                           f"(corrupt or replaced file)")
    try:
        tokenizer = CocTokenizer.load(root / TOKENIZER_FILE, config.tokenizer.trajectory_bins)
    except Exception as exc:  # tokenizers raises its own exception type
        raise WeightsError(f"{root / TOKENIZER_FILE} cannot be read: {exc}") from exc
    except BaseException as exc:  # a Rust panic in tokenizers (pyo3 PanicException)
        if type(exc).__name__ != "PanicException":
            raise
        raise WeightsError(f"{root / TOKENIZER_FILE} cannot be read: {exc}") from None
    if tokenizer.vocab_size != vocab_size or SpecialIds.from_tokenizer(tokenizer) != ids:
        raise WeightsError(f"{root / TOKENIZER_FILE} does not match {CONFIG_FILE} "
                           f"(vocab {tokenizer.vocab_size} vs {vocab_size})")
    try:  # the header only: names, shapes, metadata
        from safetensors import safe_open

        with safe_open(str(weights_path), framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
            aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    except (SafetensorError, OSError, ValueError, RecursionError) as exc:
        raise WeightsError(f"{weights_path} cannot be parsed (corrupt?): {exc}") from exc
    if not isinstance(aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise WeightsError(f"{weights_path}: metadata 'aliases' must map tensor names to "
                           f"tensor names, got {aliases!r:.200}")
    for alias, target in aliases.items():
        if target not in shapes:
            raise WeightsError(f"{weights_path}: alias {alias!r} names the tensor {target!r}, "
                               "which the file does not hold")
        shapes[alias] = shapes[target]
    _check_layer_counts(meta["policy"], len(shapes), root / CONFIG_FILE)
    try:
        with torch.device("meta"):  # shapes without allocating anything
            skeleton = AlpamayoModel(config, vocab_size, ids)
    except Exception as exc:  # whatever torch/transformers raise for a bad shape
        raise WeightsError(f"{root / CONFIG_FILE}: the config does not build a model: "
                           f"{exc!r:.300}") from exc
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise WeightsError(f"{weights_path} does not fit the config: missing tensors "
                           f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                           f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise WeightsError(f"{weights_path}: tensor {name} has shape {shapes[name]}, "
                               f"the config needs {shape}")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{weights_path} cannot be parsed (corrupt?): {exc}") from exc
    for alias, target in aliases.items():
        state[alias] = state[target]
    model = AlpamayoModel(config, vocab_size, ids)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a tensor of a dtype that cannot be copied
        raise WeightsError(f"{weights_path} cannot be loaded: {exc}") from exc
    return model.to(device).eval(), tokenizer


def _check_layer_counts(policy: dict, num_tensors: int, where: Path) -> None:
    """Every ``*layers`` count in the config is at most the file's tensor count.

    Each layer holds at least one tensor, so a larger count cannot match the file; checked
    before the skeleton model is built because building it takes time per layer.
    """
    stack = [policy]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if (isinstance(key, str) and key.endswith("layers") and isinstance(value, int)
                        and value > num_tensors):
                    raise WeightsError(f"{where}: {key} = {value} but the weights file holds "
                                       f"{num_tensors} tensors")
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
