"""Reading a policy file so that every problem points at file:line: YAML with the line of each
key, duplicate keys refused, and schema errors worded with the field and the closest valid name.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from shared.errors import PolicyError


class LinedDict(dict[str, Any]):
    """A YAML mapping that remembers the line (1-based) of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML would keep the last silently) and keeps
    the line of every key."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LinedDict:
    loader.flatten_mapping(node)
    mapping = LinedDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping.key_lines:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first on line {mapping.key_lines[key]}); "
                "YAML would silently keep only the last",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    """The file's YAML, errors naming the file (not "<unicode string>") and the line."""
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError as exc:
        raise PolicyError(f"{path}: policy file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc}") from exc
    except RecursionError:  # PyYAML's parser recurses per level: [[[[... exhausts the stack
        raise PolicyError(f"{path}: not valid YAML: nested too deeply to read") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"{where}: not valid YAML: {problem}") from exc


def line_of(data: Any, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest key along ``loc`` that exists in ``data`` (a LinedDict tree)."""
    line, node = None, data
    for part in loc:
        if isinstance(node, LinedDict):
            line = node.line if line is None else line
            if part not in node:
                break
            line, node = node.key_lines.get(part, line), node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            if isinstance(node, LinedDict):
                line = node.line
        else:
            break
    return line


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (X, X | None, tuple[X, ...], dict[str, X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_class(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, tuple, list, dict):
        for arg in typing.get_args(annotation):
            found = _model_class(arg)
            if found is not None:
                return found
    return None


def _fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid field names of the mapping that holds ``loc[-1]``."""
    cls: type[BaseModel] | None = root
    parts = list(loc[:-1])
    while parts and cls is not None:
        part = parts.pop(0)
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        nxt = _model_class(annotation)
        if typing.get_origin(annotation) is dict and parts:
            parts.pop(0)  # the dict key (a model name), then its value's fields
        cls = nxt
    return list(cls.model_fields) if cls is not None else []


_MESSAGES = {
    "missing": "is required but missing",
    "extra_forbidden": "is not a known field",
}


def format_errors(source: str, data: Any, exc: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: ``file:line: model 'm': field 'a.b': what is wrong``."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = line_of(data, loc)
        where = f"{source}:{line}" if line else source
        model, rest = "", [str(p) for p in loc]
        if len(loc) >= 2 and loc[0] == "models":
            model, rest = f"model {loc[1]!r}: ", rest[2:]
        field = ".".join(rest) or "(top level)"
        message = _MESSAGES.get(err["type"], err["msg"].removeprefix("Value error, "))
        if err["type"] == "too_short" and loc == ("models",):
            message = "names no model; add at least one under 'models'"
        if err["type"] == "extra_forbidden":
            valid = _fields_at(root, loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            if close:
                message += f"; did you mean {close[0]!r}?"
            elif valid:
                message += f" (valid here: {', '.join(valid)})"
        lines.append(f"{where}: {model}field {field!r}: {message}")
    return "\n".join(lines)
