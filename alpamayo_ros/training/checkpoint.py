"""Training checkpoints: safetensors + JSON only (never pickle, never ``torch.load``).

A checkpoint directory holds

- the weights directory files (``config.json``, ``model.safetensors``, ``tokenizer.json``;
  :func:`alpamayo_ros.model.weights.save_pretrained`), so a checkpoint loads as a policy;
- ``optimizer.safetensors`` (every AdamW state tensor, keyed ``state/<index>/<name>``) and
  ``optimizer.json`` (param groups, non-tensor state values, the parameter name of every
  index, checked on load);
- ``rng.safetensors`` (torch CPU and CUDA generator states as uint8 tensors);
- ``trainer_state.json`` (stage, steps done, best val loss, numpy and Python RNG states,
  the recipe, anything else the loop records).

It is written to ``<dir>.tmp`` and renamed, so an interrupted save leaves no half
checkpoint. :func:`latest_checkpoint` finds the newest one under a run directory.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_META = "optimizer.json"
RNG_FILE = "rng.safetensors"
CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from, with the reason."""


def optimizer_to_flat(state_dict: dict, names: list[str]
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors and JSON (``names``: param order)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{index}/{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = []
    for group in state_dict["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()})
    meta = {"param_groups": groups, "scalars": scalars, "param_names": names}
    return tensors, meta


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                        names: list[str]) -> dict:
    """Inverse of :func:`optimizer_to_flat`; the parameter names must match."""
    if meta.get("param_names") != names:
        saved = meta.get("param_names") or []
        diff = sorted(set(saved) ^ set(names))[:5]
        raise CheckpointError(f"optimizer state is for other parameters (differences: {diff})")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        groups.append({k: (tuple(v) if k == "betas" else v) for k, v in group.items()})
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every global RNG state: torch (tensors) and numpy/Python (JSON)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return tensors, {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
                     "python": [version, list(internal), gauss]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(directory: str | Path, policy: Any, optimizer: torch.optim.Optimizer,
                    param_names: list[str], state: dict[str, Any]) -> Path:
    """Write a checkpoint (weights, optimizer, RNG, ``state``) to ``directory``; returns it."""
    from safetensors.torch import save_file

    out = Path(directory)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    policy.save_pretrained(tmp)
    tensors, meta = optimizer_to_flat(optimizer.state_dict(), param_names)
    save_file(tensors, str(tmp / OPTIMIZER_TENSORS))
    (tmp / OPTIMIZER_META).write_text(json.dumps(meta, indent=1) + "\n")
    rng_tensors, rng_meta = rng_state()
    save_file(rng_tensors, str(tmp / RNG_FILE))
    record = {"format": CHECKPOINT_FORMAT, **state, "rng": rng_meta}
    (tmp / STATE_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def read_state(directory: str | Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint (checked)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')!r} is not "
                              f"{CHECKPOINT_FORMAT}")
    return state


def load_optimizer_state(directory: str | Path, param_names: list[str]) -> dict:
    """The optimizer ``state_dict`` saved in a checkpoint."""
    from safetensors.torch import load_file

    root = Path(directory)
    for name in (OPTIMIZER_TENSORS, OPTIMIZER_META):
        if not (root / name).is_file():
            raise CheckpointError(f"{root} is missing {name}")
    meta = json.loads((root / OPTIMIZER_META).read_text())
    return optimizer_from_flat(load_file(str(root / OPTIMIZER_TENSORS)), meta, param_names)


def restore_rng(directory: str | Path) -> None:
    """Set the global RNGs to the checkpoint's states."""
    from safetensors.torch import load_file

    root = Path(directory)
    set_rng_state(load_file(str(root / RNG_FILE)), read_state(root)["rng"])


def latest_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a checkpoint, else the newest checkpoint below it."""
    root = Path(path)
    if (root / STATE_FILE).is_file():
        return root
    found = [p.parent for p in root.glob("**/" + STATE_FILE) if not p.parent.name.endswith(".tmp")]
    if not found:
        raise CheckpointError(f"no checkpoint in {root}")
    from alpamayo_ros.training.config import STAGES

    def order(p: Path) -> tuple[int, int]:
        s = read_state(p)
        return STAGES.index(s["stage"]), int(s["step"])

    return max(found, key=order)
