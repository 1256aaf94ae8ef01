"""Configuration files: a YAML mapping read into a dataclass's fields, every key known and every value
of its field's declared type, and command-line flags merged into it key by key.

Used by :meth:`harness.experiment.ExperimentConfig.from_yaml` and the benchmark manifest alike, so
``save_model: "no"``, ``experiment: 5`` or ``methods: ms`` stop with one line naming the file, the key
and the type expected, before anything runs.

A file is parsed within limits, checked on YAML's node graph before any value is built: at most
:data:`MAX_FILE_BYTES` bytes of UTF-8, :data:`MAX_NODES` values once every alias is expanded (ten levels
of nine-way aliases, a "billion laughs", would expand to 3.5 billion), :data:`MAX_DEPTH` levels of nesting,
no recursive alias and no key given twice in one mapping (the last would silently win).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml


#: the largest configuration file read (a configuration is a few hundred bytes)
MAX_FILE_BYTES = 1 << 20
#: the most values (mappings, lists, scalars) a file may hold with its aliases expanded
MAX_NODES = 100_000
#: the deepest nesting of mappings and lists
MAX_DEPTH = 50


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _check_graph(node: yaml.Node, path: str | Path) -> None:
    """Raise ``ValueError`` naming ``path`` and a line if the document rooted at ``node`` is deeper than
    :data:`MAX_DEPTH`, expands to more than :data:`MAX_NODES` values, holds a recursive alias or a mapping
    with a key given twice. An alias is a shared node: its expanded size is computed once."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if id(node) in sizes:
            if sizes[id(node)] < 0:
                raise ValueError(f"{path}, line {_line(node)}: a recursive alias (a value that holds itself)")
            return sizes[id(node)]
        if depth > MAX_DEPTH:
            raise ValueError(f"{path}, line {_line(node)}: nested deeper than {MAX_DEPTH} levels")
        sizes[id(node)] = -1
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in seen:
                        raise ValueError(f"{path}, line {_line(key)}: key {key.value!r} given twice in one mapping "
                                         f"(first on line {seen[key.value]}); give it once")
                    seen[key.value] = _line(key)
                total += size(key, depth + 1) + size(value, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        if total > MAX_NODES:
            raise ValueError(f"{path}, line {_line(node)}: expands to more than {MAX_NODES:,} values with its "
                             "aliases (&name / *name) expanded; a configuration is far smaller")
        sizes[id(node)] = total
        return total

    size(node, 0)


def _load_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` (None for an empty file), read within the module's limits; a file that
    is not UTF-8, too large, not valid YAML or over a limit raises ``ValueError`` naming the file (and line)."""
    raw = Path(path).read_bytes()
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {len(raw):,} bytes; a configuration file is at most {MAX_FILE_BYTES:,}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {raw[error.start]:#04x} at offset {error.start}); "
                         "save it as UTF-8") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{where}: not valid YAML ({problem})") from None
    finally:
        loader.dispose()


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The YAML mapping in ``path`` (empty for an empty file), read by :func:`_load_yaml`; a syntax error or a
    document that is not a mapping raises ``ValueError`` naming the file and line."""
    data = _load_yaml(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{path}, line 1: expected a mapping of {what} fields (name: value), got a {type(data).__name__}")
    return data


def matches_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` (``X | None``, ``list[X]``, ``dict[K, V]``, ``Any``; an
    int is a float, a bool is not a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(matches_type(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(matches_type(k, args[0]) and matches_type(v, args[1]) for k, v in value.items())
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def type_name(hint: Any) -> str:
    """A type hint as a message names it: ``float``, ``list[dict[str, float]]``, ``int | None``."""
    return str(hint).replace("typing.", "").replace("NoneType", "None") if typing.get_origin(hint) else hint.__name__


def _yaml_text(value: Any) -> str:
    """``value`` as one line of YAML (``null``, ``true``, ``[0]``, ``{}``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def describe_fields(cls: type, keys: Iterable[str], defaults: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """``(key, type, default)`` of each of ``keys``, fields of the dataclass ``cls``, in its declaration order:
    what a configuration file may hold, the default as YAML writes it (``defaults`` replace the dataclass's
    own, as the file's reader does; a field without a default is ``required``)."""
    keys, hints = set(keys), typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name not in keys:
            continue
        if defaults and f.name in defaults:
            default = _yaml_text(defaults[f.name])
        elif f.default is not dataclasses.MISSING:
            default = _yaml_text(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _yaml_text(f.default_factory())
        else:
            default = "required"
        out.append((f.name, type_name(hints[f.name]), default))
    return out


def check_fields(path: str | Path, data: dict[str, Any], cls: type, keys: Iterable[str]) -> None:
    """Raise ``ValueError`` naming ``path`` unless every key of ``data`` is one of ``keys`` (the message lists
    them) and every value has the type its field of the dataclass ``cls`` declares."""
    keys = sorted(keys)
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(map(str, unknown))}; valid keys: {', '.join(keys)} "
                         f"(python -m harness config --show lists them with their types and defaults)")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not matches_type(value, hints[key]):
            raise ValueError(f"{path}: {key} must be {type_name(hints[key])}, got {value!r}")


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in key by key: a mapping merges into a mapping (recursively), any
    other value replaces; ``None`` (a flag not given) changes nothing."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = merge(merged[key], value)
        merged[key] = value
    return merged
