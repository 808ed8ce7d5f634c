"""The messages that travel between planner, workers and plans, as plain frozen data.

This module knows nothing of their encoding; `wire.py` turns them into bytes and back.

- `RunJob`: planner -> worker, run one step.
- `CheckJob`: planner -> worker, hash files to decide which steps can be skipped.
- `Started`: worker -> planner, a `RunJob` began on this host.
- `StepDone`: worker -> planner, the outcome of a `RunJob`.
- `Checked`: worker -> planner, the file states asked for by a `CheckJob`.
- `Call`: plan (any step) -> planner, one API call such as `step()` or `pool()`.
- `Wake`: a pool slot a planner waits for was freed. Releasing workers push a plain marker
  to a shared list (`broker/keys.py`), which the broker hands to the planner as a `Wake`.
- `Reply`: planner -> plan, the answer to a `Call`.
- `Control`: a user (`stepup-dist drain`, `join`, `shutdown`) -> the planner of a running
  build.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = (
    "CACHE_MISS",
    "CONTROLS",
    "LEASE_LOST",
    "NOT_STARTED",
    "Call",
    "CheckJob",
    "Checked",
    "Control",
    "FileState",
    "Message",
    "Reply",
    "RunJob",
    "Started",
    "StepDone",
    "Wake",
)


@dataclass(frozen=True)
class FileState:
    """What is known of a file or directory on disk: enough to detect changes cheaply."""

    mode: int
    """`st_mode`, including the file type bits."""

    mtime_ns: int
    """Modification time in nanoseconds."""

    size: int
    """Size in bytes (0 for directories)."""

    inode: int
    """Inode number; with mtime and size, the shortcut that avoids rehashing."""

    digest: bytes
    """xxh3-128 of the contents (of the link target text for symlinks, empty for dirs)."""

    def as_list(self) -> list:
        """`[mode, mtime_ns, size, inode, digest]`: how the wire and the store write it."""
        return [self.mode, self.mtime_ns, self.size, self.inode, self.digest]

    @classmethod
    def from_list(cls, raw: Any) -> "FileState":
        """The inverse of `as_list`; TypeError for anything else (it comes from outside)."""
        if not (
            isinstance(raw, list)
            and len(raw) == 5
            and all(type(x) is int for x in raw[:4])
            and isinstance(raw[4], bytes)
        ):
            raise TypeError("expected [mode, mtime_ns, size, inode, digest]")
        return cls(*raw)

    def same_stat(self, other: "FileState") -> bool:
        """True when the cheap stat fields agree, so the old digest can be trusted."""
        return (self.mode, self.mtime_ns, self.size, self.inode) == (
            other.mode,
            other.mtime_ns,
            other.size,
            other.inode,
        )


@dataclass(frozen=True)
class Message:
    """Base of every message; `TYPE` is the tag written on the wire."""

    TYPE: ClassVar[str] = ""


@dataclass(frozen=True)
class RunJob(Message):
    """Run one step's command on a worker."""

    TYPE: ClassVar[str] = "run"
    build: str
    """Id of the build that asked; names the inbox the result goes to."""
    step: str
    """Key of the step in the planner's graph."""
    attempt: int
    """1 for the first run of this step in this build, higher when it is run again."""
    command: str
    """Shell command, run with `sh -c`."""
    root: str
    """Absolute path of the build's root directory on the shared filesystem."""
    workdir: str
    """Working directory relative to the root, ending with a slash."""
    env: dict[str, str | None]
    """Values of the step's declared environment variables (None: unset)."""
    out: list[str]
    """Declared outputs relative to the root; the worker hashes them afterwards."""
    pools: list[str] = field(default_factory=list)
    """Ids of the pools whose slots the planner took for this step."""
    sizes: list[int] = field(default_factory=list)
    """Size of each of those pools; 0 for a cluster pool (its size lives on the server)."""
    token: str = ""
    """Owner token of those slots; the worker renews the leases while the step runs."""
    inputs: dict[str, FileState] = field(default_factory=dict)
    """What the planner recorded of each input; the worker waits until it sees the same."""
    lease: float = 30.0
    """Lease length in seconds."""
    store: bool = False
    """Put the outputs in the worker's cache folder after a success (`StepDone.blobs`)."""
    restore: dict[str, list[Any]] = field(default_factory=dict)
    """A cache hit: leave these outputs (`cache_entry.Entry.out`) instead of running."""


