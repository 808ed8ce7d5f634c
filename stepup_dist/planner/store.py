"""What a build remembers between runs: `.stepup/graph.mpk` and `.stepup/journal.mpk`.

`graph.mpk` is one msgpack map, written to a temporary file, fsynced and renamed over the
old one, so a kill at any moment leaves either the old or the new file, never half of one.
`duration` (seconds the step last ran, for the progress line's ETA) came later: a record
without it reads as 0.0::

    {"v": 1,
     "steps": {key: [command, workdir, inp, out, vol, env, amended, pool, creator,
                     digest, out_states, calls, duration]},
     "files": {path: [mode, mtime_ns, size, inode, digest]}}

A save costs the whole graph, so it happens only every few seconds. Between saves, every
report the planner accepts goes to the journal at once, so a planner killed at any moment
(`kill -9`) loses no finished step: the next `load` folds the journal on top of
`graph.mpk`. The journal is a sequence of frames, each a 4-byte big-endian payload length,
the 4-byte big-endian CRC-32 of the payload, and the payload, one msgpack value::

    header:  {"v": 1, "base": bytes}      the first frame; base names the graph.mpk it
                                          extends: the 8-byte xxh3-64 digest of its bytes,
                                          b"" when there was none
    entries: ["done", key, record, files] a success: record as in "steps" above, files
                                          {path: state} as in "files" (its outputs)
             ["forget", key]              a failure: the step's old record no longer counts
             ["sent", key, [build, attempt, token, record, env, inputs]]
                                          a step's job went to the workers: the record it
                                          will have but its digest and outputs, the values
                                          of its environment variables and the states of
                                          its inputs as sent (`Sent`)
             ["called", key]              the step sent makes API calls: its report alone
                                          does not say all it did

Each frame goes to the OS with one `os.write` on an `O_APPEND` descriptor, without fsync:
that survives the death of the planner, not of the machine (`bench/journal.py` measures
both). A save writes `graph.mpk`, then empties the journal. A journal whose base does not
name `graph.mpk` (a kill between the two, a removed `graph.mpk`) is ignored, and one whose
`v` differs with a warning; so is a torn last frame (a kill mid-write), silently, and the
next append cuts it off. A save carries the jobs still out (`sent` without a `done` or
`forget` after it) over into the new journal, so that the next build can adopt their
reports if this planner dies (`adopt.py`). Records are only claims: a step is skipped only
when a worker finds its inputs and outputs hashing as recorded.
"""

import os
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack
import xxhash

from ..errors import UserError
from ..messages import FileState

__all__ = ("STATE_DIR", "Record", "Sent", "Store")

STATE_DIR = ".stepup"
_VERSION = 1
_FRAME = struct.Struct(">II")
"""Payload length and CRC-32 of one journal frame."""


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


@dataclass(frozen=True)
class Sent:
    """A step's job as the planner sent it: what the step's record needs beyond its report."""

    build: str
    """The build that sent it (its inbox gets the report)."""
    attempt: int
    token: str
    """The owner token of its leases (its run lease shows whether it still runs)."""
    record: Record
    """The record it will have, without digest, outputs, calls and duration."""
    env: dict[str, str | None]
    """Values of its environment variables, as sent."""
    inputs: dict[str, FileState]
    """States of its inputs, as sent."""
    called: bool = False
    """It made API calls (they are not in its report)."""


def _sent_fields(sent: Sent) -> list:
    return [
        sent.build,
        sent.attempt,
        sent.token,
        _record_fields(sent.record),
        sent.env,
        {path: _state_fields(state) for path, state in sent.inputs.items()},
    ]


def _sent(raw: Any) -> Sent:
    if not (isinstance(raw, list) and len(raw) == 6):
        raise TypeError("a sent job is a list of 6 fields")
    build, attempt, token, record, env, inputs = raw
    if not (
        type(build) is str
        and type(attempt) is int
        and type(token) is str
        and isinstance(env, dict)
        and all(type(k) is str and (v is None or type(v) is str) for k, v in env.items())
        and isinstance(inputs, dict)
        and all(type(p) is str for p in inputs)
    ):
        raise TypeError("malformed sent job")
    states = {p: _state(x) for p, x in inputs.items()}
    return Sent(build, attempt, token, _record(record), env, states)


