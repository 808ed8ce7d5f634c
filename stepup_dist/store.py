"""What a build remembers between runs: `.stepup/graph.mpk`.

One msgpack map, written to a temporary file, fsynced and renamed over the old one, so a
kill at any moment leaves either the old or the new file, never half of one. `duration`
(seconds the step last ran, for the progress line's ETA) came later: a record without it
reads as 0.0::

    {"v": 1,
     "steps": {key: [command, workdir, inp, out, vol, env, amended, pool, creator,
                     digest, out_states, calls, duration]},
     "files": {path: [mode, mtime_ns, size, inode, digest]}}
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from .errors import UserError
from .messages import FileState

__all__ = ("STATE_DIR", "Record", "Store")

STATE_DIR = ".stepup"
_VERSION = 1


@dataclass
class Record:
    """A step as it was when it last succeeded."""

    command: str
    workdir: str
    inp: list[str]
    out: list[str]
    vol: list[str]
    env: list[str]
    """Declared when the step was defined."""
    amended: list[list[str]]
    """[inp, out, vol, env] added by `amend()` while the step ran."""
    pool: str | None
    creator: str | None
    digest: bytes
    out_states: dict[str, FileState] = field(default_factory=dict)
    calls: list[list[Any]] = field(default_factory=list)
    duration: float = 0.0
    """Seconds the step's command ran on its worker."""


def _state(raw: Any) -> FileState:
    if not (
        isinstance(raw, list)
        and len(raw) == 5
        and all(type(x) is int for x in raw[:4])
        and type(raw[4]) is bytes
    ):
        raise TypeError(f"not a file state: {raw!r}")
    return FileState(*raw)


def _state_fields(state: FileState) -> list:
    return [state.mode, state.mtime_ns, state.size, state.inode, state.digest]


def _record_fields(rec: Record) -> list:
    # Shallow on purpose: dataclasses.astuple deep-copies, 18x slower on large graphs.
    return [
        rec.command,
        rec.workdir,
        rec.inp,
        rec.out,
        rec.vol,
        rec.env,
        rec.amended,
        rec.pool,
        rec.creator,
        rec.digest,
        {path: _state_fields(state) for path, state in rec.out_states.items()},
        rec.calls,
        rec.duration,
    ]


def _strs(value: Any) -> bool:
    return isinstance(value, list) and all(type(x) is str for x in value)


def _record(raw: Any) -> Record:
    """Check the types the planner relies on: a corrupt file must fail here, not later."""
    if not isinstance(raw, list) or len(raw) not in (12, 13):
        raise TypeError("a step record is a list of 12 or 13 fields")
    command, workdir, inp, out, vol, env, amended, pool, creator, digest, states, calls = raw[:12]
    duration = raw[12] if len(raw) == 13 else 0.0
    if not (
        type(command) is str
        and type(workdir) is str
        and all(_strs(x) for x in (inp, out, vol, env))
        and isinstance(amended, list)
        and len(amended) == 4
        and all(_strs(x) for x in amended)
        and all(x is None or type(x) is str for x in (pool, creator))
        and type(digest) is bytes
        and isinstance(states, dict)
        and all(type(p) is str for p in states)
        and isinstance(calls, list)
        and all(isinstance(c, list) and len(c) == 2 and type(c[0]) is str for c in calls)
        and all(isinstance(c[1], dict) for c in calls)
        and type(duration) in (int, float)
    ):
        raise TypeError("malformed step record")
    states = {p: _state(s) for p, s in states.items()}
    return Record(
        command, workdir, inp, out, vol, env, amended, pool, creator, digest, states, calls,
        float(duration),
    )  # fmt: skip


class Store:
    """Load and atomically save the records of one build root."""

    def __init__(self, root: Path):
        self.dir = root / STATE_DIR
        self.path = self.dir / "graph.mpk"

    def load(self) -> tuple[dict[str, Record], dict[str, FileState]]:
        """Return (records, file states); empty when there is no usable file."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}, {}
        except OSError as exc:
            raise UserError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if obj.get("v") != _VERSION:
                return {}, {}
            records = {}
            for key, raw in obj["steps"].items():
                if type(key) is not str:
                    raise TypeError(f"step key {key!r} is not a string")
                records[key] = _record(raw)
            files = {p: _state(s) for p, s in obj["files"].items()}
            if not all(type(p) is str for p in files):
                raise TypeError("a file path is not a string")
        except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
            # An unreadable file only costs a full rebuild; say so rather than fail.
            print(f"warning: ignoring unreadable {self.path}; every step will run")
            return {}, {}
        return records, files

    def save(self, records: dict[str, Record], files: dict[str, FileState]) -> None:
        self.dir.mkdir(exist_ok=True)
        obj = {
            "v": _VERSION,
            "steps": {key: _record_fields(rec) for key, rec in records.items()},
            "files": {path: _state_fields(state) for path, state in files.items()},
        }
        data = msgpack.packb(obj)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        # The rename itself must reach the disk, or a power loss could bring back the old file.
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        for stale in self.dir.glob(f"{self.path.name}.*.tmp"):
            # Left by a build killed while saving; ours was renamed away above.
            stale.unlink(missing_ok=True)
