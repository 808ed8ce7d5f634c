"""Step logs: what each step's last run printed, where and when, kept under `.stepup/logs/`.

On a cluster a step ran on some node, maybe an hour ago; its output reached the planner in
the worker's report (`StepDone`) and scrolled by. The build keeps it, one JSON file a step
(its last run in this folder), named by the hash of the step's key:

- `step`, `status` (`SUCCESS`, `FAIL`, `PENDING`: stopped to wait for amended inputs),
  `returncode`, `error` (why it failed besides its exit code), `host`, `worker`;
- `started`, `ended` (Unix times; `started` as the planner saw the `START`), `duration`
  (as the worker measured it), `build`;
- `stdout`, `stderr`: at most `MAX_STREAM` characters each (the start and the end of a
  longer one, with a line saying how much was left out).

Beside them, as StepUp 4 keeps them, the build's output goes to `.stepup/fail.log` (`FAIL`
and `ERROR` lines, with the failed step's output), `.stepup/warning.log` (`WARNING`,
`STUCK`, `PENDING`, `DRAIN`, ...) and `.stepup/success.log` (every other line), emptied when
a build or a run of a watching build starts: scripts written for StepUp grep them.

At most `MAX_LOGS` steps keep a log, in at most `MAX_BYTES`; the oldest go first (when a
build starts). `stepup-dist log PATTERN` prints
them after the build, whichever worker ran the step. Only the planner writes these files.
"""

import contextlib
import fnmatch
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..planner.store import STATE_DIR
from .console import ConsoleReporter, _status_line

if TYPE_CHECKING:
    from ..messages import StepDone
    from ..planner.graph import Step

__all__ = (
    "CONSOLE_LOGS",
    "LOG_DIR",
    "MAX_BYTES",
    "MAX_LOGS",
    "MAX_STREAM",
    "LoggingReporter",
    "StepLogs",
    "show",
)

LOG_DIR = "logs"
MAX_STREAM = 65536
"""Characters kept of each of a step's stdout and stderr."""
MAX_LOGS = 5000
"""Steps whose logs are kept in a folder (the oldest are removed first)."""
MAX_BYTES = 64 * 1024 * 1024
"""Bytes of logs kept in a folder (the oldest are removed first)."""


CONSOLE_LOGS = {"fail": "fail.log", "warning": "warning.log", "success": "success.log"}
"""StepUp 4's logs of a build's output, in `.stepup/`."""
_FAIL = frozenset({"FAIL", "ERROR"})
_WARNING = frozenset({"WARNING", "STUCK", "PENDING", "DRAIN", "INTERRUPT", "LOST", "WAITING"})


def _console_log(status: str) -> str:
    if status in _FAIL:
        return CONSOLE_LOGS["fail"]
    return CONSOLE_LOGS["warning" if status in _WARNING else "success"]


def _clip(text: str) -> str:
    if len(text) <= MAX_STREAM:
        return text
    half = MAX_STREAM // 2
    left = len(text) - 2 * half
    return f"{text[:half]}\n[... {left} characters left out ...]\n{text[-half:]}"


