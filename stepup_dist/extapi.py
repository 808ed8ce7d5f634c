"""StepUp 4's `stepup.core.extapi`: helpers for steps that wrap other programs.

- `child_env(workdir)`: an environment with `HERE` and `ROOT` set for a child's workdir;
- `run_subprocess(cmd, ...)` and `record_subprocess(...)`: run (or report) a subprocess.
  StepUp 4 records each in its build database for archival; stepup-dist keeps no such
  record, so `record_subprocess` checks its arguments and stores nothing, and
  `run_subprocess` runs the command as StepUp's does;
- `filter_dependencies(paths)` and `get_local_import_paths(script)`: the files of the
  project among `paths` (or among the modules imported now), as `${STEPUP_PATH_FILTER}`
  says: `:`-separated `+PREFIX` (keep) and `-PREFIX` (drop) rules, first match wins,
  relative prefixes under the build's root, then everything under the root is kept and
  everything else dropped.
"""

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping

from path import Path

from .api import getenv

__all__ = (
    "DEFAULT_PATH_FILTER",
    "child_env",
    "filter_dependencies",
    "get_local_import_paths",
    "record_subprocess",
    "run_subprocess",
)

DEFAULT_PATH_FILTER = "-.venv:-venv:-.tox:-.nox:-.direnv:-.pixi:-node_modules"
"""Without `${STEPUP_PATH_FILTER}`: the folders where tools install packages are no inputs."""

_OUR_PACKAGE = os.path.dirname(os.path.realpath(__file__))


def _root() -> Path:
    return Path(os.environ.get("STEPUP_ROOT", os.getcwd())).realpath()


def child_env(workdir: str = ".", env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `env` (default: this process's) with `HERE` and `ROOT` for `workdir`."""
    result = dict(os.environ if env is None else env)
    real = Path(workdir).realpath()
    result["HERE"] = str(real.relpath(_root()))
    result["ROOT"] = str(_root().relpath(real))
    return result


def _stream(value: str | bytes | None) -> None:
    if value is not None and not isinstance(value, str | bytes):
        raise TypeError(f"stream must be str, bytes, or None, not {type(value).__name__}")


def record_subprocess(
    cmd: str,
    returncode: int,
    *,
    workdir: str = ".",
    env_overrides: dict[str, str] | None = None,
    shell: bool = False,
    stdin: str | bytes | None = None,
    stdout: str | bytes | None = None,
    stderr: str | bytes | None = None,
) -> None:
    """A subprocess that the step ran; stepup-dist keeps no archive of them (see above)."""
    for stream in (stdin, stdout, stderr):
        _stream(stream)


def _split_assignments(cmd: str) -> tuple[dict[str, str] | None, str]:
    """Leading `VAR=value` words of `cmd` (shell quoting allowed) and the rest of it."""
    words = shlex.split(cmd)
    overrides: dict[str, str] = {}
    for word in words:
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", word, re.DOTALL)
        if match is None:
            break
        overrides[match.group(1)] = match.group(2)
    rest = shlex.join(words[len(overrides) :])
    return (overrides or None), rest


def run_subprocess(
    cmd: str,
    *,
    workdir: str = ".",
    stdin: str | bytes | None = None,
    shell: bool = False,
    check: bool = True,
    text: bool | None = None,
) -> subprocess.CompletedProcess:
    """Run `cmd` in `workdir` and capture its output, as StepUp's `run_subprocess` does.

    Without `shell`, leading `VAR=value` words set variables of the child and the rest is
    split with shlex. Text mode follows `stdin` (str: text, bytes: binary) unless `text`
    says. With `check`, a failure prints the child's output and raises CalledProcessError.
    """
    _stream(stdin)
    if isinstance(stdin, str) and text is False:
        raise TypeError("stdin must be bytes when text=False")
    if isinstance(stdin, bytes) and text is True:
        raise TypeError("stdin must be str when text=True")
    text_mode = (not isinstance(stdin, bytes)) if text is None else text
    env = child_env(workdir)
    argv: str | list[str] = cmd
    if not shell:
        overrides, rest = _split_assignments(cmd)
        env.update(overrides or {})
        argv = shlex.split(rest)
    cp = subprocess.run(
        argv,
        cwd=workdir,
        env=env,
        shell=shell,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=text_mode,
        errors="ignore" if text_mode else None,
        check=False,
    )
    record_subprocess(cmd, cp.returncode, workdir=workdir, shell=shell, stdin=stdin)
    if check and cp.returncode != 0:
        for data, sink in ((cp.stdout, sys.stdout), (cp.stderr, sys.stderr)):
            if data:
                sink.write(data if text_mode else data.decode(errors="replace"))
        raise subprocess.CalledProcessError(cp.returncode, cmd, cp.stdout, cp.stderr)
    return cp


def filter_dependencies(paths: Iterable[str | os.PathLike[str]]) -> set[Path]:
    """The `paths` that `${STEPUP_PATH_FILTER}` keeps, relative to the current directory.

    Reading the variable makes the calling step depend on it.
    """
    spec = getenv("STEPUP_PATH_FILTER", DEFAULT_PATH_FILTER) or ""
    root = _root()
    rules = []
    for item in [*str(spec).split(":"), "+.", "-/"]:
        if item == "":
            continue
        if item[0] not in "+-":
            raise ValueError(f"Invalid filter item: {item}")
        prefix = Path(item[1:])
        if not prefix.isabs():
            prefix = (root / prefix).realpath()
        rules.append((str(prefix), item[0] == "+"))
    kept = set()
    here = Path.cwd().realpath()
    for path in paths:
        real = Path(path).realpath()
        for start, keep in rules:
            if real.startswith(start):
                if keep:
                    kept.add(real.relpath(here))
                break
    return kept


def _module_files() -> Iterator[str]:
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and not path.startswith("<") and os.path.isfile(path):
            if os.path.realpath(path).startswith(_OUR_PACKAGE + os.sep):
                continue  # stepup-dist itself, when it is installed in the project
            yield os.path.normpath(path)


def get_local_import_paths(script_path: str | os.PathLike[str] | None = None) -> list[Path]:
    """The project's files among the modules imported now (but `script_path`), sorted."""
    found = filter_dependencies(_module_files())
    if script_path is not None:
        found.discard(Path(os.fspath(script_path)).normpath())
    return sorted(found)
