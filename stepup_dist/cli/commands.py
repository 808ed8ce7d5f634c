"""`stepup-dist`: the command line. The only place that prints errors and picks exit codes."""

import os
import sys
from pathlib import Path
from typing import Any

import click

from ..config import Config, load_config
from ..errors import UserError
from ..options import flags_config, redis_option, run_command, tls_options

__all__ = ("cli", "main")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stepup-dist")
def cli() -> None:
    """Run StepUp plans with every step executed by workers through Redis."""


@cli.command()
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Local workers to start (default: number of CPUs; 0: only workers started elsewhere).",
)
@redis_option
@click.option("--prefix", metavar="PREFIX", help="Key prefix [STEPUP_DIST_PREFIX].")
@click.option("--lease", metavar="SECONDS", help="Pool slot lease [STEPUP_DIST_LEASE].")
@tls_options
@click.option(
    "-C",
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The project folder, holding plan.py (default: the current one).",
)
@click.option(
    "--root",
    "old_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    hidden=True,
    help="Deprecated: -C/--directory. (--root names what a worker serves.)",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print only failures, errors and the summary (a terminal still shows the status line).",
)
@click.option(
    "--give-up",
    "give_up",
    metavar="SECONDS",
    help="End the build, its steps stuck, when no connected worker has served its folder for "
    "this long (default: wait, saying so) [STEPUP_DIST_GIVE_UP].",
)
@click.option(
    "--watch",
    is_flag=True,
    help="After the run, watch the files and run again what changes made outdated: press r "
    "(q stop, j stop when done, d drain, g write graph.txt, f from scratch, t try skipping "
    "everything; any other key lists them).",
)
@click.option(
    "--auto",
    is_flag=True,
    help="With --watch (implied): run what changes made outdated without a key, once the "
    "files are quiet.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.05),
    metavar="SECONDS",
    default=None,
    help="With --watch: stat the watched files every SECONDS instead of using inotify "
    "(chosen by itself on network filesystems).",
)
@click.option(
    "-n",
    "--no-watch",
    "no_watch",
    is_flag=True,
    help="Run once and exit (the default; StepUp's non-interactive -n).",
)
def build(
    *,
    watch: bool,
    auto: bool,
    poll: float | None,
    no_watch: bool,
    quiet: bool,
    give_up: str | None,
    workers: int | None,
    redis_url: str | None,
    prefix: str | None,
    lease: str | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    directory: Path | None,
    old_root: Path | None,
) -> None:
    """Run ./plan.py and every step it defines; skip steps whose hashes are unchanged."""
    from .build import WatchOptions, run_build

    watching = watch or auto
    if no_watch and watching:
        raise click.UsageError("-n (run once) and --watch/--auto exclude each other")
    if poll is not None and not watching:
        raise click.UsageError("--poll is for --watch")

    if old_root is not None:
        if directory is not None:
            raise click.UsageError("give -C/--directory alone (--root is its old name)")
        print("stepup-dist: warning: build --root is now -C/--directory", file=sys.stderr)
    root = directory or old_root or Path(".")

    config = flags_config(
        "stepup-dist",
        redis_url,
        prefix=prefix,
        lease=lease,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        give_up=give_up,
    )
    from .stepup_config import read_settings

    settings = read_settings(root.resolve())
    for warning in settings.warnings:
        print(f"stepup-dist: warning: {warning}", file=sys.stderr)
    count = workers if workers is not None else (settings.jobs or os.cpu_count() or 1)
    if count == 0:
        config.server("-w0, which starts no local workers,")
    options = WatchOptions(auto=auto, poll=poll) if watching else None
    sys.exit(run_build(config, root, count, quiet=quiet, watch=options, limits=settings.resources))


_REDIS = redis_option
_PREFIX = click.option("--prefix", metavar="PREFIX", help="Key prefix [STEPUP_DIST_PREFIX].")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_ALL = click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also show the run leases of builds (the `run:BUILD` pools every step holds).",
)
_EVERY_POOL = click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also show every other pool with holders or waiters: plan pools, host resources "
    "and the run leases of builds (SCAN: the admin role).",
)