class StepLogs:
    """The logs of one project folder (`.stepup/logs/`)."""

    def __init__(self, root: Path):
        self.folder = root / STATE_DIR / LOG_DIR
        self.state = root / STATE_DIR

    def new_run(self) -> None:
        """A build or a run of a watching build starts: empty StepUp's logs of the output."""
        for name in CONSOLE_LOGS.values():
            with contextlib.suppress(FileNotFoundError):
                (self.state / name).unlink()

    def console(self, status: str, text: str) -> None:
        """Add `text` (whole lines) to the StepUp log of `status`."""
        with contextlib.suppress(OSError), open(self.state / _console_log(status), "a") as fh:
            fh.write(text)

    def path(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def write(self, entry: dict[str, Any]) -> None:
        """Keep `entry` as the last run of its step (replaced atomically)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(entry["step"])
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, target)

    def prune(self) -> None:
        """Remove the oldest logs beyond `MAX_LOGS` files or `MAX_BYTES` in all."""
        try:
            files = [(p, p.stat()) for p in self.folder.iterdir() if p.suffix == ".json"]
        except FileNotFoundError:
            return
        files.sort(key=lambda item: item[1].st_mtime, reverse=True)
        total = 0
        for i, (path, st) in enumerate(files):
            total += st.st_size
            if i >= MAX_LOGS or total > MAX_BYTES:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def entries(self) -> list[dict[str, Any]]:
        """Every log kept, oldest first (a file that does not read is skipped)."""
        found = []
        try:
            files = sorted(self.folder.glob("*.json"))
        except FileNotFoundError:
            return []
        for path in files:
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(entry, dict) and isinstance(entry.get("step"), str):
                found.append(entry)
        return sorted(found, key=lambda e: e.get("ended") or 0)


class LoggingReporter:
    """The build's reporter, keeping a log of each step that ran (the planner calls it on
    its main thread only)."""

    def __init__(self, reporter: Any, logs: StepLogs, build: str):
        self._reporter = reporter
        self._logs = logs
        self._build = build
        self._started: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reporter, name)

    def line(self, status: str, text: str, host: str = "") -> None:
        if status == "START":
            self._started[text] = time.time()
        self._logs.console(status, _status_line(status, text, host))
        self._reporter.line(status, text, host)

    def new_run(self) -> None:
        self._logs.new_run()

    def close(self) -> None:
        self._reporter.close()

    def done(self, step: "Step", result: "StepDone", status: str) -> None:
        ended = time.time()
        started = self._started.pop(step.key, ended - result.duration)
        with contextlib.suppress(OSError):  # a log is no reason to stop a build
            self._logs.write(
                {
                    "step": step.key,
                    "status": status,
                    "returncode": result.returncode,
                    "error": result.error,
                    "host": result.host,
                    "worker": result.worker,
                    "started": started,
                    "ended": ended,
                    "duration": result.duration,
                    "build": self._build,
                    "stdout": _clip(result.stdout),
                    "stderr": _clip(result.stderr),
                }
            )
        shown = io.StringIO()
        ConsoleReporter(shown).done(step, result, status)
        self._logs.console(status, shown.getvalue())
        self._reporter.done(step, result, status)


def _when(stamp: object) -> str:
    if not isinstance(stamp, int | float):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def show(root: Path, pattern: str) -> str:
    """The logs of the steps whose key is `pattern` or matches it (fnmatch), as text."""
    root = root.resolve()
    entries = StepLogs(root).entries()
    chosen = [e for e in entries if e["step"] == pattern]
    if not chosen:
        chosen = [e for e in entries if fnmatch.fnmatchcase(e["step"], pattern)]
    if not chosen:
        chosen = [e for e in entries if pattern in e["step"]]
    if not chosen:
        raise UserError(
            f"no step log matches {pattern!r} in {root / STATE_DIR / LOG_DIR} "
            f"({len(entries)} steps logged)"
        )
    parts = []
    for e in chosen:
        code = e.get("returncode")
        error = f"; {e['error']}" if e.get("error") else ""
        lines = [
            f"step {e['step']}",
            f"  status: {e.get('status')}, exit status {code}{error}",
            f"  host: {e.get('host')} (worker {e.get('worker')})",
            f"  started {_when(e.get('started'))}, ended {_when(e.get('ended'))}, "
            f"took {float(e.get('duration') or 0):.2f} s (build {e.get('build')})",
        ]
        for stream in ("stdout", "stderr"):
            text = e.get(stream) or ""
            if text:
                lines.append(f"  {stream}:")
                lines.extend(f"    {line}" for line in str(text).rstrip("\n").splitlines())
            else:
                lines.append(f"  {stream}: (empty)")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
