"""Every error stepup-dist raises on purpose, and the exit codes the CLI maps them to.

Two families share one base class:

- `UserError`: the user can fix it (bad plan, bad flag, unreachable server). The CLI prints
  its message as one line, without a traceback.
- Anything else that escapes is our bug and keeps its traceback.

`stepup-dist` exits with StepUp 4's bits (`ReturnCode`), so that scripts written for
`stepup build` read its outcome the same way; `stepup-worker` keeps its own codes
(`ExitCode`), which its systemd unit relies on.
"""

import enum

__all__ = (
    "BrokerUnavailable",
    "ConfigError",
    "ExitCode",
    "GrantMissing",
    "NoServer",
    "PlanError",
    "ReturnCode",
    "SignatureError",
    "StepupDistError",
    "UserError",
    "WireError",
)


class ReturnCode(enum.IntFlag):
    """Exit codes of `stepup-dist`: StepUp 4's bits, or-ed together (0: every step
    succeeded or was skipped). A failed step drains the build unless `-k`: 4 | 32 = 36."""

    OK = 0
    """Every step succeeded or was skipped."""

    INTERNAL = 1
    """The command could not do its work for a reason outside the plan: a bad flag, setting
    or environment variable, no `plan.py`, a server that cannot be reached or refuses the
    login (or a bug of ours, with its traceback)."""

    INTERRUPTED = 2
    """Stopped by Ctrl-C or SIGTERM (or-ed with what the build had reached: a drain, ...)."""

    FAILED = 4
    """A step failed, or a plan made a mistake (two steps declaring one output, ...)."""

    WARNING = 8
    """The build warned: a target that no step makes."""

    PENDING = 16
    """Every step that could run has, but some (not optional) could not: an input nothing
    made, a resource no worker offers. Summarized by root cause at the end."""

    DRAINED = 32
    """The build was drained: a failed step without `-k`, `stepup-dist drain` or
    `shutdown`, Ctrl-C. The steps left are not reported as pending."""


class ExitCode(enum.IntEnum):
    """Exit codes of `stepup-worker` (and of a plan's process that a call refused)."""

    OK = 0
    """Stopped by SIGTERM or Ctrl-C."""

    USAGE = 2
    """A bad flag or setting, or a server that cannot be reached or refuses the login: its
    systemd unit does not restart it (`RestartPreventExitStatus=2`)."""

    INTERRUPTED = 130
    """Stopped by Ctrl-C before it served."""


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
