"""What every program's command line shares: the TLS options, the entry point that turns
user errors into one line and a named exit code, and the configuration from flags.

`stepup-dist` (cli/) and `stepup-worker` (worker/) both use it; it is the only place that
prints errors and picks exit codes.
"""

import difflib
import sys
from collections.abc import Callable
from typing import Any

import click

from .config import Config, load_config, split_password
from .errors import ExitCode, UserError

__all__ = ("flags_config", "redis_option", "run_command", "tls_options")


def redis_option(command: Callable) -> Callable:
    """--redis, as every command that reaches a server has it."""
    return click.option(
        "--redis", "redis_url", metavar="URL", help="The server's URL [STEPUP_DIST_REDIS_URL]."
    )(command)


def tls_options(command: Callable) -> Callable:
    """--tls-ca, --tls-cert and --tls-key, as every command that reaches a server has them."""
    for name, what, env in reversed(_TLS):
        command = click.option(name, metavar="FILE", help=f"{what} [{env}].")(command)
    return command


_TLS = (
    ("--tls-ca", "CA certificate", "STEPUP_DIST_TLS_CA"),
    ("--tls-cert", "Client certificate", "STEPUP_DIST_TLS_CERT"),
    ("--tls-key", "Client key", "STEPUP_DIST_TLS_KEY"),
)


def run_command(
    command: click.Command,
    prog: str,
    *,
    usage: int = ExitCode.USAGE,
    interrupted: int = ExitCode.INTERRUPTED,
) -> None:
    """Run a click command: user errors become one line and the program's named exit code
    (`usage` for them, `interrupted` for Ctrl-C before the command handles it)."""
    try:
        command.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # One line, as for every user error; click would add the usage and a --help hint.
        print(f"{prog}: error: {_message(exc)}", file=sys.stderr)
        sys.exit(usage)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(interrupted)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(usage)


def _message(exc: click.ClickException) -> str:
    """Click's message; an unknown option also names the nearest known one, even when
    click finds none close enough (`-x`: did you mean -k?)."""
    if not isinstance(exc, click.NoSuchOption) or exc.possibilities or exc.ctx is None:
        return exc.format_message()
    known = [
        name
        for param in exc.ctx.command.params
        if isinstance(param, click.Option) and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
    ]
    known.extend(exc.ctx.help_option_names)
    given = exc.option_name
    # A short option is compared with short ones, a long one with long ones.
    alike = [k for k in known if k.startswith("--") == given.startswith("--")] or known
    nearest = difflib.get_close_matches(given, alike, n=1, cutoff=0.0)
    if not nearest:
        return exc.format_message()
    return f"{exc.format_message()} The nearest known option is {nearest[0]}."


def flags_config(prog: str, redis_url: str | None, **flags: Any) -> Config:
    """The configuration from a command's flags; warn when --redis shows a password in ps."""
    config = load_config(redis_url=redis_url, **flags)
    if redis_url and split_password(redis_url)[1] is not None:
        print(
            f"{prog}: warning: a password in --redis shows in ps; "
            "set STEPUP_DIST_REDIS_URL instead",
            file=sys.stderr,
        )
    return config
