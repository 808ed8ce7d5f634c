"""The shared step cache's blobs: files named by the SHA-256 of their content, in a folder
that every worker mounts (`--cache DIR`, `STEPUP_DIST_CACHE`).

Layout: `DIR/blobs/ab/abcdef...` (the hex digest, split after two digits) and `DIR/tmp/`
for blobs being written, which are renamed into place once whole (a reader never sees half
a blob). Blobs are read-only (mode 0444); an output's own mode is kept in its entry.

Every read checks the content against the name. A blob that does not match is removed and
the caller told (`BlobCorrupt`); a missing one (evicted, the folder removed) is a
`BlobMissing`. Either way the step runs: the cache can make a build faster, never fail it.

An output is left (`materialize`) by, in this order of preference:

- a hard link, only where no later write can change the blob through it: the blob belongs
  to another user, who alone may chmod it, no one else may write it, and the output's own
  mode has no write bit (what the run left was read-only too);
- a reflink (`FICLONE`: btrfs, XFS, ...), a copy that shares blocks until either is written;
- a copy.

The content is hashed as it is left, and the file is renamed into place only when it
matches. No Redis here: the index of entries is on the server (`broker/cache_index.py`).
"""

import contextlib
import fcntl
import hashlib
import os
import stat
import uuid
from collections.abc import Iterator
from typing import Any

import xxhash

from .messages import FileState

__all__ = ("BlobCorrupt", "BlobMissing", "BlobStore", "CacheMiss")

_CHUNK = 1 << 22
_FICLONE = 0x40049409
"""Linux's ioctl that makes a reflink (include/uapi/linux/fs.h)."""


class CacheMiss(Exception):
    """A hit that cannot be left: the step runs instead."""


class BlobMissing(CacheMiss):
    """The blob is not in the folder (evicted, or the folder is gone)."""


class BlobCorrupt(CacheMiss):
    """The blob's content does not match its name; it has been removed."""


class BlobStore:
    """A cache folder. Owns the files under it; stateless otherwise (many processes share it)."""

    def __init__(self, root: str):
        self.root = root
        """The cache folder."""

    def path(self, ref: str) -> str:
        return os.path.join(self.root, "blobs", ref[:2], ref)

    def _tmp(self) -> str:
        folder = os.path.join(self.root, "tmp")
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, uuid.uuid4().hex)

    # Storing

    def put(self, path: str, state: FileState) -> list[Any]:
        """Store the output at `path`, whose state was `state` after its run; return it as an
        entry keeps it (`[kind, mode, size, ref]`). OSError when it cannot be stored, or
        when it changed since `state` was taken (ValueError)."""
        mode = state.mode
        if stat.S_ISDIR(mode):
            return ["dir", mode, 0, ""]
        if stat.S_ISLNK(mode):
            return ["link", mode, 0, os.readlink(path)]
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is not a file, folder or symbolic link")
        tmp = self._tmp()
        try:
            with open(path, "rb") as src, open(tmp, "xb") as dst:
                sha, xxh, size = _copy_hashing(src, dst)
            if xxh != state.digest or size != state.size:
                raise ValueError(f"{path} changed while it was stored")
            os.chmod(tmp, 0o444)
            final = self.path(sha)
            if os.path.exists(final):
                os.unlink(tmp)
                with contextlib.suppress(OSError):
                    os.utime(final)  # recently stored: gc keeps orphans younger than a grace
            else:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return ["file", mode, size, sha]

    # Reading

    def materialize(self, out: list[Any], dest: str) -> tuple[FileState, str]:
        """Leave one output (`[kind, mode, size, ref]`) at `dest`; return its state and how
        (`link`, `reflink`, `copy`, `dir`, `symlink`). Raises `CacheMiss`."""
        kind, mode, _, ref = out
        parent = os.path.dirname(dest.rstrip("/")) or "."
        os.makedirs(parent, exist_ok=True)
        if kind == "dir":
            os.makedirs(dest, exist_ok=True)
            st = os.lstat(dest)
            return FileState(st.st_mode, 0, 0, 0, b""), "dir"
        if kind == "link":
            tmp = os.path.join(parent, f".{uuid.uuid4().hex}.stepup-cache")
            os.symlink(ref, tmp)
            os.replace(tmp, dest)
            st = os.lstat(dest)
            digest = xxhash.xxh3_128(ref.encode("utf-8", "surrogateescape")).digest()
            return FileState(st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino, digest), "symlink"
        blob = self.path(ref)
        tmp = os.path.join(parent, f".{uuid.uuid4().hex}.stepup-cache")
        try:
            try:
                src = open(blob, "rb")  # noqa: SIM115 (closed below, after the link or copy)
            except FileNotFoundError as exc:
                raise BlobMissing(f"blob {ref[:12]} is not in the cache") from exc
            with src:
                how, xxh, sha = _leave(src, blob, tmp, mode)
            if sha != ref:
                self.remove(ref)
                raise BlobCorrupt(f"blob {ref[:12]} does not match its content: removed")
            if how != "link":
                os.chmod(tmp, stat.S_IMODE(mode))
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        st = os.lstat(dest)
        return FileState(st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino, xxh), how

    # Housekeeping

    def remove(self, ref: str) -> int:
        """Remove a blob; return the bytes freed (0 when it was not there)."""
        path = self.path(ref)
        try:
            size = os.lstat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return size

    def blobs(self) -> Iterator[tuple[str, int, float]]:
        """(name, size, mtime) of every blob."""
        top = os.path.join(self.root, "blobs")
        try:
            folders = sorted(os.listdir(top))
        except FileNotFoundError:
            return
        for folder in folders:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.scandir(os.path.join(top, folder)):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        yield entry.name, st.st_size, st.st_mtime


def _leave(src: Any, blob: str, tmp: str, mode: int) -> tuple[str, bytes, str]:
    """Put the blob open as `src` at `tmp`; return (how, xxh3, sha256 of what is there)."""
    if _link_safe(os.fstat(src.fileno()), mode):
        sha, xxh, _ = _hash(src)
        os.link(blob, tmp)
        return "link", xxh, sha
    with open(tmp, "xb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        except OSError:
            sha, xxh, _ = _copy_hashing(src, dst)
            return "copy", xxh, sha
    with open(tmp, "rb") as check:
        sha, xxh, _ = _hash(check)
    return "reflink", xxh, sha


def _link_safe(blob: os.stat_result, mode: int) -> bool:
    """A hard link to this blob cannot be written through (see the module docstring)."""
    euid = os.geteuid()
    return (
        euid not in (0, blob.st_uid)
        and not blob.st_mode & 0o222
        and not mode & 0o222
        and stat.S_ISREG(blob.st_mode)
    )


def _hash(src: Any) -> tuple[str, bytes, int]:
    sha = hashlib.sha256()
    xxh = xxhash.xxh3_128()
    size = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while n := src.readinto(buf):
        sha.update(view[:n])
        xxh.update(view[:n])
        size += n
    return sha.hexdigest(), xxh.digest(), size


def _copy_hashing(src: Any, dst: Any) -> tuple[str, bytes, int]:
    """Copy `src` to `dst` in one pass; return (sha256 hex, xxh3-128, size) of what passed."""
    sha = hashlib.sha256()
    xxh = xxhash.xxh3_128()
    size = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while n := src.readinto(buf):
        chunk = view[:n]
        sha.update(chunk)
        xxh.update(chunk)
        dst.write(chunk)
        size += n
    return sha.hexdigest(), xxh.digest(), size
