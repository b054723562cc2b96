"""Fuzzing the weights loader (issue #12): only :class:`WeightsError`, never a crash.

One tiny policy (``Policy.from_config("tiny")``) is saved once per module; each example
copies it and damages one file: config.json (bytes flipped/cut, any value replaced with
any JSON, keys deleted, another format_version), model.safetensors (bytes flipped/cut,
header edited, with config.json's SHA-256 updated so the damage reaches the parser), or
tokenizer.json (bytes damaged, or another policy's tokenizer). The loader must raise
:class:`WeightsError` (a ValueError naming the file) or load a model; it never unpickles
(safetensors + JSON only) and never allocates a model the file does not hold.
Budget: fixed example counts with ``derandomize=True`` (the same inputs on every run).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alpamayo_ros.model.configuration import FORMAT_VERSION
from alpamayo_ros.model.policy import Policy
from alpamayo_ros.model.weights import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    WeightsError,
    load_pretrained,
)
from test.helpers.fuzz import fuzz_settings

torch = pytest.importorskip("torch")

FUZZ = fuzz_settings(25)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    policy = Policy.from_config("tiny", device="cpu")
    return policy.save_pretrained(tmp_path_factory.mktemp("tiny") / "weights")


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory) -> Path:
    """A tokenizer learnt from another corpus (same vocabulary size, other merges)."""
    policy = Policy.from_config("tiny", corpus=["zebra crossing " * 20, "quokka lane " * 20],
                                device="cpu")
    return policy.save_pretrained(tmp_path_factory.mktemp("other") / "w") / TOKENIZER_FILE


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / "w"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def _load(directory: Path) -> None:
    try:
        model, tokenizer = load_pretrained(directory, "cpu")
    except WeightsError as exc:
        assert str(directory) in str(exc)  # the message names the file or directory
        return
    assert model.vocab_size == tokenizer.vocab_size


def _paths(tree: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += _paths(value, prefix + (key,))
    return out


def _mutate_bytes(data: bytes, draw: st.DrawFn) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        if not buf:
            break
        at = draw(st.integers(0, len(buf) - 1))
        op = draw(st.sampled_from(["flip", "truncate", "cut", "insert"]))
        if op == "flip":
            buf[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del buf[at:]
        elif op == "cut":
            del buf[at:at + draw(st.integers(1, 64))]
        else:
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(buf)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set_sha(directory: Path) -> None:
    """Make config.json's checksum match the (damaged) weights file."""
    meta = json.loads((directory / CONFIG_FILE).read_text())
    meta["weights_sha256"] = _sha(directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(meta))


@FUZZ
@given(data=st.data())
def test_config_json_damaged(tiny_weights: Path, tmp_path: Path, data: st.DataObject) -> None:
    directory = _copy(tiny_weights, tmp_path)
    path = directory / CONFIG_FILE
    if data.draw(st.booleans()):
        path.write_bytes(_mutate_bytes(path.read_bytes(), data.draw))
    else:
        meta = json.loads(path.read_text())
        for _ in range(data.draw(st.integers(1, 3))):
            keys = data.draw(st.sampled_from([p for p in _paths(meta) if p]))
            node = meta
            for key in keys[:-1]:
                node = node[key] if isinstance(node, dict) and key in node else None
            if not isinstance(node, dict):
                continue
            if data.draw(st.integers(0, 5)) == 0:
                node.pop(keys[-1], None)
            else:
                node[keys[-1]] = data.draw(json_values | st.integers(0, 10**7))
        path.write_text(json.dumps(meta))
    _load(directory)


@pytest.mark.parametrize("change", [
    ("format_version", FORMAT_VERSION - 1), ("format_version", "3"),
    ("format_version", None), ("vocab_size", float("inf")), ("special_ids", [1, 2]),
    ("policy", []), ("policy.backbone.num_layers", 10**9),
    ("policy.backbone.hidden_size", 10**6), ("policy.vision.hidden_size", 4096),
    ("policy.backbone.rope_theta", None), ("policy.expert.layer_map", ["a", "b"]),
    ("policy.backbone.kind", "hf"), ("weights_sha256", 0),
])
def test_config_json_explicit_damage(tiny_weights: Path, tmp_path: Path, change) -> None:
    """Hand-picked cases: each is a WeightsError naming config.json, without allocating."""
    directory = _copy(tiny_weights, tmp_path)
    meta = json.loads((directory / CONFIG_FILE).read_text())
    *parents, last = change[0].split(".")
    node = meta
    for key in parents:
        node = node[key]
    node[last] = change[1]
    (directory / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=CONFIG_FILE):
        load_pretrained(directory, "cpu")