@dataclass(frozen=True)
class CheckJob(Message):
    """Hash files, reusing known digests when (mode, mtime, size, inode) still match."""

    TYPE: ClassVar[str] = "check"
    build: str
    request: int
    """Number chosen by the planner to match the answer to the question."""
    root: str
    paths: list[str]
    known: list[FileState | None]
    """The last recorded state of each path, or None."""


@dataclass(frozen=True)
class Started(Message):
    """A worker took a `RunJob` and starts its command."""

    TYPE: ClassVar[str] = "started"
    build: str
    step: str
    attempt: int
    host: str
    worker: str


@dataclass(frozen=True)
class StepDone(Message):
    """Outcome of a `RunJob`."""

    TYPE: ClassVar[str] = "done"
    build: str
    step: str
    attempt: int
    returncode: int
    duration: float
    host: str
    worker: str
    stdout: str
    stderr: str
    out_states: dict[str, FileState]
    """States of the declared outputs that exist."""
    error: str = ""
    """Why the step failed besides its exit code (missing output, lost lease, ...)."""
    refused: bytes = b""
    """For a job the worker refused: the payload it got, so the planner can check it is its own."""
    blobs: dict[str, list[Any]] = field(default_factory=dict)
    """For a `RunJob` with `store`: each output as the cache keeps it (`[kind, mode, size,
    ref]`, see `cache_entry.py`); empty when the outputs could not all be stored."""


CACHE_MISS = "cache miss"
"""Start of `StepDone.error` of a cache hit its worker could not leave (blob gone or
corrupt, no cache folder): the planner runs the step instead."""
NOT_STARTED = "pool slot lease was lost before the step started"
"""`StepDone.error` of a step its worker did not start: the planner queues it again."""
LEASE_LOST = "pool slot lease was lost; the step was killed"
"""`StepDone.error` of a step its worker killed (or could not vouch for) because it lost the
step's leases: through no fault of the step, so the planner runs it again."""


@dataclass(frozen=True)
class Checked(Message):
    """Answer to a `CheckJob`: one state per path, None where the path does not exist."""

    TYPE: ClassVar[str] = "checked"
    build: str
    request: int
    host: str
    states: list[FileState | None]
    error: str = ""
    """Why the worker refused the check (then `states` is empty)."""
    refused: bytes = b""
    """As in `StepDone`: the payload of a check job that failed its signature check."""


@dataclass(frozen=True)
class Call(Message):
    """An API call made by a running step (usually plan.py), answered by the planner."""

    TYPE: ClassVar[str] = "call"
    build: str
    step: str
    method: str
    args: dict[str, Any]
    reply_to: str
    """Key of the list where the planner pushes the `Reply`."""


@dataclass(frozen=True)
class Reply(Message):
    """Answer to a `Call`."""

    TYPE: ClassVar[str] = "reply"
    ok: bool
    value: Any = None
    error: str = ""


@dataclass(frozen=True)
class Wake(Message):
    """A pool slot was released: retry the steps waiting for one."""

    TYPE: ClassVar[str] = "wake"


CONTROLS = ("drain", "join", "shutdown", "rebuild")
"""What a `Control` may ask (StepUp 4's commands of the same names)."""


@dataclass(frozen=True)
class Control(Message):
    """Steer a running build: `drain` (start nothing new, end when the running steps have
    ended), `join` (end when the build is done, as a one-shot build does anyway),
    `shutdown` (as drain; a second one cancels the running steps too), `rebuild` (a
    watching build runs what changes made outdated, as on the key `r`)."""

    TYPE: ClassVar[str] = "control"
    build: str
    action: str
    """One of `CONTROLS`; the planner ignores others with a warning."""
