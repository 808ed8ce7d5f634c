"""The plan API: what a `plan.py` (or any step) calls to define the build.

Names and meaning follow StepUp's `stepup.core.api`, of StepUp 1.x and of StepUp 4: both
sets of names are here, and where one name means different things in the two (`plan`,
`step`, `static`, `glob`, `getenv`, `copy`, `amend`), the form of the call tells which is
meant (see docs/plan-api.md, "Names that mean different things"). Paths are relative to the
directory of the calling script (its `HERE`, which is where a step runs); in `step()` and
the calls made of it they are relative to its `workdir`. Directories end with a slash.
Paths handed back are `path.Path` objects (a `str` subclass), as StepUp 4's are. Each call
travels over Redis to the planner of the build and is answered synchronously, so a plan may
run on any host.

Outside a build (no `STEPUP_DIST_BUILD` in the environment) the calls do nothing, as
StepUp's do, so a plan can be run by hand.
"""

import enum
import inspect
import math
import os
import posixpath
import re
import shlex
import string
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

from path import Path

from . import paths as _paths
from .nglob import NGlobMulti, has_wildcards
from .paths import step_key

__all__ = (
    "CommandArg",
    "StepInfo",
    "amend",
    "copy",
    "get_info",
    "get_job_i",
    "get_rpc_client",
    "getenv",
    "glob",
    "graph",
    "hold",
    "mkdir",
    "plan",
    "pool",
    "run",
    "shq",
    "static",
    "step",
    "subs_env_vars",
)

CommandArg = str | os.PathLike | Callable[..., str | os.PathLike]
"""The `command` of `step()`, `run()` and `plan()` (StepUp 4): the text, or a function of
(some of) `inp`, `out` and `vol` that returns it."""


class Need(enum.IntEnum):
    """StepUp 4's `need=` of `step()` (`stepup.core.enums.Need`)."""

    OPTIONAL = 31
    """Run only when a step that runs needs an output of it."""
    DEFAULT = 32
    """Run."""
    TARGET = 33
    """Run (StepUp 4 gives it to steps named as targets; here the same as DEFAULT)."""
    PLAN = 34
    """A planning step: run."""


class StepUpError(Exception):
    """A plan's mistake found by the API (StepUp 4: `stepup.core.exceptions.StepUpError`)."""


class PathError(StepUpError, ValueError):
    """A path argument that cannot be used (for instance a missing static path)."""


class InputNotFoundError(StepUpError):
    """StepUp 4's `amend(inp=...)` of an input that is not there yet: let it propagate; the
    step runs again once the input is made."""


class AmendWhileHoldingError(StepUpError):
    """`amend(inp=...)` inside a `hold()` block (StepUp 4 refuses it: it could deadlock)."""


@dataclass(frozen=True)
class StepInfo:
    """What `step()` and the calls made of it return: the step's key and its paths as given
    (relative to its working directory), as `path.Path` objects."""

    key: str
    """The key of the step in the build graph."""
    inp: list[Path]
    """Input paths."""
    env: list[str]
    """Environment variables the step depends on."""
    out: list[Path]
    """Output paths."""
    vol: list[Path]
    """Volatile output paths."""
    command: str = ""
    """The command (StepUp 4's `StepInfo.command`)."""
    workdir: Path = field(default_factory=lambda: Path("."))
    """Its working directory, relative to the build's root, as StepUp 4 gives it (`sub`,
    `.` for the root; `StepInfo.workdir`)."""

    def filter_inp(self, *patterns: str, **subs: str) -> NGlobMulti:
        """The inputs that match the (named) glob patterns."""
        return _filtered(self.inp, patterns, subs)

    def filter_out(self, *patterns: str, **subs: str) -> NGlobMulti:
        """The outputs that match the (named) glob patterns."""
        return _filtered(self.out, patterns, subs)

    def filter_vol(self, *patterns: str, **subs: str) -> NGlobMulti:
        """The volatile outputs that match the (named) glob patterns."""
        return _filtered(self.vol, patterns, subs)


def _filtered(paths: list[Path], patterns: tuple[str, ...], subs: dict[str, str]) -> NGlobMulti:
    ngm = NGlobMulti(patterns, subs)
    ngm.extend(paths)
    return ngm


class _Client:
    """Connection to the planner, made on first use."""

    def __init__(self) -> None:
        self._impl: Any = None
        self._to_planner: Any = None
        self.active = "STEPUP_DIST_BUILD" in os.environ
        self.holding = 0
        """How many `hold()` blocks are open."""
        self.held: list[tuple[str, dict[str, Any]]] = []
        """Calls made inside them, sent when the outermost one ends."""

    def _impl_(self) -> Any:
        if self._impl is None:
            from .broker.call_client import CallClient
            from .config import load_config

            config = load_config()
            self._impl = CallClient(
                config,
                os.environ["STEPUP_DIST_BUILD"],
                os.environ.get("STEPUP_STEP_KEY", "./plan.py"),
            )
            # On a worker with path maps: absolute paths as the planner names them.
            self._to_planner = config.path_map.planner_args
        return self._impl

    def call(self, method: str, **args: Any) -> Any:
        """A call whose answer the plan needs: wait for it."""
        if not self.active:
            return None
        from .errors import PlanError, UserError

        try:
            impl = self._impl_()
            reply = impl.call(method, self._to_planner(args))
        except PlanError:
            _planner_said()  # an earlier call of a batch was refused
        except UserError as exc:
            # No server, a refused login, a bad secret file: one line.
            _fail(str(exc))
        if not reply.ok:
            _planner_said()
        return reply.value

    def send(self, method: str, **args: Any) -> None:
        """A call that only defines something: it travels in a batch (see CallClient).

        Inside a `hold()` block it waits on the plan's side until the block ends.
        """
        if not self.active:
            return
        if self.holding:
            self.held.append((method, args))
            return
        from .errors import PlanError, UserError

        try:
            impl = self._impl_()
            impl.send(method, self._to_planner(args))
        except PlanError:
            _planner_said()
        except UserError as exc:
            _fail(str(exc))

    def release(self) -> None:
        """The outermost `hold()` block ended: send what it held, in order."""
        held, self.held = self.held, []
        for method, args in held:
            self.send(method, **args)