def test_config_json_nested_too_deeply(tiny_weights: Path, tmp_path: Path) -> None:
    directory = _copy(tiny_weights, tmp_path)
    (directory / CONFIG_FILE).write_text("[" * 100_000)
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_pretrained(directory, "cpu")


def _header(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def _write_header(path: Path, header: dict, body: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


@FUZZ
@given(data=st.data())
def test_safetensors_damaged_with_matching_checksum(tiny_weights: Path, tmp_path: Path,
                                                    data: st.DataObject) -> None:
    directory = _copy(tiny_weights, tmp_path)
    path = directory / WEIGHTS_FILE
    if data.draw(st.booleans()):
        path.write_bytes(_mutate_bytes(path.read_bytes(), data.draw))
    else:
        header, body = _header(path)
        names = sorted(k for k in header if k != "__metadata__")
        name = data.draw(st.sampled_from(names + ["__metadata__"]))
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "all"]))
        value = data.draw(json_values | st.lists(st.integers(0, 2**40), max_size=3)
                          | st.sampled_from(["F16", "I64", "BOOL", "F64", "U8"]))
        if name == "__metadata__":
            header[name] = {"format_version": "3", "aliases": data.draw(
                st.text(max_size=20) | st.just('{"a": 1}') | st.just("[1]"))}
        elif field == "all":
            header[name] = value
        else:
            header[name][field] = value
        _write_header(path, header, body)
    _set_sha(directory)
    _load(directory)


@pytest.mark.parametrize("edit", ["aliases_list", "aliases_to_missing", "shape_swapped",
                                  "dtype_f16", "offsets_past_end", "drop_tensor"])
def test_safetensors_explicit_damage(tiny_weights: Path, tmp_path: Path, edit: str) -> None:
    directory = _copy(tiny_weights, tmp_path)
    path = directory / WEIGHTS_FILE
    header, body = _header(path)
    names = sorted(k for k in header if k != "__metadata__")
    big = max(names, key=lambda n: len(header[n]["shape"]) * 1000 + header[n]["shape"][0])
    if edit == "aliases_list":
        header["__metadata__"]["aliases"] = "[1, 2]"
    elif edit == "aliases_to_missing":
        header["__metadata__"]["aliases"] = json.dumps({"extra.weight": "nope"})
    elif edit == "shape_swapped":
        header[big]["shape"] = header[big]["shape"][::-1]
    elif edit == "dtype_f16":
        header[big]["dtype"] = "F16"  # half the bytes the offsets span: invalid file
    elif edit == "offsets_past_end":
        header[big]["data_offsets"][1] += 10**9
    else:
        del header[big]
    _write_header(path, header, body)
    _set_sha(directory)
    with pytest.raises(WeightsError, match=WEIGHTS_FILE):
        load_pretrained(directory, "cpu")


@FUZZ
@given(data=st.data())
def test_tokenizer_damaged(tiny_weights: Path, tmp_path: Path, data: st.DataObject) -> None:
    directory = _copy(tiny_weights, tmp_path)
    path = directory / TOKENIZER_FILE
    if data.draw(st.booleans()):
        path.write_bytes(_mutate_bytes(path.read_bytes(), data.draw))
    else:
        doc = json.loads(path.read_text())
        keys = data.draw(st.sampled_from([p for p in _paths(doc) if 0 < len(p) <= 3]))
        node = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = data.draw(json_values)
        path.write_text(json.dumps(doc))
    _load(directory)


def test_tokenizer_of_another_policy(tiny_weights: Path, other_tokenizer: Path,
                                     tmp_path: Path) -> None:
    directory = _copy(tiny_weights, tmp_path)
    shutil.copy(other_tokenizer, directory / TOKENIZER_FILE)
    with pytest.raises(WeightsError, match="does not match"):
        load_pretrained(directory, "cpu")


def test_never_unpickles(tiny_weights: Path, tmp_path: Path) -> None:
    """A torch pickle in place of model.safetensors (checksum matching) is refused."""
    directory = _copy(tiny_weights, tmp_path)
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"x": Boom()}, directory / WEIGHTS_FILE)
    _set_sha(directory)
    with pytest.raises(WeightsError, match="cannot be parsed"):
        load_pretrained(directory, "cpu")
    assert not marker.exists()
