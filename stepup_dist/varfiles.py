"""Variable files and the JSON form of arguments, as StepUp 4's `loadns`, `dumpns` and `call`.

A variable file holds named values: JSON (`.json`), TOML (`.toml`, read only), YAML
(`.yaml`, `.yml`) or Python (`.py`, read only: the file is run and its public names are
taken). `call()` hands the arguments of a called function over as JSON (on the command line
or in such a file), never as pickle: whoever writes an argument file must not be able to
run code in the step that reads it, except through a `.py` file that is an input anyway.

`unstructure()` turns values into what JSON and YAML hold (lists, dicts, strings, numbers);
`structure()` turns them back, guided by a parameter's type hint. Both cover the types plans
pass around: paths (`path.Path` and `pathlib` paths are strings), lists, tuples, sets, dicts,
optional values, enums, dataclasses and attrs classes. StepUp uses cattrs for this; these are
the same rules for those types, without the dependency.
"""

import contextlib
import dataclasses
import enum
import json
import os
import sys
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from runpy import run_path
from typing import Any

import attrs
import yaml
from path import Path

__all__ = ("FORMATS", "dump_variables", "load_variables", "structure", "unstructure")

FORMATS = {".json": "JSON", ".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".py": "Python"}
"""Suffixes of variable files that can be read; JSON and YAML can also be written."""


def load_variables(paths: Iterable[str], dir_out: str | None = None) -> dict[str, Any]:
    """The variables of the files, in order (a later file overrides an earlier one).

    A `path.Path` defined in a Python file is relative to that file's folder (the file runs
    there); it is returned relative to `dir_out` (default: the current directory).
    """
    out = Path.cwd() if dir_out is None else Path(dir_out)
    variables: dict[str, Any] = {}
    for path in map(Path, paths):
        suffix = path.suffix
        if suffix == ".json":
            with open(path) as fh:
                variables.update(_mapping(json.load(fh), path))
        elif suffix == ".toml":
            with open(path, "rb") as fh:
                variables.update(tomllib.load(fh))
        elif suffix in (".yaml", ".yml"):
            with open(path) as fh:
                variables.update(_mapping(yaml.safe_load(fh) or {}, path))
        elif suffix == ".py":
            variables.update(_python_variables(path, out))
        else:
            raise ValueError(f"unsupported variable file format: {path}")
    return variables


def _mapping(data: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of names to values")
    return data


def _python_variables(path: Path, dir_out: Path) -> dict[str, Any]:
    folder = path.parent.normpath()
    with contextlib.chdir(folder), _here_and_root():
        sys.path.insert(0, str(folder))
        try:
            found = run_path(path.name, run_name="<variables>")
        finally:
            sys.path.remove(str(folder))
    variables = {}
    for name, value in found.items():
        if name.startswith("_"):
            continue
        variables[name] = (folder / value).relpath(dir_out) if isinstance(value, Path) else value
    return variables


@contextlib.contextmanager
def _here_and_root() -> Iterator[None]:
    """`HERE` and `ROOT` for the current folder while a variable file runs there.

    The plan API takes the calling folder from `HERE` (as StepUp gives it to a step); a
    Python variable file runs in its own folder, and `getenv(..., back=True)` in it must
    give paths relative to that folder, as StepUp 4 computes them from the working directory.
    """
    root = os.environ.get("STEPUP_ROOT")
    if root is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in ("HERE", "ROOT")}
    here = os.path.relpath(os.path.realpath("."), os.path.realpath(root))
    os.environ["HERE"] = here
    os.environ["ROOT"] = os.path.relpath(os.path.realpath(root), os.path.realpath("."))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dump_variables(path: str, data: Mapping[str, Any] | types.SimpleNamespace) -> None:
    """Write the variables to a JSON or YAML file, as the suffix of `path` says."""
    if isinstance(data, types.SimpleNamespace):
        data = vars(data)
    suffix = Path(path).suffix
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"dumpns: unsupported file format: {suffix!r} ({path})")
    plain = unstructure(dict(data))
    with open(path, "w") as fh:
        if suffix == ".json":
            json.dump(plain, fh, indent=2)
            fh.write("\n")
        else:
            yaml.safe_dump(plain, fh)


def unstructure(value: Any) -> Any:
    """`value` as JSON holds it: dicts with string keys, lists, strings, numbers, None."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, enum.Enum):
        return unstructure(value.value)
    if isinstance(value, str):
        return str(value)  # a plain str: path.Path is a subclass, which YAML cannot write
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    if isinstance(value, Mapping):
        return {str(unstructure(k)): unstructure(v) for k, v in value.items()}
    if isinstance(value, types.SimpleNamespace):
        return unstructure(vars(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: unstructure(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if attrs.has(type(value)):
        return {a.name: unstructure(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if isinstance(value, set | frozenset):
        return [unstructure(v) for v in sorted(value, key=repr)]
    if isinstance(value, Iterable) and not isinstance(value, bytes):
        return [unstructure(v) for v in value]
    raise TypeError(f"cannot pass a {type(value).__name__} as JSON: {value!r}")


_NONE = type(None)


def structure(value: Any, hint: Any) -> Any:
    """`value` (from JSON) as the type `hint` names; TypeError or ValueError when it is not."""
    if hint is Any or hint is None or isinstance(hint, typing.TypeVar):
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and _NONE in args:
            return None
        errors = []
        for arm in args:
            if arm is _NONE:
                continue
            try:
                return structure(value, arm)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError("; ".join(errors) or f"{value!r} does not match {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{value!r} is not one of {args}")
        return value
    if origin is not None:
        return _structure_generic(value, origin, args)
    if not isinstance(hint, type):
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError(f"expected a bool, got {value!r}")
    if issubclass(hint, enum.Enum):
        return hint(value)
    if dataclasses.is_dataclass(hint) or attrs.has(hint):
        return _structure_class(value, hint)
    if hint in (list, tuple, set, frozenset, dict):
        return _structure_generic(value, hint, ())
    if isinstance(value, hint) and type(value) is hint:
        return value
    if isinstance(value, dict | list):
        raise TypeError(f"expected {hint.__name__}, got {type(value).__name__}")
    convert: Any = hint
    return convert(value)


def _structure_generic(value: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping, got {value!r}")
        key_t, value_t = args if len(args) == 2 else (Any, Any)
        return {structure(k, key_t): structure(v, value_t) for k, v in value.items()}
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"expected a sequence, got {value!r}")
    items = list(value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(structure(v, args[0]) for v in items)
        if args:
            if len(args) != len(items):
                raise ValueError(f"expected {len(args)} items, got {len(items)}: {value!r}")
            return tuple(structure(v, t) for v, t in zip(items, args, strict=True))
        return tuple(items)
    item_t = args[0] if args else Any
    converted = [structure(v, item_t) for v in items]
    if issubclass(origin, set | frozenset):
        return origin(converted)
    return converted


def _structure_class(value: Any, cls: type) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping for {cls.__name__}, got {value!r}")
    hints = typing.get_type_hints(cls)
    if dataclasses.is_dataclass(cls):
        names = {f.name: f.name for f in dataclasses.fields(cls) if f.init}
    else:
        names = {a.alias or a.name: a.name for a in attrs.fields(cls) if a.init}
    unknown = set(value) - set(names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    return cls(**{k: structure(v, hints.get(names[k], Any)) for k, v in value.items()})