def _fail(message: str) -> NoReturn:
    from .errors import ExitCode

    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(ExitCode.USAGE)


def _planner_said() -> NoReturn:
    """A plan error: the planner refused a call and prints the error itself (its `ERROR`
    line); the plan stops there, with exit code 2, and says it no second time."""
    from .errors import ExitCode

    raise SystemExit(ExitCode.USAGE)


_CLIENT = _Client()


def _here() -> str:
    """The folder of the calling step, relative to the build's root, with a trailing slash.

    Steps get `HERE` as StepUp gives it (`sub`, or `.` for the root folder).
    """
    here = os.environ.get("HERE", ".")
    return _paths.norm(here if here.endswith("/") else here + "/")


# Which of StepUp's two APIs a call means, when its arguments do not say.

_V4_ONLY = frozenset(
    (
        "run",
        "shq",
        "hold",
        "graph",
        "get_info",
        "get_job_i",
        "get_rpc_client",
        "call",
        "render_jinja",
        "loadns",
        "dumpns",
    )
)
"""Names only StepUp 4's API has: a module that imported one of them is a StepUp 4 plan."""

_V1_ONLY = frozenset(("mkdir", "pool"))
"""Names only StepUp 1.x's API has."""


API_VAR = "STEPUP_DIST_API"
"""`4` in a step's environment: it was defined by a StepUp 4 call (`run()`, ...), so its own
calls take StepUp 4's form where the arguments do not say. Set it for a build to have the
root plan's calls mean StepUp 4's too."""


class _Dialect:
    def __init__(self) -> None:
        self.v4 = False
        """This process made a call that only StepUp 4 has (or of a form only it has)."""
        self.undecided: set[tuple[int, int]] = set()
        """Modules (id and size of their globals) found to decide nothing."""


_DIALECT = _Dialect()


def _is_v4(depth: int = 1) -> bool:
    """Whether an ambiguous call means StepUp 4's form.

    Yes once this process made a StepUp 4 call, or when the module calling (`depth` frames
    above the caller of this function) imported a name that only StepUp 4's API has.
    """
    if _DIALECT.v4 or os.environ.get(API_VAR) == "4":
        return True
    frame = inspect.currentframe()
    for _ in range(depth + 1):
        frame = frame.f_back if frame is not None else None
    if frame is None or frame.f_globals.get("__name__") == __name__:
        # A call made by this module (mkdir() calls step()): the form is the caller's.
        return False
    module = frame.f_globals
    seen = (id(module), len(module))
    if seen in _DIALECT.undecided:
        return False  # looked at this module as it is before (a plan with many calls)
    names = {
        getattr(value, "__name__", None)
        for value in list(module.values())
        if str(getattr(value, "__module__", "")).startswith("stepup_dist.api")
    }
    # A name only StepUp 4 has, and none only 1.x has (`import *` brings both: undecided).
    if names & _V4_ONLY and not names & _V1_ONLY:
        _DIALECT.v4 = True
        return True
    _DIALECT.undecided.add(seen)
    return False


def _mark_v4() -> None:
    _DIALECT.v4 = True


_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[*]?[_a-zA-Z][_a-zA-Z0-9]*)\}|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*))"
)


class EnvSubstitutor:
    """Fills environment variables into paths, recording the variables used (StepUp 4's
    `EnvSubstitutor`, yielded by `subs_env_vars()`)."""

    def __init__(self) -> None:
        self.used_env: set[str] = set()
        """The names of the variables filled in so far."""

    def __call__(self, path: Any, workdir: Any = ".") -> Any:
        """`path` with `${NAME}` and `$NAME` filled in, normalized (a `path.Path`; None stays
        None). `${*name}` (a named wildcard) stays. With a `workdir` (StepUp 4), `${HERE}` and
        `${ROOT}` are those of that folder, and the step does not depend on them."""
        if path is None:
            return None
        wd = os.fspath(workdir)

        def value(m: re.Match[str]) -> str:
            name = m.group("braced") or m.group("named")
            if name.startswith("*"):
                return m.group()
            if name in ("HERE", "ROOT") and wd not in (".", "./", ""):
                folder = _paths.join(_here(), _paths.norm(wd + "/"))
                here = folder.rstrip("/") or "."
                if name == "HERE":
                    return "." if folder == "./" else here
                return posixpath.relpath(".", here)
            found = os.environ.get(name)
            if found is None:
                raise ValueError(f"Undefined shell variable: {name}")
            self.used_env.add(name)
            return found

        text = os.fspath(path)
        if "$" in text:
            text = _VARIABLE.sub(value, text)
        return Path(_paths.norm(text))


