"""What every program's command line shares: the TLS options, the entry point that turns
user errors into one line and a named exit code, and the configuration from flags.

`stepup-dist` (cli/) and `stepup-worker` (worker/) both use it; it is the only place that
prints errors and picks exit codes.
"""

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


def run_command(command: click.Command, prog: str) -> None:
    """Run a click command: user errors become one line and a named exit code."""
    try:
        command.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # One line, as for every user error; click would add the usage and a --help hint.
        print(f"{prog}: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


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
