"""`stepup-dist`: the command line. The only place that prints errors and picks exit codes."""

import os
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from ..config import Config, load_config
from ..errors import ReturnCode, UserError
from ..options import flags_config, redis_option, run_command, tls_options
from ..paths import norm

__all__ = ("cli", "main")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stepup-dist")
def cli() -> None:
    """Run StepUp plans with every step executed by workers through Redis."""


class _BuildCommand(click.Command):
    """`build`, whose `-w` serves StepUp 1.x and StepUp 4 alike: followed by a number
    (`-w4`, `-w 4`) it is 1.x's local workers (`--workers`); alone, or followed by an
    option or a target that is not a number (`sb -j 1 -w`, `-w -e`), it is StepUp 4's
    `--watch`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)
        rewritten = []
        for i, arg in enumerate(given):
            if arg == "--":
                rewritten.extend(given[i:])
                break
            watch = arg == "-w" and not (i + 1 < len(given) and given[i + 1].isdigit())
            rewritten.append("--watch" if watch else arg)
        return super().parse_args(ctx, rewritten)


MAX_JOBS = 10000
"""More local workers than any host runs: a typo, said in one line."""


class _Jobs(click.ParamType):
    """StepUp 4's `-j`: a whole number of jobs, or with a decimal point a share of the CPUs."""

    name = "jobs"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        text = str(value)
        try:
            number = Decimal(text)
        except InvalidOperation:
            self.fail(f"{text!r} is not a number of jobs", param, ctx)
        if not number.is_finite() or number <= 0 or number > MAX_JOBS:
            self.fail(f"{text!r}: give a number of jobs > 0 and <= {MAX_JOBS}", param, ctx)
        if "." in text:
            return max(1, int(number * (os.cpu_count() or 1)))
        if number != int(number):
            self.fail(f"{text!r} is not a whole number of jobs", param, ctx)
        return int(number)


_BUILD_HELP = """Run ./plan.py and every step it defines; skip steps whose hashes are unchanged.

\b
TARGETS: build only these outputs (a folder, ending with /: every output under it), the
steps they need and the plans that define them, as `stepup build TARGET`.

\b
StepUp 4's `-w` (watch) and StepUp 1.x's `-w N` (local workers) share the letter:
-w followed by a number (-w4, -w 4) starts that many local workers; -w alone, or before an
option or a target (sb -j 1 -w), watches. --workers N and --watch are unambiguous.

\b
Exit code: StepUp 4's bits, or-ed together (0: every step succeeded or was skipped):
  1 INTERNAL     a bad flag or setting, no plan.py, no server (one line on stderr)
  2 INTERRUPTED  Ctrl-C or SIGTERM
  4 FAILED       a step failed, or a plan error
  8 WARNING      a target that no step makes
 16 PENDING      steps that could not run (summarized by root cause)
 32 DRAINED      drained: a failed step without -k (4 + 32 = 36), drain, shutdown, Ctrl-C
"""