@contextmanager
def subs_env_vars() -> Iterator[EnvSubstitutor]:
    """Yield a function that fills environment variables into a path, as StepUp's does.

    `${NAME}` and `$NAME` take the value of the variable; `${*name}` (a named wildcard) stays.
    A variable that is not set raises ValueError. The calling step then depends on the
    variables used (an `amend(env=...)` when the block ends).
    """
    subs = EnvSubstitutor()
    yield subs
    if subs.used_env:
        amend(env=sorted(subs.used_env))


def _subs_all(paths: Iterable[str]) -> list[str]:
    with subs_env_vars() as subs:
        return [subs(p) for p in paths]


def _list(arg: Any) -> list[str]:
    if isinstance(arg, str | os.PathLike):
        return [os.fspath(arg)]
    return [os.fspath(a) for a in arg]


def _flatten(items: Iterable[Any]) -> list[str]:
    result = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            result.append(os.fspath(item))
        else:
            result.extend(os.fspath(i) for i in item)
    return result


def _unique(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(paths))


def _stat(local: str) -> list[int] | list[str]:
    try:
        st = os.lstat(local.rstrip("/") or "/")
    except OSError:
        return ["missing"]
    if local.endswith("/"):
        return [st.st_mode, 0, 0, 0]
    return [st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino]


def _declare_static(local: list[str], trees: list[str] = (), *, eager: bool = False) -> None:  # type: ignore[assignment]
    """Send a `static` call: `local` paths (relative to here); `trees` are folders among them
    whose contents are static too (StepUp 4), declared once a step uses them (at once with
    `eager`, else when nothing else is left to run)."""
    if not local:
        return
    here = _here()
    args: dict[str, Any] = {
        "paths": [_paths.join(here, p) for p in local],
        "stats": [_stat(p) for p in local],
    }
    if trees:
        args["trees"] = [_paths.join(here, p) for p in trees]
        args["eager"] = eager
    _CLIENT.send("static", **args)


def static(*paths: Any) -> list[Path]:
    """Declare files (or folders, with a trailing slash) that exist before the build.

    Both StepUp's: a literal path (1.x and 4); a glob pattern, with anonymous or named
    (`${*name}`) wildcards, declares what it matches now (StepUp 4), and the plan runs again
    when the matches change; a `glob()` result declares its matches (StepUp 4). A folder
    (`"data/"`, or an existing folder named without the slash) is a *static tree*: what is
    under it is static too, once a step needs it and no step makes it (StepUp 4).

    Returns the files and tree folders declared, sorted (StepUp 4; 1.x returned None).
    """
    literal: list[str] = []
    matched: list[str] = []
    patterns: list[tuple[str, list[str]]] = []
    with subs_env_vars() as subs:
        for arg in paths:
            if isinstance(arg, NGlobMulti):
                _mark_v4()
                matched.extend(str(f) for f in arg.files())
                continue
            for item in [arg] if isinstance(arg, str | os.PathLike) else arg:
                text = subs(item)
                if has_wildcards(text):
                    _mark_v4()
                    if text.rstrip("/").endswith("**"):
                        raise PathError(
                            f"static() does not take a trailing recursive ** wildcard: {text}. "
                            f"Declare the folder instead (static('{text.rstrip('*/')}/'))."
                        )
                    ngm = NGlobMulti([text], zero_dirs=True)
                    ngm.glob()
                    found = [str(f) for f in ngm.files()]
                    patterns.append((text, found))
                    matched.extend(found)
                else:
                    literal.append(text)
    # A folder named without its slash is a folder (StepUp 4); a missing path stays as
    # given, and the planner refuses it (as StepUp 1.x: "missing static input").
    literal = [p + "/" if not p.endswith("/") and os.path.isdir(p) else p for p in literal]
    matched = [p + "/" if not p.endswith("/") and os.path.isdir(p) else p for p in matched]
    everything = _unique(
        [*sorted(p for p in literal + matched if p.endswith("/")), *literal, *matched]
    )
    trees = [p for p in everything if p.endswith("/")]
    _declare_static(everything, trees, eager=_is_v4())
    here = _here()
    for pattern, found in patterns:
        _CLIENT.send(
            "glob",
            patterns=[_paths.join(here, pattern)],
            subs={},
            matches=[_paths.join(here, f) for f in found],
            zero_dirs=True,
        )
    return sorted(Path(p) for p in everything)


