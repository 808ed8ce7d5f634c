"""Signed envelopes: only holders of the shared secret can put work in front of a worker.

With a secret configured (`STEPUP_DIST_SECRET_FILE`), every payload made by `wire.encode`
travels on Redis inside one msgpack map::

    {"v": 1, "t": "signed",
     "f": {"build": str, "to": str, "exp": int, "id": str, "p": bytes, "mac": bytes}}

- `p`: the payload (`wire.encode`'s bytes).
- `build`: the build the payload belongs to; receivers check that the payload names it.
- `to`: where the payload may be delivered: `job` (the RQ queue), `inbox` (a planner's
  inbox) or, for a `Reply`, the key of the reply list. A payload signed for one place is
  refused in any other.
- `exp`: expiry in Unix seconds (the signer's clock); a later payload is refused.
- `id`: 32 random hex digits. Receivers remember the ids they accepted until `exp` (plus
  `CLOCK_SKEW`), so the same payload is refused a second time.
- `mac`: HMAC-SHA256 with the secret over `msgpack([DOMAIN, build, to, exp, id, p])`.

A keyring holds one or two secrets: the first signs, either verifies, so a secret can be
replaced without stopping work. Without a keyring nothing is verified: a plain payload is
taken as it is, and a signed one is unwrapped unchecked (a receiver without a secret trusts
every writer anyway). No Redis here: `broker/` does the remembering of ids.
"""

import hmac
import os
import re
import time
from dataclasses import dataclass, field

import msgpack

from .errors import SignatureError, WireError
from .wire import unpack

__all__ = (
    "CLOCK_SKEW",
    "DEFAULT_TTL",
    "DOMAIN",
    "INBOX",
    "JOB",
    "Keyring",
    "Opened",
    "seal",
    "unseal",
)

DOMAIN = "stepup-dist signed v1"
"""Mixed into every MAC, so these signatures mean nothing to any other protocol."""
DEFAULT_TTL = 86400.0
"""Seconds a signed payload stays valid unless `STEPUP_DIST_SIGNATURE_TTL` says otherwise."""
CLOCK_SKEW = 300
"""Seconds an accepted id is remembered past its expiry, for hosts whose clocks differ."""
JOB = "job"
INBOX = "inbox"

_ID_RE = re.compile(r"[0-9a-f]{32}")
_FIELDS = {"build", "to", "exp", "id", "p", "mac"}


@dataclass(frozen=True)
class Keyring:
    """The shared secrets: the first signs, any verifies."""

    secrets: tuple[bytes, ...] = field(repr=False)
    """One or two secrets (the second while a new one is rolled out)."""

    ttl: float = DEFAULT_TTL
    """Seconds from signing to expiry."""

    def __post_init__(self) -> None:
        if not 1 <= len(self.secrets) <= 2 or not all(self.secrets):
            raise ValueError("a keyring holds one or two non-empty secrets")


@dataclass(frozen=True)
class Opened:
    """A payload taken out of its envelope (or a plain payload when nothing is verified)."""

    payload: bytes
    verified: bool
    """True when a secret checked the MAC, expiry and address."""
    sealed: bool = True
    """False for a plain payload (accepted only without a keyring)."""
    build: str = ""
    id: str = ""
    exp: int = 0


def _mac(secret: bytes, signed: tuple[str, str, int, str, bytes]) -> bytes:
    """HMAC-SHA256 of (build, to, exp, id, payload), behind the domain string."""
    # Strings from the wire may hold surrogates (see wire.py); they must fail the MAC, not crash.
    message = msgpack.packb([DOMAIN, *signed], unicode_errors="surrogateescape")
    # The one-shot form: OpenSSL's HMAC in one call, without Python's HMAC object.
    return hmac.digest(secret, message, "sha256")


def seal(
    keyring: Keyring | None, payload: bytes, *, build: str, to: str, now: float | None = None
) -> bytes:
    """Wrap `payload` in a signed envelope; without a keyring, return it unchanged."""
    if keyring is None:
        return payload
    exp = int((time.time() if now is None else now) + keyring.ttl)
    ident = os.urandom(16).hex()
    mac = _mac(keyring.secrets[0], (build, to, exp, ident, payload))
    body = {"build": build, "to": to, "exp": exp, "id": ident, "p": payload, "mac": mac}
    return msgpack.packb({"v": 1, "t": "signed", "f": body})


def _envelope(data: bytes) -> dict | None:
    """The envelope's fields, or None when `data` is a plain payload."""
    obj = unpack(data)
    if not (isinstance(obj, dict) and obj.get("t") == "signed"):
        return None
    body = obj.get("f")
    if (
        set(obj) != {"v", "t", "f"}
        or type(obj["v"]) is not int
        or obj["v"] != 1
        or not isinstance(body, dict)
        or set(body) != _FIELDS
        or not isinstance(body["build"], str)
        or not isinstance(body["to"], str)
        or type(body["exp"]) is not int
        or not (isinstance(body["id"], str) and _ID_RE.fullmatch(body["id"]))
        or not isinstance(body["p"], bytes)
        or not isinstance(body["mac"], bytes)
    ):
        raise WireError("malformed signed envelope", bytes(data))
    return body


def unseal(
    keyring: Keyring | None,
    data: bytes,
    *,
    to: str,
    now: float | None = None,
    check_expiry: bool = True,
) -> Opened:
    """Take the payload out of `data`, checking it when there is a keyring.

    Raises `SignatureError` (its `inner` is the untrusted payload) for a payload that is
    unsigned, mis-signed, expired or addressed elsewhere, and `WireError` for bytes that are
    not msgpack or a broken envelope. Replays are the caller's to refuse, by `Opened.id`.
    """
    body = _envelope(data)
    if keyring is None:
        if body is None:
            return Opened(bytes(data), verified=False, sealed=False)
        return Opened(body["p"], verified=False)
    if body is None:
        raise SignatureError("not signed", bytes(data))
    inner = body["p"]
    signed = (body["build"], body["to"], body["exp"], body["id"], inner)
    expected = [_mac(secret, signed) for secret in keyring.secrets]
    if not any(hmac.compare_digest(body["mac"], mac) for mac in expected):
        raise SignatureError("bad signature (not made with this secret)", inner)
    if body["to"] != to:
        raise SignatureError(f"signed for {body['to']!r}, not for {to!r}", inner)
    current = time.time() if now is None else now
    if check_expiry and body["exp"] < current:
        ago = int(current - body["exp"])
        raise SignatureError(f"signature expired {ago} s ago", inner)
    return Opened(inner, verified=True, build=body["build"], id=body["id"], exp=body["exp"])