def _state(raw: Any) -> FileState:
    return FileState.from_list(raw)


def _state_fields(state: FileState) -> list:
    return state.as_list()


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


def _frame(obj: Any) -> bytes:
    payload = msgpack.packb(obj)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _read_frames(data: bytes) -> tuple[list[tuple[Any, int]], bool]:
    """Each whole frame at the start of `data` as (value, offset of its end), and whether
    anything but a torn last frame follows them (a damaged file rather than a kill)."""
    frames: list[tuple[Any, int]] = []
    at = 0
    while at + _FRAME.size <= len(data):
        size, crc = _FRAME.unpack_from(data, at)
        end = at + _FRAME.size + size
        if end > len(data):
            break
        payload = data[at + _FRAME.size : end]
        if zlib.crc32(payload) != crc:
            return frames, True
        try:
            frames.append((msgpack.unpackb(payload, raw=False, strict_map_key=False), end))
        except (ValueError, msgpack.UnpackException):
            return frames, True
        at = end
    return frames, False


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _name(data: bytes | None) -> bytes:
    """What a journal calls the graph.mpk holding `data` (None: no file)."""
    # xxh3: a few MB of graph in under a millisecond, at every load and save.
    return b"" if data is None else xxhash.xxh3_64_digest(data)


def _apply(
    entry: Any, records: dict[str, Record], files: dict[str, FileState], sent: dict[str, Sent]
) -> None:
    """Fold one journal entry into what graph.mpk held, and the jobs still out; TypeError
    if it is none."""
    if not (isinstance(entry, list) and len(entry) >= 2 and type(entry[1]) is str):
        raise TypeError(f"not a journal entry: {entry!r}")
    key = entry[1]
    if entry[0] == "done" and len(entry) == 4 and isinstance(entry[3], dict):
        record = _record(entry[2])
        states = {p: _state(s) for p, s in entry[3].items()}
        if not all(type(p) is str for p in states):
            raise TypeError("a file path is not a string")
        records[key] = record
        files.update(states)
        sent.pop(key, None)
    elif entry[0] == "forget" and len(entry) == 2:
        records.pop(key, None)
        sent.pop(key, None)
    elif entry[0] == "sent" and len(entry) == 3:
        sent[key] = _sent(entry[2])
    elif entry[0] == "called" and len(entry) == 2:
        if key in sent:
            sent[key] = replace(sent[key], called=True)
    else:
        raise TypeError(f"not a journal entry: {entry!r}")


