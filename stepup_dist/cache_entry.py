"""The shared step cache's vocabulary: the action digest, an entry, and who may be trusted.

**The action digest** (`action_digest`) is what decides a skip (`hashing.step_digest`),
made independent of where the project lies: the command, the working folder relative to the
project root, the values of the declared environment variables, the mode and content hash of
each declared input by its root-relative path, and the names of the declared outputs.
SHA-256 over a msgpack list behind `ACTION_DOMAIN`; as hex, it names the entry.

**An entry** says what one successful run left: each output as `[kind, mode, size, ref]`
(kind `file`: `ref` is the SHA-256 hex of its content, the name of its blob; `dir`: `ref`
is empty; `link`: `ref` is the link's target), the inputs the run amended with their
xxh3-128 digests and the values of the variables it amended (an entry counts only where
they are the same now), who made it, when, and how long the run took. Entries are stored
under the field `ACTION:KEYID` of the index (`broker/cache_index.py`), so that one maker's
entry never displaces another's. One field holds up to `VARIANTS` entries, newest first,
that differ in what their runs amended::

    {"v": 1, "e": [[<body: msgpack map>, <mac>], ...]}

`mac` is HMAC-SHA256 with the maker's cache key over
`msgpack([ENTRY_DOMAIN, action, key id, body])` (empty for an unsigned entry).

**Trust**: a `CacheTrust` holds the keys whose entries a build uses. A build with a shared
secret (`STEPUP_DIST_SECRET_FILE`) signs with a cache key derived from that secret
(HMAC-SHA256 of the secret and `KEY_DOMAIN`: it never reveals the secret, so it can be given
away), and uses the entries of its own keys and of the cache keys listed in the files of
`STEPUP_DIST_CACHE_TRUST`. A build without a secret signs nothing: it uses only unsigned
entries of its own user name, and a build with a secret never uses an unsigned entry.
No Redis here; msgpack only as the entry's encoding, as `wire.py` and `signing.py` do.
"""

import getpass
import hashlib
import hmac
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .errors import ConfigError, WireError
from .messages import FileState
from .wire import unpack

__all__ = (
    "ACTION_DOMAIN",
    "KEY_DOMAIN",
    "NO_CACHE_VAR",
    "CacheTrust",
    "Entry",
    "action_digest",
    "blobs_of",
    "cache_key",
    "maker_name",
    "read_trusted_keys",
)

ACTION_DOMAIN = "stepup-dist action v1"
KEY_DOMAIN = b"stepup-dist cache key v1"
ENTRY_DOMAIN = "stepup-dist cache entry v1"
CLAIM_DOMAIN = "stepup-dist cache claim v1"
NO_CACHE_VAR = "STEPUP_DIST_NO_CACHE"
"""A step that declares this environment variable (`env=["STEPUP_DIST_NO_CACHE"]`) is
never cached: StepUp's API unchanged, under StepUp it is one more variable it depends on."""

KINDS = ("file", "dir", "link")
VARIANTS = 4
"""Entries one maker keeps for one action: runs whose amended inputs differed."""


def action_digest(
    command: str,
    workdir: str,
    env: Mapping[str, str | None],
    inp: Mapping[str, FileState],
    out: Sequence[str],
) -> str:
    """SHA-256 hex of everything that decides a step's outputs, wherever the project lies."""
    inputs = [[path, s.mode, s.size, s.digest] for path, s in sorted(inp.items())]
    data = [ACTION_DOMAIN, command, workdir, sorted(env.items()), inputs, sorted(out)]
    raw = msgpack.packb(data, unicode_errors="surrogateescape")
    return hashlib.sha256(raw).hexdigest()


def cache_key(secret: bytes) -> bytes:
    """The key that signs cache entries, derived from a shared secret (which it hides)."""
    return hmac.new(secret, KEY_DOMAIN, hashlib.sha256).digest()


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"id " + key).hexdigest()[:16]


