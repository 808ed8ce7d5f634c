"""The documentation: the site builds without a warning, and Getting started works as written.

The site needs the docs extra (`pip install -e '.[docs]'`). Without it the build test is
skipped, unless STEPUP_DIST_TEST_DOCS is set (`.ci/run` sets it): then it fails.
"""

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN
from tests.integration.servers import clean_env

REPO = Path(__file__).resolve().parents[2]
GETTING_STARTED = REPO / "docs" / "getting-started.md"
RUN_MARK = "<!-- getting-started: run -->"


def test_site_builds_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("STEPUP_DIST_TEST_DOCS"):
            pytest.fail("mkdocs is missing: install the docs extra")
        pytest.skip("mkdocs is missing: pip install -e '.[docs]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        env=clean_env(),
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for text in (
        "stepup-dist build",
        "stepup-dist pool set",
        "stepup-dist dashboard",
        "stepup-worker",
        "--root",
    ):
        assert text in cli, f"{text!r} is missing from the command-line reference"
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "stepup_dist.api.step" in api


def runnable_blocks(markdown: str) -> list[str]:
    """The fenced blocks that follow a RUN_MARK line, in order."""
    pattern = re.escape(RUN_MARK) + r"\n```(?:bash|sh)\n(.*?)\n```"
    return re.findall(pattern, markdown, flags=re.DOTALL)


def session_members(sid: int) -> list[int]:
    """The processes still in session `sid` (such as background jobs the page left)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if os.getsid(int(entry.name)) == sid:
                pids.append(int(entry.name))
    return pids


def test_getting_started_runs_as_written(tmp_path: Path) -> None:
    """The page's marked commands, from a copy of the clone, with this venv on PATH."""
    blocks = runnable_blocks(GETTING_STARTED.read_text())
    assert len(blocks) >= 5, "the marked blocks of getting-started.md are gone"
    text = "\n".join(blocks)
    for needed in ("cluster.py start", "stepup-worker", "build -w0", "cluster.py stop"):
        assert needed in text
    for folder in ("deploy", "examples"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns(".*"))
    # The venv as the page's `. .venv/bin/activate` would give it: this test's venv.
    env = clean_env(VIRTUAL_ENV=str(BIN.parent))
    script = "set -euo pipefail\n" + text + "\n"
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=150)
    finally:
        # Whatever the page left running: its workers (in bash's session), then the server.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if (tmp_path / ".cluster" / "server.pid").exists():
            subprocess.run(
                [sys.executable, str(tmp_path / "deploy" / "cluster.py"), "stop", "--grace", "5"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
        for pid in session_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    summaries = [line for line in out.splitlines() if "SUMMARY │" in line]
    assert len(summaries) == 2, out
    assert all("4 succeeded, 0 skipped, 0 failed" in line for line in summaries), out
    assert re.search(r"^\S+\.\d+ .* idle ", out, flags=re.MULTILINE), out
    assert sorted(p.name for p in (tmp_path / ".cluster").iterdir()) == [
        "server.log",
        "worker-1.log",
        "worker-2.log",
    ]
