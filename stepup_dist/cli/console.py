"""StepUp-style console output: one line per event, captured output in ruled blocks.

With `quiet`, only problems are shown: failed steps (with their output), plan errors,
warnings, steps that could not run, and the summary.
"""

import sys
from typing import TextIO

from ..messages import StepDone
from ..planner.graph import Step

__all__ = ("QUIET_SHOWN", "ConsoleReporter")

_WIDTH = 80

QUIET_SHOWN = frozenset(
    {"FAIL", "ERROR", "WARNING", "STUCK", "PENDING", "DRAIN", "SUMMARY", "KEYBOARD"}
)
"""The statuses of the lines that `--quiet` still prints (KEYBOARD: what a key pressed in
watch mode does, and the help for an unknown one)."""


def _rule(title: str = "") -> str:
    if not title:
        return "─" * _WIDTH
    title = f" {title} "
    left = (_WIDTH - len(title)) // 2
    return "─" * left + title + "─" * (_WIDTH - left - len(title))


def _status_line(status: str, text: str, host: str) -> str:
    suffix = f"  [{host}]" if host else ""
    return f"{status:>10} │ {text}{suffix}\n"


class ConsoleReporter:
    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet

    def write(self, text: str) -> None:
        """All output passes here, whole lines at a time."""
        self.stream.write(text)
        self.stream.flush()

    def line(self, status: str, text: str, host: str = "") -> None:
        if self.quiet and status not in QUIET_SHOWN:
            return
        self.write(_status_line(status, text, host))

    @staticmethod
    def _block(title: str, text: str) -> str:
        if not text:
            return ""
        body = text if text.endswith("\n") else text + "\n"
        return f"{_rule(title)}\n{body}{_rule()}\n"

    def done(self, step: Step, result: StepDone, status: str) -> None:
        if self.quiet and status not in QUIET_SHOWN:
            return
        parts = [_status_line(status, step.key, result.host)]
        if status == "FAIL":
            info = []
            if result.returncode == -1 and result.error and not (result.stdout or result.stderr):
                pass  # the command never started; the error says why
            elif result.returncode != 0:
                info.append(f"Command exited with status {result.returncode}")
            if result.error:
                info.append(result.error[0].upper() + result.error[1:])
            parts.append(self._block("Step info", "\n".join(info)))
        parts.append(self._block("Standard output", result.stdout))
        parts.append(self._block("Standard error", result.stderr))
        # One write: a status line below is erased and drawn again once, not per block.
        self.write("".join(parts))

    def close(self) -> None:
        """Nothing to clean up on a plain stream."""
