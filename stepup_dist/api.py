"""The plan API: what a `plan.py` (or any step) calls to define the build.

Names and meaning follow StepUp (`stepup.core.api`): paths in `step()` are relative to its
`workdir`, which is relative to the directory of the calling script; other paths are relative
to that directory. Directories end with a slash. Each call travels over Redis to the
planner of the build and is answered synchronously, so a plan may run on any host.

Outside a build (no `STEPUP_DIST_BUILD` in the environment) the calls do nothing, as
StepUp's do, so a plan can be run by hand.
"""

import os
import posixpath
import re
import string
import sys
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from path import Path

from . import paths as _paths
from .nglob import NGlobMulti
from .paths import step_key

__all__ = (
    "StepInfo",
    "amend",
    "copy",
    "getenv",
    "glob",
    "mkdir",
    "plan",
    "pool",
    "static",
    "step",
    "subs_env_vars",
)


@dataclass(frozen=True)
class StepInfo:
    """What `step()` returns: the step's key and its paths as given (relative to the caller)."""

    key: str
    """The key of the step in the build graph."""
    inp: list[str]
    """Input paths."""
    env: list[str]
    """Environment variables the step depends on."""
    out: list[str]
    """Output paths."""
    vol: list[str]
    """Volatile output paths."""

    def filter_inp(self, *patterns: str, **subs: str) -> NGlobMulti:
        """The inputs that match the (named) glob patterns."""
        return _filtered(self.inp, patterns, subs)

    def filter_out(self, *patterns: str, **subs: str) -> NGlobMulti:
        """The outputs that match the (named) glob patterns."""
        return _filtered(self.out, patterns, subs)

    def filter_vol(self, *patterns: str, **subs: str) -> NGlobMulti:
        """The volatile outputs that match the (named) glob patterns."""
        return _filtered(self.vol, patterns, subs)


def _filtered(paths: list[str], patterns: tuple[str, ...], subs: dict[str, str]) -> NGlobMulti:
    ngm = NGlobMulti(patterns, subs)
    ngm.extend(paths)
    return ngm


class _Client:
    """Connection to the planner, made on first use."""

    def __init__(self) -> None:
        self._impl: Any = None
        self._to_planner: Any = None
        self.active = "STEPUP_DIST_BUILD" in os.environ

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
        """A call that only defines something: it travels in a batch (see CallClient)."""
        if not self.active:
            return
        from .errors import PlanError, UserError

        try:
            impl = self._impl_()
            impl.send(method, self._to_planner(args))
        except PlanError:
            _planner_said()
        except UserError as exc:
            _fail(str(exc))


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


_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[*]?[_a-zA-Z][_a-zA-Z0-9]*)\}|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*))"
)


@contextmanager
def subs_env_vars() -> Iterator[Any]:
    """Yield a function that fills environment variables into a path, as StepUp's does.

    `${NAME}` and `$NAME` take the value of the variable; `${*name}` (a named wildcard) stays.
    A variable that is not set raises ValueError. The calling step then depends on the
    variables used (an `amend(env=...)` when the block ends).
    """
    used: set[str] = set()

    def subs(path: str | None) -> str | None:
        if path is None:
            return None

        def value(m: re.Match[str]) -> str:
            name = m.group("braced") or m.group("named")
            if name.startswith("*"):
                return m.group()
            found = os.environ.get(name)
            if found is None:
                raise ValueError(f"Undefined shell variable: {name}")
            used.add(name)
            return found

        text = os.fspath(path)
        if "$" in text:
            text = _VARIABLE.sub(value, text)
        return _paths.norm(text)

    yield subs
    if used:
        amend(env=sorted(used))


def _subs_all(paths: Iterable[str]) -> list[str]:
    with subs_env_vars() as subs:
        return [subs(p) for p in paths]


def _list(arg: Collection[str] | str) -> list[str]:
    if isinstance(arg, str):
        return [arg]
    return [str(a) for a in arg]


def _flatten(items: Iterable[Any]) -> list[str]:
    result = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            result.append(os.fspath(item))
        else:
            result.extend(os.fspath(i) for i in item)
    return result


def _stat(local: str) -> list[int] | list[str]:
    try:
        st = os.lstat(local.rstrip("/") or "/")
    except OSError:
        return ["missing"]
    if local.endswith("/"):
        return [st.st_mode, 0, 0, 0]
    return [st.st_mode, st.st_mtime_ns, st.st_size, st.st_ino]


