"""The wire format: every payload stepup-dist puts on Redis.

Each payload is one msgpack map::

    {"v": 1, "t": <type tag>, "f": {<field name>: <value>, ...}}

- `v` is the format version; a payload with another version is refused.
- `t` names one message class of `messages.py` (`run`, `check`, `started`, `done`,
  `checked`, `call`, `reply`, `wake`, `control`).
- `f` holds exactly the fields of that class; missing or unknown fields, or a value of the
  wrong type, are refused. A `FileState` travels as the list
  `[mode, mtime_ns, size, inode, digest]`.

Only msgpack's plain types are accepted (no extension types), so decoding never runs code.
A payload that does not decode raises `WireError`, which carries the first bytes.
RQ jobs carry the same bytes: `MsgpackSerializer` is the serializer RQ is given, so nothing
on Redis is ever unpickled.
"""

import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import msgpack

from .errors import WireError
from .messages import (
    Call,
    Checked,
    CheckJob,
    Control,
    FileState,
    Message,
    Reply,
    RunJob,
    Started,
    StepDone,
    Wake,
)

__all__ = ("MAX_PAYLOAD", "VERSION", "MsgpackSerializer", "decode", "encode", "unpack")

VERSION = 1
MAX_PAYLOAD = 64 * 1024 * 1024
"""Larger payloads are refused before they are unpacked."""

# Environment values and paths may hold bytes that are not UTF-8 (Python's surrogates).
_UNICODE_ERRORS = "surrogateescape"

_CLASSES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (RunJob, CheckJob, Started, StepDone, Checked, Call, Reply, Wake, Control)
}
_HINTS = {tag: typing.get_type_hints(cls) for tag, cls in _CLASSES.items()}


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, FileState):
        return obj.as_list()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode(message: Message) -> bytes:
    """Turn a message into a versioned msgpack payload."""
    names = _FIELD_NAMES.get(type(message)) or tuple(f.name for f in fields(message))
    body = {name: getattr(message, name) for name in names}
    return msgpack.packb(
        {"v": VERSION, "t": message.TYPE, "f": body},
        default=_pack_default,
        unicode_errors=_UNICODE_ERRORS,
    )


def unpack(data: bytes) -> Any:
    """msgpack bytes to plain values, refusing oversized or malformed data with `WireError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_PAYLOAD:
        raise WireError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD}", bytes(data[:64]))
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=True, timestamp=0, unicode_errors=_UNICODE_ERRORS
        )
    except Exception as exc:
        raise WireError(f"not msgpack ({exc})", bytes(data)) from exc


def decode(data: bytes, *expected: type[Message]) -> Message:
    """Decode and validate a payload; optionally require one of the `expected` classes."""
    obj = unpack(data)
    payload = bytes(data)
    if not isinstance(obj, dict) or set(obj) != {"v", "t", "f"}:
        raise WireError("not a stepup-dist message (expected keys v, t, f)", payload)
    if type(obj["v"]) is not int or obj["v"] != VERSION:  # True and 1.0 equal 1 in Python
        raise WireError(f"unsupported version {obj['v']!r} (this is version {VERSION})", payload)
    tag = obj["t"]
    cls = _CLASSES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise WireError(f"unknown message type {tag!r}", payload)
    if expected and cls not in expected:
        wanted = ", ".join(c.TYPE for c in expected)
        raise WireError(f"got message type {tag!r}, expected {wanted}", payload)
    body = obj["f"]
    if not isinstance(body, dict):
        raise WireError("message fields are not a map", payload)
    names, required, checks = _SPECS[tag]
    unknown = body.keys() - names
    if unknown:
        raise WireError(f"unknown fields {sorted(map(str, unknown))} in {tag!r}", payload)
    missing = required - body.keys()
    if missing:
        raise WireError(f"missing fields {sorted(missing)} in {tag!r}", payload)
    values = {}
    for name, value in body.items():
        try:
            values[name] = checks[name](value)
        except TypeError as exc:
            raise WireError(f"field {name!r} of {tag!r}: {exc}", payload) from None
    return cls(**values)


Check = Callable[[Any], Any]
"""Validates one value against an annotation (TypeError if it does not fit), and returns
it, FileState lists converted."""


_CHECKERS: dict[Any, Check] = {}
"""Annotation -> its `Check`, made once: reading annotations with `typing` for every
field of every message took most of a planner's decoding (bench/planner_dispatch.py)."""


def _checker(tp: Any) -> Check:
    check = _CHECKERS.get(tp)
    if check is None:
        check = _CHECKERS[tp] = _make_checker(tp)
    return check


def _make_checker(tp: Any) -> Check:
    if tp is Any:

        def plain(value: Any) -> Any:
            _check_plain(value, depth=0)
            return value

        return plain
    if tp is FileState:
        return FileState.from_list
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(tp)
        nullable = type(None) in options
        checks = [_checker(option) for option in options if option is not type(None)]

        def union(value: Any) -> Any:
            if value is None and nullable:
                return None
            for check in checks:
                try:
                    return check(value)
                except TypeError:
                    continue
            raise TypeError(f"expected {tp}, got {type(value).__name__}")

        return union
    if origin is list:
        (item_check,) = map(_checker, typing.get_args(tp))

        def list_of(value: Any) -> Any:
            if not isinstance(value, list):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return [item_check(item) for item in value]

        return list_of
    if origin is dict:
        key_check, item_check = map(_checker, typing.get_args(tp))

        def dict_of(value: Any) -> Any:
            if not isinstance(value, dict):
                raise TypeError(f"expected a map, got {type(value).__name__}")
            return {key_check(k): item_check(v) for k, v in value.items()}

        return dict_of
    if tp is float:

        def real(value: Any) -> Any:
            if type(value) is int:
                return float(value)
            if type(value) is not float:
                raise TypeError(f"expected float, got {type(value).__name__}")
            return value

        return real

    def exact(value: Any) -> Any:
        if type(value) is not tp:
            raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
        return value

    return exact


_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in _CLASSES.values()}
"""Message class -> its field names, in order (`fields()` builds them anew at each call)."""

_SPECS = {
    tag: (
        frozenset(f.name for f in fields(cls)),
        frozenset(f.name for f in fields(cls) if f.default is f.default_factory is MISSING),
        {name: _checker(tp) for name, tp in _HINTS[tag].items()},
    )
    for tag, cls in _CLASSES.items()
}
"""Message type -> (its field names, the required ones, the `Check` of each field)."""


def _check_plain(value: Any, depth: int) -> None:
    """Free-form values (API call arguments) may only nest plain types, not too deeply."""
    if depth > 32:
        raise TypeError("nested too deeply")
    if value is None or type(value) in (bool, int, float, str, bytes):
        return
    if isinstance(value, list):
        for item in value:
            _check_plain(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, depth + 1)
            _check_plain(item, depth + 1)
    else:
        raise TypeError(f"type {type(value).__name__} is not allowed")


class MsgpackSerializer:
    """RQ serializer: msgpack for the job data RQ stores, never pickle.

    RQ stores `(func_name, instance, args, kwargs)`; ours is always
    `("stepup_dist.worker.perform", None, [payload], {})` with `payload` from `encode`.
    """

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return msgpack.packb(obj, default=_pack_default, unicode_errors=_UNICODE_ERRORS)

    @staticmethod
    def loads(data: bytes) -> Any:
        return unpack(data)
