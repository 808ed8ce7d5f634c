"""What the planner-decision tests share: a fake clock, file states, a reporter that keeps
its lines, and a project folder with a plan.py (the fixtures are in conftest.py)."""

import time
from pathlib import Path

import pytest
import xxhash

from stepup_dist.messages import FileState, StepDone
from stepup_dist.planner.graph import Step


class Clock:
    """time.monotonic and time.sleep for a planner that must not wait for real."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    return clock


def project_root(tmp_path: Path) -> Path:
    (tmp_path / "plan.py").write_text("#!/usr/bin/env python\n")
    return tmp_path


def state(text: str, inode: int = 1) -> FileState:
    data = text.encode()
    return FileState(0o100644, 1, len(data), inode, xxhash.xxh3_128_digest(data))


class Lines:
    """A reporter that keeps (status, text) of each line."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def line(self, status: str, text: str, host: str = "") -> None:
        self.seen.append((status, text))

    def done(self, step: Step, result: StepDone, status: str) -> None:
        self.seen.append((status, step.key))

    def of(self, status: str) -> list[str]:
        return [text for s, text in self.seen if s == status]
