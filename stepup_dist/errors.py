"""Every error stepup-dist raises on purpose, and the exit codes the CLI maps them to.

Two families share one base class:

- `UserError`: the user can fix it (bad plan, bad flag, unreachable server). The CLI prints
  its message as one line, without a traceback.
- Anything else that escapes is our bug and keeps its traceback.
"""

import enum

__all__ = (
    "BrokerUnavailable",
    "ConfigError",
    "ExitCode",
    "GrantMissing",
    "NoServer",
    "PlanError",
    "SignatureError",
    "StepupDistError",
    "UserError",
    "WireError",
)


class ExitCode(enum.IntEnum):
    """Exit codes of `stepup-dist` and `stepup-worker`."""

    OK = 0
    """Every step succeeded or was skipped."""

    STEP_FAILED = 1
    """A step failed, or could not run because an input was never made."""

    USAGE = 2
    """A plan error, a bad flag or configuration, or an unreachable server."""

    INTERRUPTED = 130
    """Stopped by Ctrl-C."""


class StepupDistError(Exception):
    """Base class of all errors raised on purpose by stepup-dist."""


class UserError(StepupDistError):
    """A mistake the user can fix; printed as one line."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(UserError):
    """Bad command-line options or environment variables."""


class NoServer(ConfigError):
    """A command that must reach a server was given none."""

    def __init__(self, what: str):
        super().__init__(f"{what} needs a server: give --redis URL or set STEPUP_DIST_REDIS_URL")


class PlanError(UserError):
    """A plan asked for something inconsistent: a cycle, a duplicate output, ..."""


class BrokerUnavailable(UserError):
    """The Redis server cannot be reached or stopped answering."""


class GrantMissing(BrokerUnavailable):
    """The server refused a command to the Redis user (NOPERM), in a Lua script too: no
    retry or reconnection helps, the user needs another role."""


class WireError(StepupDistError):
    """A payload on Redis does not decode as one of our messages.

    The offending bytes are kept (truncated) so that the log shows what arrived.
    """

    def __init__(self, reason: str, payload: bytes | None = None):
        self.reason = reason
        self.payload = payload
        shown = "" if payload is None else f" (payload {payload[:64]!r}, {len(payload)} bytes)"
        super().__init__(f"malformed message: {reason}{shown}")


class SignatureError(WireError):
    """A payload that is unsigned, forged, expired, replayed or addressed elsewhere.

    `inner` holds the payload found inside (or the whole data when it was not signed); it is
    untrusted and may only be used to name where a refusal is reported.
    """

    def __init__(self, reason: str, inner: bytes | None = None, *, replayed: bool = False):
        StepupDistError.__init__(self, f"unverified message: {reason}")
        self.reason = reason
        self.payload = None
        self.inner = inner
        self.replayed = replayed
