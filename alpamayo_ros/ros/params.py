"""ROS parameters from config dataclasses: declare, read back, validate; YAML files.

The config dataclasses (``SyncConfig``, ``SafetyLimits``, ``ControllerConfig``, the node
configs) are the single definition of parameters: :func:`declare_config` declares one ROS
parameter per field with the field's default, reads the values the node was started with
(``--params-file`` / ``-p``) and builds the dataclass, whose ``__post_init__`` validates
them. A wrong value therefore stops the node at start-up with a message naming the field.

YAML files use ``/**: ros__parameters:`` (any node) or ``<node_name>: ros__parameters:``;
:func:`load_params_file` reads them the way ``--params-file`` does, without ROS, for
``alpamayo up`` and for tests.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter has the wrong type or value (the message names the parameter)."""


def _field_kind(cls: type, field: dataclasses.Field) -> str:
    """``bool``, ``int``, ``float``, ``str``, ``str_list``, ``float_list`` or ``int_list``."""
    hints = typing.get_type_hints(cls)
    hint = hints.get(field.name, field.type)
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        inner = args[0] if args else str
        return {str: "str_list", float: "float_list", int: "int_list"}.get(inner, "str_list")
    if hint in (bool, int, float, str):
        return hint.__name__
    raise TypeError(f"{cls.__name__}.{field.name}: unsupported parameter type {hint!r}")


_PARAM_TYPES = {
    "bool": Parameter.Type.BOOL, "int": Parameter.Type.INTEGER, "float": Parameter.Type.DOUBLE,
    "str": Parameter.Type.STRING, "str_list": Parameter.Type.STRING_ARRAY,
    "float_list": Parameter.Type.DOUBLE_ARRAY, "int_list": Parameter.Type.INTEGER_ARRAY,
}


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    raise TypeError(f"field {field.name} needs a default to become a ROS parameter")


def coerce_value(cls: type, name: str, value: Any) -> Any:
    """Convert a parameter value to the field's Python type, or raise ConfigError naming it.

    Integers are accepted for float fields (YAML ``1`` for ``1.0``); lists become tuples
    when the field's default is a tuple.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ConfigError(f"{cls.__name__} has no parameter {name!r}; known: {sorted(fields)}")
    field = fields[name]
    kind = _field_kind(cls, field)
    where = f"parameter {name!r} ({cls.__name__})"
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list, got {value!r}")
    item_type = {"str_list": str, "float_list": (int, float), "int_list": int}[kind]
    for item in value:
        if isinstance(item, bool) or not isinstance(item, item_type):
            raise ConfigError(f"{where} must be a list of {kind.split('_')[0]}, got {value!r}")
    items = [float(v) for v in value] if kind == "float_list" else list(value)
    return tuple(items) if isinstance(_default(field), tuple) else items


def config_from_dict(cls: type[T], values: dict[str, Any], strict: bool = True) -> T:
    """Build ``cls`` from parameter values (missing keys keep their defaults).

    ``strict``: unknown keys are an error naming them. Validation errors of the
    dataclass are re-raised as :class:`ConfigError`.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if strict and unknown:
        raise ConfigError(f"unknown parameters for {cls.__name__}: {unknown}")
    kwargs = {k: coerce_value(cls, k, v) for k, v in values.items() if k in names}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def declare_config(node: Node, cls: type[T], prefix: str = "") -> T:
    """Declare one ROS parameter per field of ``cls`` and build it from their values.

    Float fields are declared with dynamic typing so that YAML integers are accepted,
    then coerced; every other field keeps its ROS type. Raises :class:`ConfigError`.
    """
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name.startswith("_") or not field.init:
            continue
        kind = _field_kind(cls, field)
        default = _default(field)
        if isinstance(default, tuple):
            default = list(default)
        name = f"{prefix}{field.name}"
        descriptor = ParameterDescriptor(
            description=_field_doc(cls, field.name),
            dynamic_typing=kind in ("float", "float_list"))
        # an empty list has no ROS type of its own: declare the field's type instead
        empty_list = isinstance(default, list) and not default
        try:
            param = node.declare_parameter(
                name, _PARAM_TYPES[kind] if empty_list else default, descriptor)
        except Exception as exc:  # rclpy's InvalidParameterTypeException et al.
            raise ConfigError(f"parameter {name!r} ({cls.__name__}): {exc}") from exc
        value = param.value
        if empty_list and param.type_ == Parameter.Type.NOT_SET:
            value = []
        if value is None:
            value = []
        values[field.name] = value
    return config_from_dict(cls, values)


def _field_doc(cls: type, name: str) -> str:
    """The ``- ``name``: ...`` bullet of the class docstring, if any, else the name."""
    doc = cls.__doc__ or ""
    marker = f"``{name}``"
    for line in doc.splitlines():
        if marker in line and line.strip().startswith("-"):
            return line.strip().lstrip("- ").strip()
    return name


def load_params_file(path: str | Path, node_name: str = "") -> dict[str, Any]:
    """Parameters a node named ``node_name`` gets from a ROS 2 params YAML file.

    ``/**`` applies to every node; a ``<node_name>`` (or ``/<node_name>``) section is
    merged over it, as ``--params-file`` does.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read parameters file {path}: {exc}") from exc
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"cannot read parameters file {path}: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of node names to ros__parameters")
    out: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        if key and isinstance(doc.get(key), dict):
            section = doc[key].get("ros__parameters")
            if not isinstance(section, dict):
                raise ConfigError(f"{path}: section {key!r} has no ros__parameters mapping")
            out.update(section)
    return out