def _server_config(redis_url: str | None, prefix: str | None, tls: dict[str, Any]) -> Config:
    return flags_config("stepup-dist", redis_url, prefix=prefix, **tls)


class _Size(click.ParamType):
    """An integer, negative ones included: `pool set lic -1` is a size to refuse in one
    line (admin.pool_set), not an unknown option."""

    name = "size"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            return int(value)
        except ValueError:
            self.fail(f"pool size {value!r} is not an integer", param, ctx)


@cli.group()
def pool() -> None:
    """Cluster pools: limits shared by every build and worker on a server (licenses)."""


@pool.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("size", type=_Size())
@_REDIS
@_PREFIX
@tls_options
def pool_set(
    name: str, size: int, redis_url: str | None, prefix: str | None, **tls: str | None
) -> None:
    """Create the cluster pool NAME with SIZE slots, or change its size (applies to the
    next acquire). NAME: letters, digits and _ . -; SIZE: an integer >= 1."""
    from .admin import pool_set as run

    click.echo(run(_server_config(redis_url, prefix, tls), name, size))


@pool.command("rm")
@click.argument("name")
@_REDIS
@_PREFIX
@tls_options
def pool_rm(name: str, redis_url: str | None, prefix: str | None, **tls: str | None) -> None:
    """Remove the cluster pool NAME."""
    from .admin import pool_rm as run

    click.echo(run(_server_config(redis_url, prefix, tls), name))


@pool.command("list")
@_REDIS
@_PREFIX
@tls_options
@_JSON
@_EVERY_POOL
def pool_list(
    redis_url: str | None, prefix: str | None, as_json: bool, show_all: bool, **tls: str | None
) -> None:
    """Show each cluster pool's size, slots held, waiters and holders (`--all`, `status`:
    every pool)."""
    from .admin import pool_list as run

    click.echo(run(_server_config(redis_url, prefix, tls), as_json, show_all=show_all))


_PROJECT = click.option(
    "-C",
    "--directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The project folder (default: the current one).",
)


@cli.command()
@_REDIS
@_PREFIX
@tls_options
@_JSON
@_ALL
@_PROJECT
def status(
    redis_url: str | None,
    prefix: str | None,
    as_json: bool,
    show_all: bool,
    directory: Path | None,
    **tls: str | None,
) -> None:
    """Show the server: every pool (SCAN: the admin role), the workers and the queue. With
    -C DIR, or with no server configured: the build of the folder, as `stepup status`."""
    config = _server_config(redis_url, prefix, tls)
    if directory is not None or config.redis_url is None:
        from .project import status as project_status

        click.echo(project_status(config, directory or Path("."), as_json))
        return
    from .admin import status as run

    click.echo(run(config, as_json, show_all=show_all))


def _control(action: str, directory: Path | None, config: Config) -> str:
    from .control import send

    root = directory or Path(".")
    found = send(config, root, action)
    return f"asked the build of {root.resolve()} (build {found.report.build}) to {action}"


@cli.command()
@_REDIS
@_PREFIX
@tls_options
@_PROJECT
def drain(
    redis_url: str | None, prefix: str | None, directory: Path | None, **tls: str | None
) -> None:
    """Start no new step in the folder's running build; it ends once its running steps
    have ended (`stepup drain`)."""
    click.echo(_control("drain", directory, _server_config(redis_url, prefix, tls)))


@cli.command()
@_REDIS
@_PREFIX
@tls_options
@_PROJECT
def shutdown(
    redis_url: str | None, prefix: str | None, directory: Path | None, **tls: str | None
) -> None:
    """As drain; a second shutdown also cancels the running steps (`stepup shutdown`)."""
    click.echo(_control("shutdown", directory, _server_config(redis_url, prefix, tls)))


