"""Helpers the integration tests share: workers, builds and logs of timed steps.

Every helper starts real processes (`stepup-worker`, `stepup-dist`) or reads real files.
"""

import os
import subprocess
from pathlib import Path

from tests.conftest import BIN, Project, run_cli

STAMP = "python3 -c 'import time; print(time.time())'"
HEAD = "from stepup.core.api import pool, step\n"


def start_worker(url: str, prefix: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "stepup-worker"), "--redis", url, "--prefix", prefix, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process still running, then wait (reading what it piped) or kill it."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def timed_steps(count: int, sleep: float, log: Path, tag: str, **kwargs: str) -> str:
    """Plan lines: steps that append 'tag start end' to a shared log."""
    extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return (
        f"for i in range({count}):\n"
        f'    step(f"s=$({STAMP}); sleep {sleep}; echo {tag}{{i}} $s $({STAMP}) >> {log}"{extra})\n'
    )


def intervals(log: Path) -> list[tuple[str, float, float]]:
    result = []
    for line in log.read_text().splitlines():
        tag, start, end = line.split()
        result.append((tag, float(start), float(end)))
    return result


def peak(spans: list[tuple[str, float, float]]) -> int:
    events = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    level = top = 0
    for _, delta in events:
        level += delta
        top = max(top, level)
    return top


def processes_running(text: str) -> list[int]:
    """Pids of processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry.name))
    return found


def pool_cli(*args: str, cwd: Path) -> str:
    result = run_cli(["stepup-dist", "pool", *args], cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def start_build(
    project: Project, url: str, prefix: str, env: dict | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w0", "--redis", url, "--prefix", prefix],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
