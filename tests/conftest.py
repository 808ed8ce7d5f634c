"""Shared fixtures: a private embedded server, project folders and a build runner.

Everything is real: the embedded valkey-server, `stepup-dist` and `stepup-worker` processes
and files in temporary folders. Nothing here touches a server someone else uses.
"""

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stepup_dist.broker.connection import connect
from stepup_dist.broker.server import EmbeddedServer

BIN = Path(sys.executable).parent


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def lines(self, status: str) -> list[str]:
        """Step texts of the output lines with this status (host suffix removed)."""
        result = []
        for line in self.stdout.splitlines():
            head, sep, text = line.partition(" │ ")
            if sep and head.strip() == status:
                result.append(text.rsplit("  [", 1)[0])
        return result


def run_cli(args: list[str], cwd: Path, timeout: float = 120, env: dict | None = None) -> Result:
    full_env = dict(os.environ)
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.pop("STEPUP_DIST_REDIS_URL", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Project:
    root: Path

    def write(self, relpath: str, text: str, executable: bool = False) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        if executable:
            path.chmod(0o755)
        return path

    def plan(self, text: str, relpath: str = "plan.py") -> Path:
        return self.write(relpath, "#!/usr/bin/env python\n" + textwrap.dedent(text), True)

    def build(self, *args: str, timeout: float = 120, env: dict | None = None) -> Result:
        return run_cli(["stepup-dist", "build", *args], self.root, timeout, env)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One private embedded server for the session; tests keep apart by key prefix."""
    srv = EmbeddedServer(tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix, so tests sharing the server never see each other's keys."""
    return f"test{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(server: EmbeddedServer):  # type: ignore[no-untyped-def]
    return connect(server.url)


# The count line of the differential test (tests/differential/): how many of StepUp's cases
# leave the same files. Here, not in a conftest of that folder: under xdist the controller,
# which prints the summary, loads only this one.
_STEPUP_CASES: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "stepup_case":
            _STEPUP_CASES[report.nodeid] = value


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _STEPUP_CASES:
        from tests.differential.stepup_cases import count_line

        values = list(_STEPUP_CASES.values())
        terminalreporter.write_line(
            count_line(values.count("same"), len(values), values.count("left out"))
        )