def _build_options(fn: Any) -> Any:
    """The options of `build` and of its StepUp 4 alias `boot`."""
    decorators: list[Callable[[Any], Any]] = [
        click.argument("targets", nargs=-1, metavar="[TARGETS]..."),
        click.option(
            "-w",
            "--workers",
            type=click.IntRange(min=0),
            default=None,
            metavar="N",
            help="Local workers to start (StepUp 1.x; default: -j, `jobs` in stepup.toml, or "
            "the number of CPUs; 0: only workers started elsewhere). -w alone: --watch.",
        ),
        click.option(
            "-j",
            "--jobs",
            type=_Jobs(),
            default=None,
            help="StepUp 4's jobs: as many local workers (with a decimal point, a share of "
            "the CPUs: -j 0.5).",
        ),
        redis_option,
        click.option("--prefix", metavar="PREFIX", help="Key prefix [STEPUP_DIST_PREFIX]."),
        click.option("--lease", metavar="SECONDS", help="Pool slot lease [STEPUP_DIST_LEASE]."),
        tls_options,
        click.option(
            "--cache",
            "cache_dir",
            metavar="DIR",
            help="Use the shared step cache in DIR, which every worker mounts [STEPUP_DIST_CACHE].",
        ),
        click.option("--no-cache", is_flag=True, help="Neither use nor fill the step cache."),
        click.option(
            "-C",
            "--directory",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="The project folder, holding plan.py (default: $STEPUP_ROOT or the current one).",
        ),
        click.option(
            "--root",
            "old_root",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            hidden=True,
            help="Deprecated: -C/--directory. (--root names what a worker serves.)",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            help="Print only failures, errors and the summary (a terminal still shows the "
            "status line).",
        ),
        click.option(
            "--give-up",
            "give_up",
            metavar="SECONDS",
            help="End the build, its steps stuck, when no connected worker has served its "
            "folder for this long (default: wait, saying so) [STEPUP_DIST_GIVE_UP].",
        ),
        click.option(
            "--watch/--no-watch",
            " /-n",
            "watch",
            default=None,
            help="After the run, watch the files and run again what changes made outdated: "
            "press r, or `stepup-dist rebuild` elsewhere (q stop, j stop when done, d drain, "
            "g write graph.txt, f from scratch, t try skipping everything; any other key lists "
            "them). -n/--no-watch: run once (the default).",
        ),
        click.option(
            "--auto",
            is_flag=True,
            help="With --watch (implied): run what changes made outdated without a key, once "
            "the files are quiet.",
        ),
        click.option(
            "--poll",
            type=click.FloatRange(min=0.05),
            metavar="SECONDS",
            default=None,
            help="With --watch: stat the watched files every SECONDS instead of using inotify "
            "(chosen by itself on network filesystems).",
        ),
        click.option(
            "-k",
            "--keep-going/--no-keep-going",
            "keep_going",
            default=None,
            help="Keep running what does not need a failed step (make -k); without, a failed "
            "step drains the build, as in StepUp 4 (`keep_going` in stepup.toml too).",
        ),
        click.option(
            "-e",
            "--explain-rerun/--no-explain-rerun",
            "explain",
            default=None,
            help="Say, for each step with a record, why it cannot be skipped.",
        ),
        click.option(
            "-r",
            "--resources",
            "resources",
            metavar="NAME:UNITS,...",
            multiple=True,
            help="Limits of this build, e.g. cpu:4,gpu:1: merged with stepup.toml's "
            "[build] resources and STEPUP_BUILD_RESOURCES; repeatable.",
        ),
        click.option(
            "--clean/--no-clean",
            default=None,
            help="Remove the outputs of steps the plan no longer defines after a successful "
            "build (default: on).",
        ),
        click.option(
            "--fix-epoch/--no-fix-epoch",
            default=None,
            help="Give every step SOURCE_DATE_EPOCH=315532800 (1980-01-01), or the build's "
            "own value when it is set (default: on).",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="On a terminal, keep a status line below the output (default: on).",
        ),
        click.option(
            "--duration/--no-duration",
            default=None,
            help="Order ready steps by duration= hints and the last build's times "
            "(default: on; off: the longest chain of steps first).",
        ),
        click.option(
            "--defer-cap",
            type=click.IntRange(min=1),
            default=None,
            help="Times in a row a step may stop to wait for inputs it amended before it "
            "fails instead (default: 100).",
        ),
        click.option(
            "-l",
            "--log-level",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
            default=None,
            hidden=True,
            help="Accepted for StepUp 4's scripts: stepup-dist has no director log.",
        ),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


@cli.command(cls=_BuildCommand, help=_BUILD_HELP)
@_build_options
def build(**opts: Any) -> None:
    _run_build(opts)


@cli.command(cls=_BuildCommand, help="StepUp 4's old name of build (prints a warning).")
@_build_options
def boot(**opts: Any) -> None:
    print("stepup-dist: warning: boot is StepUp 4's old name of build", file=sys.stderr)
    _run_build(opts)


def _run_build(opts: dict[str, Any]) -> None:
    from ..planner.core import BuildOptions
    from .build import WatchOptions, run_build
    from .stepup_config import read_settings

    watch, auto, poll = opts["watch"], opts["auto"], opts["poll"]
    if watch is False and auto:
        raise click.UsageError("-n (run once) and --watch/--auto exclude each other")
    watching = bool(watch) or auto
    if poll is not None and not watching:
        raise click.UsageError("--poll is for --watch")
    if opts["workers"] is not None and opts["jobs"] is not None:
        raise click.UsageError("give -j N (StepUp 4) or -w N (StepUp 1.x), not both")

    directory, old_root = opts["directory"], opts["old_root"]
    if old_root is not None:
        if directory is not None:
            raise click.UsageError("give -C/--directory alone (--root is its old name)")
        print("stepup-dist: warning: build --root is now -C/--directory", file=sys.stderr)
    root = directory or old_root or Path(os.environ.get("STEPUP_ROOT") or ".")

    config = flags_config(
        "stepup-dist",
        opts["redis_url"],
        prefix=opts["prefix"],
        lease=opts["lease"],
        tls_ca=opts["tls_ca"],
        tls_cert=opts["tls_cert"],
        tls_key=opts["tls_key"],
        give_up=opts["give_up"],
        cache=opts["cache_dir"],
        no_cache=opts["no_cache"],
    )
    if config.cache is not None and config.redis_url is None:
        print(
            "stepup-dist: warning: the step cache's index lives on the server; with the "
            "embedded server (no --redis) it lasts one build",
            file=sys.stderr,
        )
    settings = read_settings(root.resolve(), flags=opts["resources"])
    for warning in settings.warnings:
        print(f"stepup-dist: warning: {warning}", file=sys.stderr)
    count = opts["workers"] if opts["workers"] is not None else opts["jobs"]
    if count is None:
        count = settings.jobs or os.cpu_count() or 1
    if count == 0:
        config.server("-w0, which starts no local workers,")

    def chosen(flag: str, setting: str, default: Any) -> Any:
        """The flag if given, else StepUp's setting if set, else StepUp 4's default."""
        if opts[flag] is not None:
            return opts[flag]
        return settings.switches.get(setting, default)

    targets, target_dirs = _targets(root.resolve(), opts["targets"])
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or FIXED_EPOCH
    options = BuildOptions(
        keep_going=chosen("keep_going", "keep_going", False),
        targets=targets,
        target_dirs=target_dirs,
        step_env=(("SOURCE_DATE_EPOCH", epoch),) if chosen("fix_epoch", "fix_epoch", True) else (),
        clean=chosen("clean", "clean", True),
        durations=chosen("duration", "duration", True),
        defer_cap=chosen("defer_cap", "defer_cap", 100),
        explain=chosen("explain", "explain_rerun", False),
    )
    sys.exit(
        run_build(
            config,
            root,
            count,
            quiet=opts["quiet"],
            watch=WatchOptions(auto=auto, poll=poll) if watching else None,
            limits=settings.resources,
            options=options,
            progress=chosen("progress", "progress", True),
        )
    )


FIXED_EPOCH = "315532800"
"""StepUp 4's SOURCE_DATE_EPOCH: 1980-01-01 00:00:00 UTC (the oldest date a ZIP file has)."""


def _targets(root: Path, given: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Targets relative to the project, as the planner names paths; a trailing slash makes
    a folder target (as in StepUp 4, whatever the disk holds)."""
    files: list[str] = []
    folders: list[str] = []
    for target in given:
        if not target:
            raise click.UsageError("a target cannot be empty")
        rel = os.path.relpath(os.path.abspath(target), root)
        if rel == ".." or rel.startswith("../"):
            raise click.UsageError(f"target {target} is not inside {root}")
        if target.endswith("/"):
            folders.append("./" if rel == "." else norm(rel) + "/")
        else:
            files.append(norm(rel))
    return tuple(files), tuple(folders)


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


@pool.command("ceiling")
@click.argument("host")
@click.argument("resource")
@click.argument("units", type=click.IntRange(min=0), required=False)
@click.option("--rm", "remove", is_flag=True, help="Remove the ceiling instead.")
@_REDIS
@_PREFIX
@tls_options
def pool_ceiling(
    host: str,
    resource: str,
    units: int | None,
    remove: bool,
    redis_url: str | None,
    prefix: str | None,
    **tls: str | None,
) -> None:
    """The most UNITS of RESOURCE that count on HOST, whatever its workers offer with
    `--resources` (admin only). HOST or RESOURCE may be `*`: the ceiling of every host (or
    every resource) without one of its own. Without any ceiling, a worker's offer counts."""
    from .admin import ceiling_rm, ceiling_set

    config = _server_config(redis_url, prefix, tls)
    if remove:
        click.echo(ceiling_rm(config, host, resource))
    elif units is None:
        raise click.UsageError("give UNITS, or --rm to remove the ceiling")
    else:
        click.echo(ceiling_set(config, host, resource, units))


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


def _folder(directory: Path | None) -> Path:
    """The project folder: -C, else $STEPUP_ROOT (as StepUp's commands take it), else here."""
    return directory or Path(os.environ.get("STEPUP_ROOT") or ".")


def _control(action: str, directory: Path | None, config: Config) -> str:
    from .control import send

    root = _folder(directory)
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
    root = _folder(directory)
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
@click.option(
    "-u",
    "--update",
    metavar="PATH",
    type=click.Path(path_type=Path),
    help="Also wait until PATH exists (after an edit: the next rebuild sees it).",
)
@click.option(
    "-d",
    "--delete",
    metavar="PATH",
    type=click.Path(path_type=Path),
    help="Also wait until PATH is gone.",
)
@_PROJECT
def wait(update: Path | None, delete: Path | None, directory: Path | None) -> None:
    """Wait until the folder's watching build has finished its current run (or until a
    build that does not watch has ended) (`stepup wait`). Waits up to 10 s for a build
    started in the background to begin."""
    from .control import wait_for_run

    if update is not None and delete is not None:
        raise click.UsageError("give -u or -d, not both")
    click.echo(wait_for_run(_folder(directory), update=update, delete=delete))


@cli.command()
@_REDIS
@_PREFIX
@tls_options
@_PROJECT
def rebuild(
    redis_url: str | None, prefix: str | None, directory: Path | None, **tls: str | None
) -> None:
    """Make the folder's watching build run what changes made outdated, as the key r does
    (`stepup rebuild`); returns once the build has taken it up (`wait` then waits for the
    run)."""
    from .control import rebuild as run

    click.echo(run(_server_config(redis_url, prefix, tls), _folder(directory)))


@cli.command("log")
@click.argument("pattern", metavar="STEP-OR-PATTERN")
@_PROJECT
def log_(pattern: str, directory: Path | None) -> None:
    """Print what the last run of each matching step printed, its host, times and exit
    status, from the folder's records (.stepup/logs/): a step's key, a pattern of keys
    (fnmatch: 'cp *'), or part of one."""
    from .steplog import show

    click.echo(show(_folder(directory), pattern))


@cli.command()
@click.argument("prefix", default="graph")
@_PROJECT
def graph(prefix: str, directory: Path | None) -> None:
    """Write the last build's graph: PREFIX.txt, PREFIX_dependency.dot and
    PREFIX_provenance.dot (`stepup graph`; read from .stepup/, no build need run)."""
    from .project import graph as run

    click.echo(run(_folder(directory), prefix))


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

    click.echo(run(_folder(directory), list(paths), commit=commit, every=every, unsafe=unsafe))


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


def _add_cache_commands() -> None:
    from .cache import cache

    cli.add_command(cache)


_add_cache_commands()


def main() -> None:
    run_command(cli, "stepup-dist", usage=ReturnCode.INTERNAL, interrupted=ReturnCode.INTERRUPTED)


if __name__ == "__main__":
    main()