def read_trusted_keys(paths: Sequence[str]) -> tuple[bytes, ...]:
    """Cache keys (hex, one a line) from files that `stepup-dist cache key` wrote."""
    keys: list[bytes] = []
    problems: list[str] = []
    for path in paths:
        try:
            with open(path, encoding="ascii") as fh:
                lines = [line.strip() for line in fh if line.strip()]
            keys.extend(bytes.fromhex(line) for line in lines)
        except (OSError, ValueError) as exc:
            problems.append(f"cannot read cache key file {path} (STEPUP_DIST_CACHE_TRUST): {exc}")
    if problems:
        raise ConfigError("; ".join(problems))
    return tuple(keys)


@dataclass(frozen=True)
class CacheTrust:
    """Whose entries a build uses, and the key its own entries are signed with."""

    own: tuple[bytes, ...] = field(default=(), repr=False)
    """Cache keys of this build's secrets (the first signs); empty: no secret."""
    trusted: tuple[bytes, ...] = field(default=(), repr=False)
    """Cache keys of other people or groups whose entries are used too."""
    user: str = field(default_factory=getpass.getuser)
    """Who runs the build; names unsigned entries."""

    @classmethod
    def of(cls, secrets: Sequence[bytes], trusted: Sequence[bytes] = ()) -> "CacheTrust":
        return cls(tuple(cache_key(s) for s in secrets), tuple(trusted))

    @property
    def signs(self) -> bool:
        return bool(self.own)

    @property
    def key_id(self) -> str:
        """The id under which this build stores its entries."""
        return _key_id(self.own[0]) if self.own else f"user.{self.user}"

    def key_ids(self) -> list[str]:
        """The ids of every maker whose entries this build may use, its own first."""
        if not self.own:
            return [self.key_id]
        return list(dict.fromkeys(_key_id(k) for k in (*self.own, *self.trusted)))

    def _key(self, key_id: str) -> bytes | None:
        for key in (*self.own, *self.trusted):
            if _key_id(key) == key_id:
                return key
        return None

    def seal(self, entry: "Entry", old: bytes | None = None) -> bytes:
        """The index value for `entry`, with the variants of `old` (this maker's value for
        the same action) whose amended inputs and variables differ, newest first."""
        kid = self.key_id
        body = entry.encode()
        mac = _mac(self.own[0], entry.action, kid, body) if self.own else b""
        kept = [
            [b, m]
            for b, m, e in self._variants(entry.action, kid, old)
            if (e.inp, e.env) != (entry.inp, entry.env)
        ]
        return msgpack.packb({"v": 1, "e": [[body, mac], *kept][:VARIANTS]})

    def open(self, action: str, key_id: str, data: bytes | None) -> list["Entry"]:
        """The entries in an index value that verify for `action` from a maker this build
        trusts, newest first; none for anything malformed (it comes from a shared server)."""
        return [e for _, _, e in self._variants(action, key_id, data)]

    def claim_value(self, action: str, build: str, exp_ms: int) -> str:
        """What says that `build` runs `action` until `exp_ms` (ms, Unix time), signed."""
        kid = self.key_id
        mac = _claim_mac(self.own[0], action, kid, build, exp_ms) if self.own else b""
        return f"{kid} {build} {exp_ms} {mac.hex()}"

    def claimed_by(self, action: str, value: str, now_ms: int) -> str | None:
        """The build a claim names, when a maker this build trusts signed it for `action`
        and it has not lapsed; None otherwise."""
        parts = value.split(" ")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        kid, build, exp, mac = parts[0], parts[1], int(parts[2]), parts[3]
        if exp < now_ms:
            return None
        if not self.own:
            return build if kid == self.key_id else None
        key = self._key(kid)
        try:
            given = bytes.fromhex(mac)
        except ValueError:
            return None
        if key is None or not hmac.compare_digest(given, _claim_mac(key, action, kid, build, exp)):
            return None
        return build

    def _variants(
        self, action: str, key_id: str, data: bytes | None
    ) -> list[tuple[bytes, bytes, "Entry"]]:
        if data is None:
            return []
        key = self._key(key_id)
        if (key is None) if self.own else (key_id != self.key_id):
            return []
        found = []
        for body, mac in _pairs(data):
            if key is not None and not hmac.compare_digest(mac, _mac(key, action, key_id, body)):
                continue
            entry = Entry.decode(body, action)
            if entry is not None:
                found.append((body, mac, entry))
        return found


