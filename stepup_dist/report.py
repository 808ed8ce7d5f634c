"""StepUp-style console output: one line per event, captured output in ruled blocks."""

import sys
from typing import TextIO

from .graph import Step
from .messages import StepDone

__all__ = ("ConsoleReporter",)

_WIDTH = 80


def _rule(title: str = "") -> str:
    if not title:
        return "─" * _WIDTH
    title = f" {title} "
    left = (_WIDTH - len(title)) // 2
    return "─" * left + title + "─" * (_WIDTH - left - len(title))


class ConsoleReporter:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def line(self, status: str, text: str, host: str = "") -> None:
        suffix = f"  [{host}]" if host else ""
        self.stream.write(f"{status:>10} │ {text}{suffix}\n")
        self.stream.flush()

    def block(self, title: str, text: str) -> None:
        if not text:
            return
        body = text if text.endswith("\n") else text + "\n"
        self.stream.write(f"{_rule(title)}\n{body}{_rule()}\n")

    def done(self, step: Step, result: StepDone, status: str) -> None:
        self.line(status, step.key, result.host)
        if status == "FAIL":
            info = []
            if result.returncode != 0:
                info.append(f"Command exited with status {result.returncode}")
            if result.error:
                info.append(result.error[0].upper() + result.error[1:])
            self.block("Step info", "\n".join(info))
        self.block("Standard output", result.stdout)
        self.block("Standard error", result.stderr)
        self.stream.flush()
