"""A minimal Redis client for the plan side of API calls: RPUSH, BLPOP, and the login.

A `plan.py` makes its API calls from a fresh interpreter, and importing redis-py costs
about 0.1 s there (it imports asyncio), longer than the calls of a typical plan. This
client speaks RESP2 over a Unix socket or plain TCP, with AUTH and SELECT; `CallClient`
uses redis-py instead for anything else (TLS, URL options).
"""

import socket
from typing import Any
from urllib.parse import unquote, urlsplit

from ..config import redact
from ..errors import BrokerUnavailable

__all__ = ("RespClient", "simple_url")

_SCHEMES = ("unix", "redis", "valkey")


def simple_url(url: str) -> bool:
    """Whether this client can serve `url`: no TLS, no options beyond the database."""
    parts = urlsplit(url)
    return parts.scheme in _SCHEMES and not parts.query.replace("db=", "").strip("0123456789")


class RespClient:
    """One connection; each command waits for its reply."""

    def __init__(self, url: str, password: str | None = None, timeout: float = 5.0):
        parts = urlsplit(url)
        self._where = redact(url)
        db = parts.query.removeprefix("db=") if parts.query else ""
        try:
            if parts.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(unquote(parts.path))
            else:
                db = db or parts.path.strip("/")
                sock = socket.create_connection((parts.hostname, parts.port or 6379), timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise BrokerUnavailable(f"cannot reach Redis at {self._where}: {exc}") from exc
        sock.settimeout(None)
        self._sock = sock
        self._buffer = b""
        user = unquote(parts.username) if parts.username else None
        secret = password if password is not None else parts.password
        if secret is not None:
            secret = unquote(secret)
            self.command("AUTH", *([user] if user else []), secret)
        if db and db != "0":
            self.command("SELECT", db)

    def command(self, *args: Any) -> Any:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        try:
            self._sock.sendall(b"".join(out))
            return self._reply()
        except OSError as exc:
            raise BrokerUnavailable(
                f"lost the connection to Redis at {self._where}: {exc}"
            ) from exc

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise OSError("the server closed the connection")
        self._buffer += chunk

    def _reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"-":
            text = rest.decode(errors="replace")
            if text.startswith(("NOPERM", "NOAUTH", "WRONGPASS")):
                reason = "lacks a grant" if text.startswith("NOPERM") else "refused the login"
                raise BrokerUnavailable(f"Redis at {self._where} {reason} ({text})")
            raise BrokerUnavailable(f"Redis at {self._where}: {text}")
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self._buffer) < size + 2:
                self._fill()
            data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
            return data
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise BrokerUnavailable(f"Redis at {self._where} sent an unknown reply {line[:20]!r}")

    def close(self) -> None:
        self._sock.close()