def glob(
    *patterns: str, _required: bool = False, _defer: bool = False, **subs: str
) -> NGlobMulti | None:
    """Declare as static every existing path matching the patterns; return the matches.

    StepUp 1.x's `glob(*patterns, _required, _defer, **subs)` and StepUp 4's
    `glob(pattern, **subs)`: the matches are `path.Path` objects. Unlike StepUp 4's (a pure
    query, which warns at the end about matches nothing declared static), the matches are
    declared static, as in 1.x; their folders too, when nothing made them.

    Patterns may hold named wildcards, `${*name}`, which match `*` or the pattern given as a
    keyword (`glob("ch-${*ch}/", ch="[0-9]")`); iterating over the result then gives
    matches with the names as attributes (see nglob.py).

    With `_defer=True` nothing is declared now and None is returned: a path matching the
    patterns becomes static once a step needs it as input and no step makes it.
    """
    if not patterns:
        raise ValueError("At least one pattern is required for glob.")
    if any(name.startswith("_") for name in subs):
        raise ValueError("Substitutions cannot have names starting with underscores.")
    if _defer:
        # The planner makes a matching input static once a step uses it and no step makes it.
        if _required:
            raise ValueError("Combination of options not supported: _defer=True, _required=True")
        if subs:
            raise ValueError("Named wildcards are not supported in deferred globs.")
        here = _here()
        _CLIENT.send("defer", patterns=[_paths.join(here, p) for p in _subs_all(patterns)])
        return None
    local = _subs_all(patterns)
    # StepUp 4's `**/` matches no folder too; 1.x's at least one.
    zero_dirs = _is_v4()
    ngm = NGlobMulti(local, subs, zero_dirs=zero_dirs)
    ngm.glob()
    if _required and not ngm:
        raise FileNotFoundError("Could not find any matching paths on the filesystem.")
    files = [str(f) for f in ngm.files()]
    _declare_static(files)
    # The planner keeps the glob with its matches: when they change, the plan runs again.
    here = _here()
    _CLIENT.send(
        "glob",
        patterns=[_paths.join(here, p) for p in local],
        subs=dict(subs),
        matches=[_paths.join(here, f) for f in files],
        **({"zero_dirs": True} if zero_dirs else {}),
    )
    return ngm


def _resolve_command(command: Any, inp: list[str], out: list[str], vol: list[str]) -> str:
    """The command text; a callable (StepUp 4) gets the paths it names (`inp`, `out`, `vol`)."""
    if not callable(command):
        return os.fspath(command)
    _mark_v4()
    given = {
        "inp": [Path(p) for p in inp],
        "out": [Path(p) for p in out],
        "vol": [Path(p) for p in vol],
    }
    kwargs = {}
    for name, parameter in inspect.signature(command).parameters.items():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise StepUpError(
                "A command callable must declare its parameters by name: "
                f"*args, **kwargs and positional-only parameters are not supported ({name})."
            )
        if name not in given:
            raise StepUpError(
                f"A command callable cannot declare a parameter {name!r}. "
                "Supported parameters: inp, out, vol."
            )
        kwargs[name] = given[name]
    return os.fspath(command(**kwargs))


_RESERVED_ENV = frozenset(
    ("HERE", "ROOT", "STEPUP_ROOT", "STEPUP_STEP_KEY", "STEPUP_DIST_BUILD", "PWD", API_VAR)
)
"""Variables the worker sets for a step: `env_overrides` may not set them."""


def _check_duration(duration: Any) -> float | None:
    if duration is None:
        return None
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or math.isnan(duration)
        or math.isinf(duration)
        or duration < 0
    ):
        raise StepUpError(f"Invalid duration: {duration!r}. Must be a non-negative number.")
    return float(duration)


def _need_optional(need: Any) -> bool:
    try:
        value = Need(need) if not isinstance(need, str) else Need[need.upper()]
    except (KeyError, ValueError):
        raise StepUpError(
            f"need must be one of {', '.join(n.name for n in Need)}: {need!r}"
        ) from None
    return value is Need.OPTIONAL


def _define(
    command: Any,
    *,
    inp: Any,
    env: Any,
    out: Any,
    vol: Any,
    workdir: Any,
    optional: bool,
    pool: str | None,
    resources: Any,
    v4: bool,
    env_overrides: dict[str, str] | None = None,
    duration: float | None = None,
    extra_inp: list[str] = (),  # type: ignore[assignment]
) -> StepInfo:
    """Define a step (the work of `step()`, `run()`, `plan()`, `copy()`, ...).

    With `v4`, as StepUp 4 does: the working directory and the folders of the outputs are
    made now (and declared static) when no step makes them, and the StepInfo is sorted.
    """
    env_l = _list(env)
    workdir = os.fspath(workdir)
    if not workdir.endswith("/"):
        workdir += "/"
    with subs_env_vars() as subs:
        workdir = subs(workdir)
        # StepUp 4: ${HERE} and ${ROOT} in a path are those of the step's workdir; in 1.x,
        # those of the caller (its environment).
        wd = workdir if v4 else "."
        inp_l = _unique([*(subs(p, wd) for p in extra_inp), *(subs(p, wd) for p in _list(inp))])
        out_l = [subs(p, wd) for p in _list(out)]
        vol_l = [subs(p, wd) for p in _list(vol)]
    command = _resolve_command(command, inp_l, out_l, vol_l)
    if not command.strip():
        raise StepUpError("The command must not be empty.")
    command = string.Template(command).safe_substitute(
        inp=" ".join(inp_l), out=" ".join(out_l), vol=" ".join(vol_l)
    )
    if env_overrides:
        overrides = {str(k): str(v) for k, v in env_overrides.items()}
        both = set(overrides) & set(env_l)
        if both:
            raise StepUpError(
                "Variable(s) cannot be both an env dependency and an env_overrides value: "
                + ", ".join(sorted(both))
            )
        reserved = set(overrides) & _RESERVED_ENV
        if reserved:
            raise StepUpError(
                "Variable(s) set by stepup-dist cannot be overridden: "
                + ", ".join(sorted(reserved))
            )
    else:
        overrides = {}
    if v4:
        # What the step calls in turn (a plan.py, a script's amend()) means StepUp 4's form.
        overrides[API_VAR] = "4"
    base = _paths.join(_here(), workdir)
    if v4:
        _make_folders(workdir, [*out_l, *vol_l])
    args: dict[str, Any] = {
        "command": command,
        "workdir": base,
        "inp": [_paths.join(base, p) for p in inp_l],
        "out": [_paths.join(base, p) for p in out_l],
        "vol": [_paths.join(base, p) for p in vol_l],
        "env": env_l,
        "pool": pool,
        "resources": _resources(resources),
    }
    if optional:
        args["optional"] = True
    if overrides:
        args["env_overrides"] = overrides
    if duration is not None:
        args["duration"] = duration
    _CLIENT.send("step", **args)
    # The planner names the step the same way (plan_calls.call_step).
    wd = _paths.norm(base)
    key = step_key(command, wd if wd.endswith("/") else wd + "/") if _CLIENT.active else "dummy:"
    lists = [[Path(p) for p in x] for x in (inp_l, out_l, vol_l)]
    if v4:
        lists = [sorted(x) for x in lists]
        env_l = sorted(env_l)
    return StepInfo(key, lists[0], env_l, lists[1], lists[2], command, Path(wd.rstrip("/") or "."))