def static(*paths: str | Iterable[str]) -> None:
    """Declare files (or directories, with a trailing slash) that exist before the build."""
    local = _subs_all(_flatten(paths))
    if not local:
        return
    here = _here()
    _CLIENT.send(
        "static", paths=[_paths.join(here, p) for p in local], stats=[_stat(p) for p in local]
    )


def glob(
    *patterns: str, _required: bool = False, _defer: bool = False, **subs: str
) -> NGlobMulti | None:
    """Declare as static every existing path matching the patterns; return the matches.

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
    ngm = NGlobMulti(local, subs)
    ngm.glob()
    if _required and not ngm:
        raise FileNotFoundError("Could not find any matching paths on the filesystem.")
    files = list(ngm.files())
    static(files)
    # The planner keeps the glob with its matches: when they change, the plan runs again.
    here = _here()
    _CLIENT.send(
        "glob",
        patterns=[_paths.join(here, p) for p in local],
        subs=dict(subs),
        matches=[_paths.join(here, f) for f in files],
    )
    return ngm


def step(
    command: str,
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
) -> StepInfo:
    """Add a step: `command` runs with `sh -c` in `workdir` once all `inp` exist.

    `resources="gpu:1,mem:8"` (or a dict) runs it only on a host whose workers declared those
    units (`stepup-worker --resources`) while they are free there.

    `${inp}`, `${out}` and `${vol}` in the command are replaced by the paths as given.
    """
    env_l = _list(env)
    if not workdir.endswith("/"):
        workdir += "/"
    with subs_env_vars() as subs:
        inp_l = [subs(p) for p in _list(inp)]
        out_l = [subs(p) for p in _list(out)]
        vol_l = [subs(p) for p in _list(vol)]
        workdir = subs(workdir)
    command = string.Template(command).safe_substitute(
        inp=" ".join(inp_l), out=" ".join(out_l), vol=" ".join(vol_l)
    )
    base = _paths.join(_here(), workdir)
    _CLIENT.send(
        "step",
        command=command,
        workdir=base,
        inp=[_paths.join(base, p) for p in inp_l],
        out=[_paths.join(base, p) for p in out_l],
        vol=[_paths.join(base, p) for p in vol_l],
        env=env_l,
        pool=pool,
        resources=_resources(resources),
        **({"optional": True} if optional else {}),
    )
    # The planner names the step the same way (plan_calls.call_step).
    wd = _paths.norm(base)
    key = step_key(command, wd if wd.endswith("/") else wd + "/") if _CLIENT.active else "dummy:"
    return StepInfo(key, inp_l, env_l, out_l, vol_l)


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

    Returns False when an amended input is not available yet: the step should stop; it runs
    again once the input is made.
    """
    lists = [_list(inp), _list(env), _list(out), _list(vol)]
    if not any(lists):
        return True
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


def plan(subdir: str, block: bool = False) -> StepInfo:
    """Run `plan.py` in a subdirectory."""
    with subs_env_vars() as subs:
        subdir = subs(subdir)
    return step("./plan.py", inp="plan.py", workdir=subdir, block=block)


def copy(src: str, dst: str, optional: bool = False, block: bool = False) -> StepInfo:
    """Add a step that copies a file; `dst` may be a directory (with a trailing slash)."""
    with subs_env_vars() as subs:
        src, dst = subs(src), subs(dst)
    if dst.endswith("/"):
        dst = _paths.join(dst, posixpath.basename(src))
    return step("cp -aT ${inp} ${out}", inp=src, out=dst, optional=optional, block=block)


def mkdir(dirname: str, optional: bool = False, block: bool = False) -> StepInfo:
    """Add a step that makes a directory."""
    with subs_env_vars() as subs:
        dirname = subs(dirname if dirname.endswith("/") else dirname + "/")
    return step(f"mkdir -p {dirname}", out=dirname, optional=optional, block=block)


def getenv(name: str, default: str | None = None, is_path: bool = False) -> Any:
    """The build's value of an environment variable; the calling step depends on it."""
    if not _CLIENT.active:
        value = os.getenv(name, default)
    else:
        value = _CLIENT.call("getenv", name=name, default=default)
    if is_path and value is not None:
        # As StepUp: a relative path is relative to the root; the step depends on ROOT too.
        path = str(value)
        if not os.path.isabs(path):
            path = posixpath.normpath(posixpath.join(os.environ.get("ROOT", "."), path))
            amend(env=["ROOT"])
        with subs_env_vars() as subs:
            return Path(subs(path))
    return value
