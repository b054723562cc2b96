"""Build fully populated instances of any ROS message type, deterministically.

Every field gets a distinct non-default value (nested messages and sequences included),
so a round trip that drops or corrupts any field is detected by ``==``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_SCALARS = {
    "float": 1.5, "double": -2.25, "float32": 1.5, "float64": -2.25,
    "int8": -7, "int16": -300, "int32": -70000, "int64": -(2**40),
    "uint8": 7, "uint16": 300, "uint32": 70000, "uint64": 2**40,
    "octet": b"\x05", "byte": b"\x05", "char": "c", "boolean": True, "bool": True,
}


def _message_class(type_name: str) -> type:
    package, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _value(type_name: str, salt: int) -> Any:
    seq = re.match(r"sequence<(.+?)(?:, \d+)?>$", type_name)
    if seq:
        inner = seq.group(1)
        values = [_value(inner, salt + i + 1) for i in range(2)]
        return values
    arr = re.match(r"(.+)\[(\d+)\]$", type_name)
    if arr:
        return [_value(arr.group(1), salt + i) for i in range(int(arr.group(2)))]
    if type_name.startswith("string") or type_name.startswith("wstring"):
        return f"text-{salt}-é"
    if type_name in _SCALARS:
        value = _SCALARS[type_name]
        if isinstance(value, bool):
            return bool(salt % 2) or True
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return type(value)(value + (salt % 5))
        return value
    return populated(_message_class(type_name), salt + 1)


def populated(msg_class: type, salt: int = 0) -> Any:
    """An instance of ``msg_class`` with every field set to a distinct value."""
    msg = msg_class()
    for index, (field, type_name) in enumerate(msg_class.get_fields_and_field_types().items()):
        setattr(msg, field, _value(type_name, salt + index))
    return msg