def _make_folders(workdir: str, outputs: list[str]) -> None:
    """StepUp 4 makes a step's working directory and the folders of its outputs before it
    runs. Here the plan makes those that are missing, and declares them static (the folder
    of an output is an input of the step, see graph.Graph.add_step), whether this build or
    an earlier one made them."""
    folders = [] if workdir == "./" else [workdir]
    for path in outputs:
        folder = posixpath.dirname(path.rstrip("/"))
        if folder:
            folders.append(_paths.join(workdir, folder + "/"))
    local = []
    for folder in _unique(folders):
        if folder.startswith(("/", "../")) or folder == "./":
            continue
        os.makedirs(folder, exist_ok=True)
        local.append(folder)
    _declare_static(local)


def step(
    command: CommandArg,
    *,
    inp: Collection[str] | str = (),
    env: Collection[str] | str = (),
    out: Collection[str] | str = (),
    vol: Collection[str] | str = (),
    workdir: str = "./",
    optional: bool = False,
    pool: str | None = None,
    block: bool = False,
    resources: str | dict[str, int] | None = None,
    need: Any = None,
    shell: bool = False,
    env_overrides: dict[str, str] | None = None,
    duration: float | None = None,
) -> StepInfo:
    """Add a step: `command` runs with `sh -c` in `workdir` once all `inp` exist.

    `resources="gpu:1,mem:8"` (or a dict) runs it only on a host whose workers declared those
    units (`stepup-worker --resources`) while they are free there.

    `${inp}`, `${out}` and `${vol}` in the command are replaced by the paths as given
    (StepUp 1.x). StepUp 4's arguments: `need=Need.OPTIONAL` (as `optional=True`),
    `env_overrides` (values of variables for the command, which the step depends on),
    `duration` (a hint in seconds for the order of ready steps), `shell` (accepted: every
    command runs with `sh -c`), and a callable `command`. Any of these, or a module that
    uses StepUp 4's API, makes this the StepUp 4 form: the working directory and the
    folders of the outputs are then made when missing, as StepUp 4 does.
    """
    v4 = (
        need is not None
        or shell
        or env_overrides is not None
        or duration is not None
        or callable(command)
    )
    if v4:
        _mark_v4()
    elif pool is None and not block:
        v4 = _is_v4()
    return _define(
        command,
        inp=inp,
        env=env,
        out=out,
        vol=vol,
        workdir=workdir,
        optional=optional or (need is not None and _need_optional(need)),
        pool=pool,
        resources=resources,
        v4=v4,
        env_overrides=env_overrides,
        duration=_check_duration(duration),
    )


_ASSIGNMENT = re.compile(
    r"\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>(?:'[^']*'|\"(?:[^\"\\]|\\.)*\"|\\.|[^\s'\"\\])*)(?=\s|$)"
)


def _split_overrides(command: str) -> tuple[dict[str, str], str]:
    """Leading `NAME=value` words of a command, and the rest (as StepUp 4's `run()`)."""
    overrides: dict[str, str] = {}
    rest = command
    while True:
        m = _ASSIGNMENT.match(rest)
        if m is None:
            break
        raw = m.group("value")
        try:
            words = shlex.split(raw) if raw else [""]
        except ValueError as exc:
            raise StepUpError(f"Cannot parse command: {command} ({exc})") from exc
        overrides[m.group("name")] = words[0] if words else ""
        rest = rest[m.end() :]
    return overrides, rest.lstrip()