def _claim_mac(key: bytes, action: str, key_id: str, build: str, exp_ms: int) -> bytes:
    message = msgpack.packb([CLAIM_DOMAIN, action, key_id, build, exp_ms])
    return hmac.new(key, message, hashlib.sha256).digest()


def _pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (body, mac) pairs of an index value; none when it is malformed."""
    try:
        value = unpack(data)
    except WireError:
        return []
    if not (isinstance(value, dict) and value.get("v") == 1 and isinstance(value.get("e"), list)):
        return []
    return [
        (pair[0], pair[1])
        for pair in value["e"]
        if isinstance(pair, list)
        and len(pair) == 2
        and isinstance(pair[0], bytes)
        and isinstance(pair[1], bytes)
    ]


def blobs_of(data: bytes) -> list[str]:
    """Every blob the variants of an index value name, read without checking who made
    them (for `cache gc`: a forged entry can only keep blobs a while longer)."""
    names = []
    for body, _ in _pairs(data):
        try:
            action = unpack(body).get("action")
        except (WireError, AttributeError):
            continue
        entry = Entry.decode(body, action) if isinstance(action, str) else None
        if entry is not None:
            names.extend(entry.blobs())
    return names


def _mac(key: bytes, action: str, key_id: str, body: bytes) -> bytes:
    message = msgpack.packb([ENTRY_DOMAIN, action, key_id, body])
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class Entry:
    """What one successful run of a step left, enough to leave it again without running."""

    action: str
    """The action digest (hex) the entry is stored under."""
    out: dict[str, list[Any]]
    """Output path -> `[kind, mode, size, ref]` (see the module docstring)."""
    inp: dict[str, bytes] = field(default_factory=dict)
    """Inputs the run amended -> their xxh3-128 digests then."""
    env: dict[str, str | None] = field(default_factory=dict)
    """Variables the run amended -> their values then."""
    maker: str = ""
    """`user@host` of the planner that stored it (shown, never trusted: the key is)."""
    made: float = 0.0
    """Unix time it was stored."""
    duration: float = 0.0
    """Seconds the run took: what a hit saves."""

    def encode(self) -> bytes:
        body = {
            "action": self.action,
            "out": self.out,
            "inp": self.inp,
            "env": self.env,
            "maker": self.maker,
            "made": self.made,
            "duration": self.duration,
        }
        return msgpack.packb(body, unicode_errors="surrogateescape")

    @classmethod
    def decode(cls, body: bytes, action: str) -> "Entry | None":
        try:
            raw = unpack(body)
        except WireError:
            return None
        try:
            entry = cls(
                raw["action"],
                dict(raw["out"]),
                dict(raw["inp"]),
                dict(raw["env"]),
                str(raw["maker"]),
                float(raw["made"]),
                float(raw["duration"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        ok = entry.action == action and all(
            isinstance(p, str)
            and isinstance(o, list)
            and len(o) == 4
            and o[0] in KINDS
            and type(o[1]) is int
            and type(o[2]) is int
            and isinstance(o[3], str)
            for p, o in entry.out.items()
        )
        ok = ok and all(isinstance(p, str) and isinstance(d, bytes) for p, d in entry.inp.items())
        return entry if ok else None

    def blobs(self) -> list[str]:
        """The names of the blobs its files need."""
        return [o[3] for o in self.out.values() if o[0] == "file"]


def maker_name() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"