@cli.command()
@_REDIS
@_PREFIX
@tls_options
@_PROJECT
def join(
    redis_url: str | None, prefix: str | None, directory: Path | None, **tls: str | None
) -> None:
    """Wait until the folder's running build is done and has ended (`stepup join`)."""
    from ..planner.store import STATE_DIR
    from .control import build_running, wait_for_end

    config = _server_config(redis_url, prefix, tls)
    root = directory or Path(".")
    try:
        click.echo(_control("join", directory, config))
    except UserError:
        # Right after `drain`, the build may be ending: it holds the folder's lock after its
        # planner stopped reporting, or it has just let go. Either way, join has its end.
        folder = root.resolve()
        if build_running(folder):
            click.echo(f"the build of {folder} is ending; waiting for it")
        elif (folder / STATE_DIR / "lock").exists():
            click.echo(f"no build is running in {folder}: its last build has ended")
            return
        else:
            raise
    wait_for_end(root)
    click.echo("the build has ended")


@cli.command()
@click.argument("prefix", default="graph")
@_PROJECT
def graph(prefix: str, directory: Path | None) -> None:
    """Write the last build's graph: PREFIX.txt, PREFIX_dependency.dot and
    PREFIX_provenance.dot (`stepup graph`; read from .stepup/, no build need run)."""
    from .project import graph as run

    click.echo(run(directory or Path("."), prefix))


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("-c", "--commit", is_flag=True, help="Remove the files instead of showing them.")
@click.option(
    "-a", "--all", "every", is_flag=True, help="Outputs of every recorded step, not only stale."
)
@click.option(
    "-u", "--unsafe", is_flag=True, help="Also outputs changed since their step made them."
)
@_PROJECT
def clean(
    paths: tuple[Path, ...], commit: bool, every: bool, unsafe: bool, directory: Path | None
) -> None:
    """Show, or with --commit remove, outputs of steps the plan no longer defines, under
    PATHS (default: the whole folder) (`stepup clean`)."""
    from .project import clean as run

    click.echo(run(directory or Path("."), list(paths), commit=commit, every=every, unsafe=unsafe))


@cli.command()
@_REDIS
@_PREFIX
@tls_options
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The page has no login: keep it on localhost, or put it "
    "behind a proxy that asks for one.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: a free one, printed at start).",
)
def dashboard(
    *,
    redis_url: str | None,
    prefix: str | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    host: str,
    port: int,
) -> None:
    """Serve a live web page of the server's pools, builds and workers, and /metrics."""
    try:
        from ..dashboard.server import serve
    except ImportError as exc:
        raise UserError(
            f"the dashboard needs {exc.name}: pip install 'stepup-dist[dashboard]'"
        ) from exc
    config = flags_config(
        "stepup-dist", redis_url, prefix=prefix, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
    )
    serve(config, host, port)


@cli.command()
@click.option("--prefix", metavar="PREFIX", help="Key prefix [STEPUP_DIST_PREFIX].")
@click.option(
    "--role",
    type=click.Choice(["planner", "worker", "both", "admin"]),
    default="both",
    show_default=True,
    help="planner: stepup-dist build -w0; worker: stepup-worker; both: a build with local "
    "workers; admin: also stepup-dist status (may SCAN every key name).",
)
@click.option("--user", default="stepup", show_default=True, help="ACL user name.")
@click.option(
    "--shared-prefix",
    metavar="PREFIX",
    help="Prefix of the cluster pools shared with other prefixes (default: the prefix) "
    "[STEPUP_DIST_SHARED_PREFIX].",
)
def acl(prefix: str | None, role: str, user: str, shared_prefix: str | None) -> None:
    """Print an ACL SETUSER line for a user confined to the key prefix (add the password)."""
    from ..broker.acl import setuser_line

    config = load_config(prefix=prefix, shared_prefix=shared_prefix)
    click.echo(setuser_line(user, role, config.prefix, config.shared_prefix))


_DIRECTORY = click.option(
    "-C",
    "--directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The folder whose .stepup/workers.json records the workers (default: this one).",
)
_START_OPTIONS = ("partition", "time", "cpus", "per_node", "resources", "sbatch_options")