def _executable(command: str) -> str | None:
    """The first word when it is a relative path with a slash (a local executable)."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise StepUpError(
            f"Cannot parse command to detect the executable: {command} ({exc})"
        ) from exc
    first = words[0] if words else ""
    if "/" in first and not first.startswith("/"):
        return first
    return None


def _run_like(
    command: Any,
    *,
    inp: Any,
    env: Any,
    out: Any,
    vol: Any,
    workdir: Any,
    optional: bool,
    shell: bool,
    resources: Any,
    duration: Any,
    need_exe: bool,
) -> StepInfo:
    _mark_v4()
    if callable(command):
        with subs_env_vars() as subs:
            wd = subs(os.fspath(workdir) + "/")
            command = _resolve_command(
                command,
                [subs(p, wd) for p in _list(inp)],
                [subs(p, wd) for p in _list(out)],
                [subs(p, wd) for p in _list(vol)],
            )
    command = os.fspath(command)
    overrides, rest = _split_overrides(command)
    if not shell:
        command = rest
    else:
        overrides = {}
    exe = _executable(rest)
    if exe is None and need_exe:
        raise PathError(
            "The command must be a relative path to a local executable, "
            f"containing at least one slash, e.g. './plan.py'. Got: {command}"
        )
    return _define(
        command,
        inp=inp,
        env=env,
        out=out,
        vol=vol,
        workdir=workdir,
        optional=optional,
        pool=None,
        resources=resources,
        v4=True,
        env_overrides=overrides or None,
        duration=_check_duration(duration),
        extra_inp=[exe] if exe is not None else [],
    )


def run(
    command: CommandArg,
    *,
    inp: Collection[str] | str = (),
    env: Collection[str] | str = (),
    out: Collection[str] | str = (),
    vol: Collection[str] | str = (),
    workdir: str = ".",
    optional: bool = False,
    shell: bool = False,
    resources: str | dict[str, int] | None = None,
    duration: float | None = None,
) -> StepInfo:
    """Add a step (StepUp 4's main call): `command` runs in `workdir` once all `inp` exist.

    As StepUp 4: a first word that is a relative path with a slash (`./work.py`) is an input
    too; leading `NAME=value` words become `env_overrides` (unless `shell=True`); a callable
    `command` is called with the (substituted) `inp`, `out` and `vol` it names. The command
    runs with `sh -c` whatever `shell` says, so it must be valid shell (which `shq()` ensures);
    StepUp 4 runs a `.py` first word through a wrapper that adds local imports as inputs,
    which stepup-dist does not (the script runs by its shebang). See `step()` for the rest.
    """
    return _run_like(
        command,
        inp=inp,
        env=env,
        out=out,
        vol=vol,
        workdir=workdir,
        optional=optional,
        shell=shell,
        resources=resources,
        duration=duration,
        need_exe=False,
    )


def _resources(value: str | dict[str, int] | None) -> str | dict[str, object]:
    """As given: the planner reads `"gpu:1,mem:8"` (and checks a dict), whoever sent it."""
    if value is None:
        return {}
    return dict(value) if isinstance(value, dict) else str(value)


def pool(name: str, size: int) -> None:
    """Define a pool (or change its size): at most `size` of its steps run at once."""
    _CLIENT.send("pool", name=name, size=size)


def amend(
    *,
    inp: Collection[str] | str = (),
    env: Collection[str] | str = (),
    out: Collection[str] | str = (),
    vol: Collection[str] | str = (),
) -> bool:
    """From a running step: declare more inputs, outputs or environment variables.

    When an amended input is not available yet, StepUp 1.x's form returns False (the step
    should stop) and StepUp 4's raises `InputNotFoundError` (let it propagate); either way
    the step runs again once the input is made. The StepUp 4 form is that of a module that
    uses StepUp 4's API (see `step()`). Inside a `hold()` block, `inp` is refused
    (`AmendWhileHoldingError`), as StepUp 4 does.
    """
    lists = [_list(inp), _list(env), _list(out), _list(vol)]
    if not any(lists):
        return True
    if lists[0] and _CLIENT.holding:
        raise AmendWhileHoldingError(
            "amend() cannot be called with `inp` while this step has an open hold() block. "
            "Call the amend-triggering code before entering the `with hold():` block."
        )
    v4 = _is_v4()
    with subs_env_vars() as subs:
        for i in (0, 2, 3):
            lists[i] = [subs(p) for p in lists[i]]
    here = _here()
    result = _CLIENT.call(
        "amend",
        inp=[_paths.join(here, p) for p in lists[0]],
        env=lists[1],
        out=[_paths.join(here, p) for p in lists[2]],
        vol=[_paths.join(here, p) for p in lists[3]],
    )
    keep_going = True if result is None else bool(result)
    if keep_going:
        # As StepUp: an input the planner holds available must be there for this step.
        _check_inputs(lists[0])
    elif v4:
        raise InputNotFoundError("Dynamic inputs are not available yet.")
    return keep_going


def _check_inputs(paths: list[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            if not path.endswith("/"):
                raise ValueError(f"Directory without trailing separator: {path}")
        elif os.path.exists(path):
            if path.endswith("/"):
                raise ValueError(f"Path is not a directory: {path}")
        else:
            raise ValueError(f"Path does not exist: {path}")


_UNSET: Any = object()


def _plan_is_v4(command: Any, given: bool) -> bool:
    """StepUp 4's `plan(command, ...)` or StepUp 1.x's `plan(subdir)`: see `plan()`."""
    if given or callable(command):
        return True
    text = os.fspath(command)
    try:
        words = shlex.split(text)
    except ValueError:
        return True
    if len(words) != 1 or _ASSIGNMENT.match(text):
        return True
    word = words[0]
    if "$" in word:
        with subs_env_vars() as subs:
            word = str(subs(word))
    if word.endswith("/") or os.path.isdir(word):
        return False
    return "/" in word


def plan(
    command: CommandArg,
    block: bool = False,
    *,
    inp: Collection[str] | str = _UNSET,
    env: Collection[str] | str = _UNSET,
    out: Collection[str] | str = _UNSET,
    vol: Collection[str] | str = _UNSET,
    workdir: str = _UNSET,
    resources: str | dict[str, int] | None = _UNSET,
    duration: float | None = _UNSET,
) -> StepInfo:
    """Run a plan: StepUp 1.x's `plan(subdir)` or StepUp 4's `plan(command, *, inp, env,
    out, vol, workdir, resources, duration)`.

    The form: StepUp 4's when a keyword argument of StepUp 4 is given, when `command` is a
    callable or more than one word (`VAR=1 ./plan.py`, `./plan.py --fast`), or when it is one
    word with a slash that is not a folder (`./plan.py`, `sub/plan.py`). StepUp 1.x's when
    `block` is given, or when it is one word that ends with a slash, names an existing folder
    or has no slash (`plan("sub/")`, `plan("sub")`); then `./plan.py` runs in that folder.
    """
    given = {
        name: value
        for name, value in (
            ("inp", inp),
            ("env", env),
            ("out", out),
            ("vol", vol),
            ("workdir", workdir),
            ("resources", resources),
            ("duration", duration),
        )
        if value is not _UNSET
    }
    if block or not _plan_is_v4(command, bool(given)):
        with subs_env_vars() as subs:
            subdir = subs(str(command))
        return _define(
            "./plan.py",
            inp="plan.py",
            env=(),
            out=(),
            vol=(),
            workdir=subdir,
            optional=False,
            pool=None,
            resources=None,
            v4=False,
        )
    return _run_like(
        command,
        inp=given.get("inp", ()),
        env=given.get("env", ()),
        out=given.get("out", ()),
        vol=given.get("vol", ()),
        workdir=given.get("workdir", "."),
        optional=False,
        shell=False,
        resources=given.get("resources"),
        duration=given.get("duration"),
        need_exe=True,
    )


def copy(
    src: str,
    dst: str,
    optional: bool = False,
    block: bool = False,
    *,
    resources: str | dict[str, int] | None = None,
    duration: float | None = None,
) -> StepInfo:
    """Add a step that copies a file; `dst` may be a directory (with a trailing slash).

    StepUp 1.x's form runs `cp -aT src dst`; StepUp 4's (with `resources` or `duration`, or
    in a module that uses StepUp 4's API) runs `cp -p src dst`, and makes the folder of
    `dst` when it is missing. Both quote a name where the shell needs it.
    """
    v4 = resources is not None or duration is not None
    if v4:
        _mark_v4()
    elif not block:
        v4 = _is_v4()
    with subs_env_vars() as subs:
        src, dst = subs(src), subs(dst)
    if dst.endswith("/"):
        dst = _paths.join(dst, posixpath.basename(src))
    # Quoted as the shell needs (a plain name stays as it is: 1.x's command text).
    command = f"cp {'-p' if v4 else '-aT'} {shlex.quote(src)} {shlex.quote(dst)}"
    return _define(
        command,
        inp=src,
        env=(),
        out=dst,
        vol=(),
        workdir="./",
        optional=optional,
        pool=None,
        resources=resources,
        v4=v4,
        duration=_check_duration(duration),
    )


def mkdir(dirname: str, optional: bool = False, block: bool = False) -> StepInfo:
    """Add a step that makes a directory (StepUp 1.x)."""
    with subs_env_vars() as subs:
        dirname = subs(dirname if dirname.endswith("/") else dirname + "/")
    return step(f"mkdir -p {dirname}", out=dirname, optional=optional, block=block)


def getenv(
    name: str,
    default: Any = None,
    is_path: bool = False,
    *,
    path: bool = False,
    back: bool = False,
    multi: bool = False,
) -> Any:
    """The build's value of an environment variable; the calling step depends on it.

    StepUp 1.x's `is_path=True`: a `path.Path`, a relative one taken relative to the root
    (translated to here; the step depends on `ROOT` too). StepUp 4's `path=True`: a
    `path.Path` (variables in it filled in); `back=True`: relative to the root, translated
    to here; `multi=True`: a list of paths split on `:` (none when unset).
    """
    if path or back or multi:
        _mark_v4()
    if default is not None:
        default = os.fspath(default)
    if not _CLIENT.active or name in ("HERE", "ROOT"):
        # HERE and ROOT are the step's own (from the worker), not the build's: they follow
        # from its working directory, which it is named by already (no dependency).
        value = os.getenv(name, default)
    else:
        value = _CLIENT.call("getenv", name=name, default=default)
    if is_path and value is not None:
        # As StepUp: a relative path is relative to the root; the step depends on ROOT too.
        text = str(value)
        if not os.path.isabs(text):
            text = posixpath.normpath(posixpath.join(os.environ.get("ROOT", "."), text))
            amend(env=["ROOT"])
        with subs_env_vars() as subs:
            return Path(subs(text))
    if multi:
        if value is None:
            return []
        with subs_env_vars() as subs:
            return [
                _env_path(subs, item.strip(), back) for item in value.split(":") if item.strip()
            ]
    if path or back:
        if value is None:
            raise ValueError(f"Undefined shell variable: {name}. Cannot create path.")
        with subs_env_vars() as subs:
            return _env_path(subs, value, back)
    return value


def _env_path(subs: EnvSubstitutor, value: str, back: bool) -> Path:
    result = str(subs(value))
    if not value.endswith("/"):
        # A trailing slash only when the value has one (StepUp 4 keeps the affixes given).
        result = result.rstrip("/") or ("/" if result.startswith("/") else ".")
    if back and not result.startswith("/"):
        # Relative to the root: from here, that is `ROOT/value` (StepUp 4's translate_back).
        here = _here().rstrip("/") or "."
        rel = posixpath.relpath(result.rstrip("/") or ".", here)
        result = rel + "/" if result.endswith("/") and rel != "." else rel
    return Path(result)


@contextmanager
def hold() -> Iterator[None]:
    """Hold back the steps defined inside the block until it ends (StepUp 4).

    They reach the planner together when the outermost block ends, so that the order of
    ready steps (their `duration` hints) decides which go first. Nested blocks are fine;
    `amend(inp=...)` is refused inside one.
    """
    _mark_v4()
    _CLIENT.holding += 1
    try:
        yield
    finally:
        _CLIENT.holding -= 1
        if _CLIENT.holding == 0:
            _CLIENT.release()


def graph(prefix: str) -> None:
    """Write the build graph as it is now to `PREFIX.txt`, `PREFIX_dependency.dot` and
    `PREFIX_provenance.dot` (StepUp 4).

    A relative `prefix` is relative to the build's root, as in StepUp 4 (the director's
    working directory).
    """
    _mark_v4()
    _CLIENT.call("graph", prefix=os.fspath(prefix))


def shq(paths: Any) -> str:
    """Shell-quote and join one or more paths, for a command (StepUp 4).

    Variables in the paths are filled in; the calling step depends on them.
    """
    _mark_v4()
    with subs_env_vars() as subs:
        return shlex.join(str(subs(p)) for p in _list(paths))


def get_info() -> StepInfo:
    """The step that calls this, as it was defined: its key, command and paths, the paths
    relative to here (StepUp 4). Outside a build, an empty StepInfo."""
    _mark_v4()
    info = _CLIENT.call("info")
    if not isinstance(info, dict):
        return StepInfo("dummy:", [], [], [], [], "", Path("."))
    here = _here().rstrip("/") or "."

    def back(paths: list[str]) -> list[Path]:
        result = []
        for p in paths:
            if p.startswith("/"):
                result.append(Path(p))
                continue
            rel = posixpath.relpath(p.rstrip("/") or ".", here)
            result.append(Path(rel + "/" if p.endswith("/") else rel))
        return sorted(result)

    return StepInfo(
        info["key"],
        back(info["inp"]),
        sorted(info["env"]),
        back(info["out"]),
        back(info["vol"]),
        info["command"],
        Path(info["workdir"].rstrip("/") or "."),
    )


def get_job_i() -> int:
    """StepUp 4's number of the running job: `STEPUP_JOB_I` when set, else -1.

    stepup-dist names a step by its key (`STEPUP_STEP_KEY`), not by a job number; no call
    of this API takes the number, so -1 is a correct answer to pass back to it.
    """
    _mark_v4()
    return int(os.environ.get("STEPUP_JOB_I", "-1"))


class _RPCMethods:
    """StepUp 4's director methods that have a meaning here, sent to this build's planner."""

    def amend_step(self, job_i: int, inp: Any, env: Any, out: Any, vol: Any, **_: Any) -> bool:
        return bool(
            _CLIENT.call(
                "amend",
                inp=sorted(_paths.norm(str(p)) for p in inp),
                env=sorted(env),
                out=sorted(_paths.norm(str(p)) for p in out),
                vol=sorted(_paths.norm(str(p)) for p in vol),
            )
            is not False
        )

    def get_step_info(self, job_i: int, **_: Any) -> StepInfo:
        return get_info()

    def hold_dispatch(self, job_i: int, **_: Any) -> None:
        _CLIENT.holding += 1

    def release_dispatch(self, job_i: int, **_: Any) -> None:
        _CLIENT.holding = max(0, _CLIENT.holding - 1)
        if _CLIENT.holding == 0:
            _CLIENT.release()

    def write_graph(self, prefix: Any, **_: Any) -> None:
        graph(prefix)

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(
            f"stepup-dist has no director method {name!r}: its planner answers the plan API "
            "(stepup.core.api), not StepUp 4's RPC protocol. Use the API call that does this."
        )


class RPCClient:
    """What `get_rpc_client()` returns: `client.call.NAME(...)` as in StepUp 4, for the
    methods that mean something here (`amend_step`, `get_step_info`, `hold_dispatch`,
    `release_dispatch`, `write_graph`); any other raises NotImplementedError, saying so."""

    def __init__(self) -> None:
        self.call = _RPCMethods()

    def close(self) -> None:
        """Nothing to close: the calls share the plan's connection to the planner."""


_RPC_CLIENT = RPCClient()


def get_rpc_client(path: str | None = None) -> RPCClient:
    """A client for StepUp 4's director calls, sent to this build's planner (see RPCClient).

    `path` (a director socket) has no meaning here: a given one raises NotImplementedError.
    """
    _mark_v4()
    if path is not None:
        raise NotImplementedError(
            "stepup-dist has no director socket: its planner is reached through the build's "
            "Redis server, which the plan API already uses."
        )
    return _RPC_CLIENT
