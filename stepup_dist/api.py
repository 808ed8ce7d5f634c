"""The plan API: what a `plan.py` (or any step) calls to define the build.

Names and meaning follow StepUp (`stepup.core.api`): paths in `step()` are relative to its
`workdir`, which is relative to the directory of the calling script; other paths are relative
to that directory. Directories end with a slash. Each call travels over Redis to the
planner of the build and is answered synchronously, so a plan may run on any host.

Outside a build (no `STEPUP_DIST_BUILD` in the environment) the calls do nothing, as
StepUp's do, so a plan can be run by hand.
"""

import glob as _glob
import os
import posixpath
import string
import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from . import paths as _paths
from .paths import step_key

__all__ = ("StepInfo", "amend", "copy", "getenv", "glob", "mkdir", "plan", "pool", "static", "step")


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
        from .errors import UserError

        try:
            impl = self._impl_()
            reply = impl.call(method, self._to_planner(args))
        except UserError as exc:
            # No server, a refused login, a bad secret file, an earlier call of a batch
            # refused: one line, as for a plan error.
            _fail(str(exc))
        if not reply.ok:
            # A plan error: one line naming it; the planner reports it too and exits with 2.
            _fail(reply.error)
        return reply.value

    def send(self, method: str, **args: Any) -> None:
        """A call that only defines something: it travels in a batch (see CallClient)."""
        if not self.active:
            return
        from .errors import UserError

        try:
            impl = self._impl_()
            impl.send(method, self._to_planner(args))
        except UserError as exc:
            _fail(str(exc))


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


_CLIENT = _Client()


def _here() -> str:
    return os.environ.get("HERE", "./")


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
    local = _flatten(paths)
    if not local:
        return
    here = _here()
    _CLIENT.send(
        "static", paths=[_paths.join(here, p) for p in local], stats=[_stat(p) for p in local]
    )


def glob(*patterns: str, _required: bool = False) -> list[str]:
    """Declare as static every existing path matching the patterns; return the matches."""
    if not patterns:
        raise ValueError("At least one pattern is required for glob.")
    matches: list[str] = []
    for pattern in patterns:
        for match in sorted(_glob.glob(pattern, recursive=True)):
            path = match + "/" if os.path.isdir(match) and not match.endswith("/") else match
            if path not in matches:
                matches.append(path)
    if _required and not matches:
        raise FileNotFoundError(f"no paths match {', '.join(patterns)}")
    static(matches)
    return matches


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
    inp_l, env_l, out_l, vol_l = _list(inp), _list(env), _list(out), _list(vol)
    if not workdir.endswith("/"):
        workdir += "/"
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
    )
    # The planner names the step the same way (plan_calls.call_step).
    wd = _paths.norm(base)
    key = step_key(command, wd if wd.endswith("/") else wd + "/") if _CLIENT.active else "dummy:"
    return StepInfo(key, inp_l, env_l, out_l, vol_l)


def _resources(value: str | dict[str, int] | None) -> dict[str, object]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    result: dict[str, object] = {}
    for item in str(value).split(","):
        if item.strip():
            name, _, units = item.strip().partition(":")
            result[name] = int(units) if units.isdigit() else units
    return result


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
    here = _here()
    result = _CLIENT.call(
        "amend",
        inp=[_paths.join(here, p) for p in lists[0]],
        env=lists[1],
        out=[_paths.join(here, p) for p in lists[2]],
        vol=[_paths.join(here, p) for p in lists[3]],
    )
    return True if result is None else bool(result)


def plan(subdir: str, block: bool = False) -> StepInfo:
    """Run `plan.py` in a subdirectory."""
    return step("./plan.py", inp="plan.py", workdir=subdir)


def copy(src: str, dst: str, optional: bool = False, block: bool = False) -> StepInfo:
    """Add a step that copies a file; `dst` may be a directory (with a trailing slash)."""
    if dst.endswith("/"):
        dst = posixpath.join(dst, posixpath.basename(src))
    return step("cp -aT ${inp} ${out}", inp=src, out=dst)


def mkdir(dirname: str, optional: bool = False, block: bool = False) -> StepInfo:
    """Add a step that makes a directory."""
    if not dirname.endswith("/"):
        dirname += "/"
    dirname = _paths.norm(dirname)
    return step(f"mkdir -p {dirname}", out=dirname)


def getenv(name: str, default: str | None = None, is_path: bool = False) -> Any:
    """The build's value of an environment variable; the calling step depends on it."""
    if not _CLIENT.active:
        value = os.getenv(name, default)
    else:
        value = _CLIENT.call("getenv", name=name, default=default)
    if is_path and value is not None:
        from pathlib import Path

        return Path(value)
    return value