@cli.group(invoke_without_command=True)
@click.option("--local", type=click.IntRange(min=1), metavar="N", help="Start N workers here.")
@click.option("--slurm", type=click.IntRange(min=1), metavar="N", help="Submit N Slurm jobs.")
@click.option("--partition", metavar="P", help="Slurm partition (--slurm).")
@click.option("--time", metavar="T", help="Slurm time limit, e.g. 8:00:00 (--slurm).")
@click.option(
    "--cpus",
    type=click.IntRange(min=1),
    metavar="C",
    help="CPUs per Slurm job, one worker each (default 1; --slurm).",
)
@click.option(
    "--per-node", is_flag=True, help="One worker per Slurm job, using all its CPUs (--slurm)."
)
@click.option(
    "--resources",
    metavar="NAME:UNITS,...",
    help="What each worker's host offers to steps with resources= [STEPUP_DIST_RESOURCES].",
)
@click.option(
    "--sbatch-option",
    "sbatch_options",
    metavar="OPT",
    multiple=True,
    help="Pass OPT to sbatch, e.g. --sbatch-option=--gres=gpu:1; repeatable (--slurm).",
)
@_REDIS
@_PREFIX
@tls_options
@click.option(
    "--root",
    "roots",
    metavar="DIR",
    multiple=True,
    help="Serve only steps under DIR; repeatable (default: the -C folder) [STEPUP_DIST_ROOTS].",
)
@_DIRECTORY
@click.pass_context
def workers(ctx: click.Context, *, local: int | None, slurm: int | None, **opts: Any) -> None:
    """Start workers on this host (--local N) or on Slurm (--slurm N); list or stop them."""
    from . import fleet

    directory: Path = opts["directory"] or Path(".")
    ctx.obj = directory
    given = [f"--{n.replace('_', '-')}" for n in _START_OPTIONS if opts[n]]
    if ctx.invoked_subcommand is not None:
        if local or slurm or given:
            raise click.UsageError(f"start workers or {ctx.invoked_subcommand} them, not both")
        return
    if local is not None and slurm is not None:
        raise click.UsageError(
            "--local and --slurm start workers in one place each: run `stepup-dist workers "
            f"--local {local}` and `stepup-dist workers --slurm {slurm}` as two commands"
        )
    if local is None and slurm is None:
        raise click.UsageError("give --local N or --slurm N, or say `list` or `stop`")
    if local is not None and (extra := [g for g in given if g != "--resources"]):
        raise click.UsageError(f"only with --slurm: {', '.join(extra)}")
    config = flags_config(
        "stepup-dist",
        opts["redis_url"],
        prefix=opts["prefix"],
        tls_ca=opts["tls_ca"],
        tls_cert=opts["tls_cert"],
        tls_key=opts["tls_key"],
        roots=opts["roots"] or fleet.default_roots(directory),
    )
    if local is not None:
        click.echo(fleet.start_local(config, directory, local, opts["resources"]))
        return
    from .slurm import SubmitOptions

    options = SubmitOptions(
        cpus=opts["cpus"] or 1,
        per_node=opts["per_node"],
        partition=opts["partition"],
        time=opts["time"],
        resources=opts["resources"],
        extra=opts["sbatch_options"],
    )
    assert slurm is not None
    click.echo(fleet.submit(config, directory, slurm, options))


@workers.command("list")
@_JSON
@_DIRECTORY
@click.pass_obj
def workers_list(obj: Path, as_json: bool, directory: Path | None) -> None:
    """Show the workers started from this folder: PENDING, RUNNING, ... or ENDED (shown once)."""
    from .fleet import list_text

    click.echo(list_text(directory or obj, as_json))


@workers.command("stop")
@_DIRECTORY
@click.pass_obj
def workers_stop(obj: Path, directory: Path | None) -> None:
    """Stop the workers started from this folder, each after its running step."""
    from .fleet import stop

    click.echo(stop(directory or obj))


def main() -> None:
    run_command(cli, "stepup-dist")


if __name__ == "__main__":
    main()
