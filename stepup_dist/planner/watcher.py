"""Seeing files change in watch mode: inotify where the filesystem supports it, polling
where it does not.

inotify (through libc's `inotify_*` calls, with ctypes: no dependency) reports changes
made on this host only: on NFS, Lustre, GPFS, CephFS, SMB or a FUSE mount, a file saved on
another host changes nothing here. So the filesystem of the project is read first
(`statfs`'s `f_type`), and on one of those the watcher polls instead: every `interval`
seconds it stats what the build watches (its files and the project's folders, whose
modification time changes when an entry is added or removed) and reports what differs.

A watcher reports paths that *may* have changed (root-relative, folders ending in `/`);
`watch.Changes` decides what changed. `fileno()` is a descriptor to wait on with `select`
(None when polling), `due()` how long until the next poll.
"""

import ctypes
import ctypes.util
import os
import struct
import time
from collections.abc import Iterable

__all__ = ("NETWORK_TYPES", "InotifyWatcher", "PollWatcher", "choose", "fs_type")

NETWORK_TYPES = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x00C36400: "ceph",
    0x5346414F: "afs",
    0x19830326: "beegfs",
    0x01021997: "9p",
    0x65735546: "fuse",
    0x013111A8: "ibrix",
    0x6B414653: "kafs",
}
"""statfs f_type of filesystems whose files other hosts change without inotify seeing it."""

LOCAL_TYPES = {
    0xEF53: "ext4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x794C7630: "overlayfs",
    0x2FC12FC1: "zfs",
    0xF2F52010: "f2fs",
}

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc  # noqa: PLW0603 (loaded once, on first use)
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def fs_type(path: str) -> tuple[int, str]:
    """(f_type, a name) of the filesystem holding `path`; (0, "unknown") if unreadable."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on Linux
    try:
        if _lib().statfs(os.fsencode(path), buf) != 0:
            return 0, "unknown"
    except (OSError, AttributeError):
        return 0, "unknown"
    magic = ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF
    name = NETWORK_TYPES.get(magic) or LOCAL_TYPES.get(magic) or f"0x{magic:x}"
    return magic, name


_IN_MODIFY = 0x2
_IN_ATTRIB = 0x4
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_ISDIR = 0x40000000
_IN_Q_OVERFLOW = 0x4000
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
)
_EVENT = struct.Struct("iIII")
_NONBLOCK = os.O_NONBLOCK
_CLOEXEC = 0o2000000


class InotifyWatcher:
    """One inotify watch per folder of the project: events name the files in it."""

    kind = "inotify"

    def __init__(self, root: str):
        self.root = root
        fd = _lib().inotify_init1(_NONBLOCK | _CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self._folders: dict[int, str] = {}
        self._watched: set[str] = set()
        self.overflowed = False

    def fileno(self) -> int | None:
        return self.fd

    def due(self) -> float | None:
        return None

    def watch(self, files: Iterable[str], folders: Iterable[str]) -> None:
        """Watch these folders (root-relative, ending in `/`) from now on."""
        for folder in folders:
            if folder not in self._watched:
                self._add(folder)

    def _add(self, folder: str) -> None:
        full = os.path.join(self.root, folder.rstrip("/") if folder != "./" else ".")
        wd = _lib().inotify_add_watch(self.fd, os.fsencode(full), _MASK)
        if wd >= 0:
            self._folders[wd] = folder
            self._watched.add(folder)

    def read(self) -> list[str] | None:
        """Paths named by the events waiting (folders with a slash); None after a queue
        overflow (then everything must be looked at)."""
        hints: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                wd, mask, _, size = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + size]
                offset += _EVENT.size + size
                if mask & _IN_Q_OVERFLOW:
                    self.overflowed = True
                    continue
                folder = self._folders.get(wd)
                if folder is None:
                    continue
                name = os.fsdecode(raw.rstrip(b"\0"))
                if mask & _IN_DELETE_SELF:
                    self._watched.discard(folder)
                    hints.append(folder)
                    continue
                base = "" if folder == "./" else folder
                path = base + name
                if name == ".stepup" and base == "":
                    continue
                hints.append(folder)
                if mask & _IN_ISDIR:
                    hints.append(path + "/")
                    if mask & (_IN_CREATE | _IN_MOVED_TO):
                        self._add(path + "/")
                else:
                    hints.append(path)
        if self.overflowed:
            self.overflowed = False
            return None
        return hints

    def close(self) -> None:
        os.close(self.fd)


class PollWatcher:
    """Stat what the build watches every `interval` seconds; report what differs."""

    kind = "polling"

    def __init__(self, root: str, interval: float):
        self.root = root
        self.interval = interval
        self._stats: dict[str, tuple | None] = {}
        self._next = time.monotonic() + interval

    def fileno(self) -> int | None:
        return None

    def due(self) -> float:
        """Seconds until the next poll."""
        return max(0.0, self._next - time.monotonic())

    def _stat(self, path: str) -> tuple | None:
        try:
            st = os.lstat(os.path.join(self.root, path.rstrip("/") or "."))
        except OSError:
            return None
        return (st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)

    def watch(self, files: Iterable[str], folders: Iterable[str]) -> None:
        """Watch these paths from now on, as they are now."""
        self._stats = {path: self._stat(path) for path in {*files, *folders}}

    def read(self) -> list[str] | None:
        if time.monotonic() < self._next:
            return []
        hints = []
        for path, before in self._stats.items():
            now = self._stat(path)
            if now != before:
                self._stats[path] = now
                hints.append(path)
        self._next = time.monotonic() + self.interval
        return hints

    def close(self) -> None:
        """Nothing to release."""


def choose(root: str, poll: float | None) -> tuple["InotifyWatcher | PollWatcher", str]:
    """The watcher for `root`, and the line that says which and why.

    `poll` (seconds) asks for polling; without it, polling is chosen on a network
    filesystem (every second) or where inotify is not available.
    """
    magic, name = fs_type(root)
    if poll is not None:
        return PollWatcher(root, poll), f"polling every {poll:g} s (--poll), on {name}"
    if magic in NETWORK_TYPES:
        return (
            PollWatcher(root, 1.0),
            f"polling every 1 s: {name} is a network filesystem, where inotify does not see "
            "changes made by other hosts (--poll SECONDS to set the interval)",
        )
    try:
        return InotifyWatcher(root), f"inotify, on {name}"
    except (OSError, AttributeError) as exc:
        return PollWatcher(root, 1.0), f"polling every 1 s: inotify is not available ({exc})"
