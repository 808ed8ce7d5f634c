"""File states and the step digest: what decides whether a step can be skipped.

File hashing runs on workers (the planner never reads contents). xxh3-128 reads at memory
speed; an unchanged (mode, mtime, size, inode) reuses the previous digest without reading.
"""

import os
import stat
from collections.abc import Iterable, Mapping

import xxhash

from .messages import FileState

__all__ = ("NeedsReading", "file_state", "step_digest")

_CHUNK = 1 << 20


class NeedsReading(Exception):
    """`file_state(..., read=False)`: the state of this path needs its contents hashed."""


def file_state(path: str, known: FileState | None = None, *, read: bool = True) -> FileState | None:
    """Return the state of `path` (None if it does not exist), hashing only when needed.

    A path ending with a slash must be a directory. Symbolic links are not followed: their
    target text is hashed. With `read=False`, `NeedsReading` is raised instead of hashing
    (the planner's host looks at stats only: reading contents is a worker's job).
    """
    want_dir = path.endswith("/")
    try:
        st = os.lstat(path.rstrip("/") or "/")
    except (FileNotFoundError, NotADirectoryError):
        return None
    is_dir = stat.S_ISDIR(st.st_mode)
    if want_dir != is_dir:
        return None
    if is_dir:
        return FileState(st.st_mode, 0, 0, 0, b"")
    state = FileState(st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino, b"")
    if known is not None and known.same_stat(state):
        return known
    if not read:
        raise NeedsReading(path)
    hasher = xxhash.xxh3_128()
    if stat.S_ISLNK(st.st_mode):
        hasher.update(os.readlink(path).encode("utf-8", "surrogateescape"))
    else:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                hasher.update(chunk)
    return FileState(st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino, hasher.digest())


def _feed_files(hasher: "xxhash.xxh3_128", states: Iterable[tuple[str, FileState]]) -> None:
    for path, state in sorted(states):
        hasher.update(path.encode("utf-8", "surrogateescape") + b"\0")
        hasher.update(state.mode.to_bytes(8, "little"))
        hasher.update(state.size.to_bytes(8, "little"))
        hasher.update(state.digest)


def step_digest(
    command: str,
    workdir: str,
    env: Mapping[str, str | None],
    inp: Mapping[str, FileState],
    out: Mapping[str, FileState],
) -> bytes:
    """Digest of everything that decides a step's outcome.

    Covers the command, the workdir, the values of the declared environment variables and
    the path, mode, size and content hash of every input and output. The pool is left out
    on purpose: resizing a pool must not rerun anything.
    """
    hasher = xxhash.xxh3_128()
    for part in (command, workdir):
        hasher.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for name, value in sorted(env.items()):
        # os.environ carries undecodable bytes as lone surrogates: keep them, do not crash.
        raw = name.encode("utf-8", "surrogateescape")
        raw += b"!" if value is None else b"=" + value.encode("utf-8", "surrogateescape")
        hasher.update(raw)
        hasher.update(b"\0")
    hasher.update(b"\1inp\0")
    _feed_files(hasher, inp.items())
    hasher.update(b"\1out\0")
    _feed_files(hasher, out.items())
    return hasher.digest()