class Store:
    """Load and atomically save the records of one build root, and journal each report
    between saves. The journal is this class's alone: the planner tells it what happened
    (`done`, `forget`) and never touches the file. The journal extends what `load` read, so
    load before the first report (a journal written without one is ignored later)."""

    def __init__(self, root: Path, *, sync: bool = False):
        self.sync = sync
        """fsync the journal after each entry, so that it survives a crash of the machine
        too, at a cost per step that `bench/journal.py` measures. Off for the planner: the
        journal guards against the planner's death, which loses nothing the OS was given;
        against a crash of the machine, the fsynced save every few seconds still bounds
        what is lost to those seconds."""
        self.dir = root / STATE_DIR
        self.path = self.dir / "graph.mpk"
        self.journal_path = self.dir / "journal.mpk"
        self._base = b""
        """Name of the graph.mpk loaded or saved last, for the journal's header."""
        self._keep = 0
        """Bytes at the start of the journal file that extend that graph.mpk; 0: rewrite it."""
        self._fd: int | None = None
        self._broken = False
        """A journal write failed: warned once, the journal is off until the next save."""
        self.out: dict[str, Sent] = {}
        """Step key -> its job sent and not yet reported: by this planner, or, after `load`,
        by one that died (`adopt.py`)."""

    def load(self) -> tuple[dict[str, Record], dict[str, FileState]]:
        """Return (records, file states); empty when there is no usable file. Reports in
        the journal since the last save are folded in."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise UserError(f"cannot read {self.path}: {exc.strerror}") from exc
        self._base = _name(data)
        self._keep = 0
        self.out = {}
        records, files = self._parse(data) if data is not None else ({}, {})
        self._fold(records, files)
        return records, files

    def _parse(self, data: bytes) -> tuple[dict[str, Record], dict[str, FileState]]:
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

    def _fold(self, records: dict[str, Record], files: dict[str, FileState]) -> None:
        """Apply the journal's entries, if it extends the graph.mpk just read."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UserError(f"cannot read {self.journal_path}: {exc.strerror}") from exc
        frames, damaged = _read_frames(data)
        if not frames:
            return
        header, keep = frames[0]
        version = header.get("v") if isinstance(header, dict) else None
        if version != _VERSION:
            print(
                f"warning: ignoring {self.journal_path} (store version {version!r}, this "
                f"stepup-dist reads {_VERSION}); the steps it recorded will run again"
            )
            return
        if header.get("base") != self._base:
            return  # it extends another graph.mpk: a save holds it already, or it is gone
        for entry, end in frames[1:]:
            try:
                _apply(entry, records, files, self.out)
            except (TypeError, KeyError, IndexError, AttributeError):
                damaged = True
                break
            keep = end
        if damaged:
            print(f"warning: ignoring the damaged end of {self.journal_path}")
        self._keep = keep

    # The journal

    def done(self, key: str, record: Record, files: dict[str, FileState]) -> None:
        """A step succeeded: `record` replaces its old one, `files` are its outputs."""
        self.out.pop(key, None)
        entry = [
            "done",
            key,
            _record_fields(record),
            {path: _state_fields(state) for path, state in files.items()},
        ]
        self._append(_frame(entry))

    def forget(self, key: str) -> None:
        """A step failed: its old record, if any, no longer counts."""
        self.out.pop(key, None)
        self._append(_frame(["forget", key]))

    def sent(self, key: str, sent: Sent) -> None:
        """A step's job went to the workers (it replaces an earlier attempt's)."""
        self.out[key] = sent
        self._append(_frame(["sent", key, _sent_fields(sent)]))

    def called(self, key: str) -> None:
        """The step sent makes API calls; once a job is enough."""
        sent = self.out.get(key)
        if sent is not None and not sent.called:
            self.out[key] = replace(sent, called=True)
            self._append(_frame(["called", key]))

    def settle(self, keys: list[str]) -> None:
        """These jobs are out no more (adopted, or given up on): the next save drops them."""
        for key in keys:
            self.out.pop(key, None)

    def _append(self, frame: bytes) -> None:
        if self._broken:
            return
        try:
            if self._fd is None:
                self._fd = self._open()
            _write(self._fd, frame)
            if self.sync:
                os.fsync(self._fd)
        except OSError as exc:
            self._broken = True
            print(
                f"warning: cannot write {self.journal_path}: {exc.strerror}; "
                "finished steps are kept only at the next save"
            )

    def _open(self) -> int:
        self.dir.mkdir(exist_ok=True)
        if self._keep:
            fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
            # Cut off a torn frame: what follows it would never be read.
            os.ftruncate(fd, self._keep)
            return fd
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        header = _frame({"v": _VERSION, "base": self._base})
        _write(fd, header)
        self._keep = len(header)
        return fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def save(self, records: dict[str, Record], files: dict[str, FileState]) -> None:
        """Write every record and file state, then start an empty journal."""
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
        # From here on the journal extends the new file; until it is emptied, its old base
        # makes the next load ignore it.
        self._base = _name(data)
        self._keep = 0
        self._broken = False
        self.close()
        self.journal_path.unlink(missing_ok=True)
        # The jobs still out go on into the new journal: a planner that dies now still
        # leaves their reports for the next build to adopt.
        for key, sent in self.out.items():
            self._append(_frame(["sent", key, _sent_fields(sent)]))
            if sent.called:
                self._append(_frame(["called", key]))
