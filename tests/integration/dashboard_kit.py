"""Helpers for the dashboard's tests: a real `stepup-dist dashboard` process, real builds and
workers, and /metrics read with the Prometheus client's own parser."""

import json
import os
import re
import select
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BIN, Project, run_cli

HOLD = "while [ ! -e {go} ]; do sleep 0.05; done; echo {tag}"
"""A step command that holds its slots until the file `go` exists."""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll `check` until it returns something true (the server keeps no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class DashboardProcess:
    """`stepup-dist dashboard --port 0`, and the address it prints."""

    def __init__(self, env: dict[str, str], *args: str):
        self.proc = subprocess.Popen(
            [str(BIN / "stepup-dist"), "dashboard", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        self.first_line = self.proc.stdout.readline() if ready else ""
        found = re.search(r"(http://\S+/) ", self.first_line)
        if found is None:
            self.stop()
            raise AssertionError(f"no address printed: {self.first_line!r} {self.stderr}")
        self.url = found.group(1)
        self.stderr = ""

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=30) as response:
            return response.read().decode()

    def status(self) -> dict:
        return json.loads(self.get("/api/status"))

    def metrics(self) -> tuple[dict[tuple[str, tuple], float], dict[str, str]]:
        """Every sample as {(name, sorted labels): value}, and every family's type."""
        samples, types = {}, {}
        for family in text_string_to_metric_families(self.get("/metrics")):
            types[family.name] = family.type
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples, types

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
        out, err = self.proc.communicate(timeout=30)
        self.stderr = err
        return out, err


def start_workers(url: str, prefix: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "stepup-worker"), "--redis", url, "--prefix", prefix, *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_build(project: Project, url: str, prefix: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w0", "--redis", url, "--prefix", prefix],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "STEPUP_DIST_REDIS_URL"},
    )


def status_json(url: str, prefix: str, cwd: Path) -> dict:
    result = run_cli(["stepup-dist", "status", "--json", "--redis", url, "--prefix", prefix], cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cluster_pool(status: dict, name: str) -> dict:
    (pool,) = [p for p in status["pools"] if p["id"] == f"cluster:{name}"]
    return pool


def pool_set(url: str, prefix: str, name: str, size: int, cwd: Path) -> None:
    args = ["stepup-dist", "pool", "set", name, str(size), "--redis", url, "--prefix", prefix]
    result = run_cli(args, cwd)
    assert result.returncode == 0, result.stderr
