"""Where a watching build is, for `stepup-dist wait` and `rebuild` in other terminals.

A watching build (`build --watch`) keeps `.stepup/watch.json` up to date, replaced
atomically at each change:

- `phase`: `running` while a run goes on, `watching` between runs;
- `rebuilds`: how many rebuild requests (`stepup-dist rebuild`, the key `r`, `--auto`) it
  has taken up: a run started, or nothing to run was found;
- `runs`: runs started; `code`: the exit code of the last run that completed;
- `pid` and `host`: the build's process, so that a file left by a build that is gone is
  not taken for a live one.

A one-shot build removes the file when it starts. The file is only read by commands that
wait; nothing decides a build from it.
"""

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..planner.store import STATE_DIR

__all__ = ("PHASE_FILE", "Phase", "PhaseWriter", "clear", "read")

PHASE_FILE = "watch.json"


@dataclass(frozen=True)
class Phase:
    """A watching build's phase, as its file says."""

    build: str
    """The build's id."""
    phase: str
    """`running` or `watching`."""
    runs: int = 0
    """Runs started."""
    rebuilds: int = 0
    """Rebuild requests taken up."""
    code: int | None = None
    """The exit code of the last run that completed."""
    pid: int = 0
    """The process of `stepup-dist build`."""
    host: str = ""
    """Its host."""

    def alive(self) -> bool:
        """Whether the build's process lives (always assumed on another host)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _path(root: Path) -> Path:
    return root / STATE_DIR / PHASE_FILE


def read(root: Path) -> Phase | None:
    """The phase of the folder's watching build, or None (no watching build, or its file
    was left by a build that is gone)."""
    try:
        data = json.loads(_path(root).read_text())
        phase = Phase(**data)
    except (OSError, ValueError, TypeError):
        return None
    return phase if phase.alive() else None


def clear(root: Path) -> None:
    """A build that does not watch starts: no phase to tell."""
    with contextlib.suppress(FileNotFoundError):
        _path(root).unlink()


class PhaseWriter:
    """The watch loop's side: owns the file of its build and rewrites it at each change."""

    def __init__(self, root: Path, build: str):
        self._path = _path(root)
        self.phase = Phase(build, "running", pid=os.getpid(), host=socket.gethostname())
        """What the file says now."""

    def set(self, **changes: object) -> None:
        self.phase = replace(self.phase, **changes)  # type: ignore[arg-type]
        tmp = self._path.with_name(f".{PHASE_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self.phase)))
        os.replace(tmp, self._path)

    def close(self) -> None:
        clear(self._path.parent.parent)
