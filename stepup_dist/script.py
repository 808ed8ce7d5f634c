"""Scripts that plan their own runs: `driver()`, the `./script plan` / `./script run` protocol.

A plan calls `script("work.py")`: a step runs `./work.py plan` in the script's folder. The
script ends with `driver()`, which reads the command line:

- `plan [--step-info=FILE] [--optional]`: define the run steps. A script with `info()` gets
  one step, `./work.py run`; one with `CASE_FMT`, `cases()` and `case_info(...)` gets one
  step per case, with the case formatted by `CASE_FMT`. The `info` dict names `static`,
  `inp` and `out` paths.
- `cases`: print the run commands.
- `run [ARGS]`: call `run()` with the keys of the info dict that it takes as parameters.

StepUp 1 and StepUp 4 share this protocol and differ in the run steps that `plan` defines.
The driver follows StepUp 4 when the planning command has `--step-info` or its environment
has `STEPUP_DIST_API=4` (which the API gives every step defined in StepUp 4's form, the
planning step of `script()`'s 4.x form among them, see api_tools.py), and StepUp 1
otherwise:

- StepUp 1: a case runs as `./work.py run -- 'ARGS'`; the info dict may redirect `stdout`
  and `stderr` to files (outputs of the step); the Python files the script imports from the
  project while planning are inputs of the planning step and of every run step.
- StepUp 4: a case runs as `./work.py run ARGS` (shell-quoted, `--` only before a leading
  `-`) and has the script (`./work.py`) as first input; `stdout` and `stderr` are info
  keys like any other; with `--step-info`, the run steps are written to that file as JSON.

In both, `run` declares the project's Python files that the script has imported by the end
of the run as inputs of its step (StepUp 4 does so for every Python step it runs), so a run
step that imports a helper only inside `run()` runs again when the helper changes.

On a cluster the planning step is a step like any other: a worker runs it, and the steps it
defines reach the planner as API calls.
"""

import argparse
import inspect
import json
import os
import re
import shlex
import string
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ("driver",)

_OUR_PACKAGE = str(Path(__file__).resolve().parent)


def driver(obj: Any = None) -> None:
    """Plan or run the calling script, as its command line says (`plan`, `cases`, `run`)."""
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    if caller is None:
        raise RuntimeError("driver() must be called from a script")
    script_path = os.path.relpath(caller.f_globals["__file__"])
    if obj is None:
        obj = sys.modules.get(caller.f_globals["__name__"])
        if obj is None:
            raise ValueError("driver() must be called from a module")
    args = _parse_args(script_path)
    wrapper = _Script(obj, script_path)
    if args.cmd == "plan" and (args.step_info or _api_form() == "4"):
        _plan_4x(wrapper, args.optional, args.step_info)
    elif args.cmd == "plan":
        _plan(wrapper, args.optional)
    elif args.cmd == "cases":
        for command in wrapper.commands():
            print(command)
    else:
        wrapper.run(args.string)
        _amend_imports(script_path)


def _api_form() -> str | None:
    """`4` when the planning step was defined in StepUp 4's form (api.API_VAR)."""
    from .api import API_VAR

    return os.environ.get(API_VAR)


def _parse_args(script_path: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=script_path, description="A StepUp-style script.")
    commands = parser.add_subparsers(dest="cmd", required=True)
    plan = commands.add_parser("plan", help="Define the steps that run the script.")
    plan.add_argument(
        "--step-info", help="Write the run steps to this JSON file (StepUp 4's protocol)."
    )
    plan.add_argument("-o", "--optional", action="store_true", help="Make the run steps optional.")
    commands.add_parser("cases", help="Print every way to run the script.")
    run = commands.add_parser("run", help="Run the script (for one case).")
    run.add_argument("string", nargs="?", default="", help="The case, as CASE_FMT formats it.")
    return parser.parse_args()


class _Script:
    """The functions a script defines for the protocol: `info` and/or the case functions."""

    def __init__(self, obj: Any, path: str):
        self.obj = obj
        self.path = path
        self.single = getattr(obj, "info", None) is not None
        case_names = ("CASE_FMT", "cases", "case_info")
        present = [getattr(obj, name, None) is not None for name in case_names]
        if any(present) and not all(present):
            raise TypeError(f"{path} must define all or none of {', '.join(case_names)}")
        self.multi = all(present)
        if not callable(getattr(obj, "run", None)):
            raise TypeError(f"Script {path} has no run function.")
        if not (self.single or self.multi):
            raise TypeError(f"The script {path} has neither info nor case_info.")

    def cases(self) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        for case in self.obj.cases():
            if isinstance(case, dict):
                yield [], case
            elif (
                isinstance(case, tuple)
                and len(case) == 2
                and isinstance(case[0], list | tuple)
                and isinstance(case[1], dict)
            ):
                yield list(case[0]), case[1]
            elif isinstance(case, list | tuple):
                yield list(case), {}
            else:
                yield [case], {}

    def info(self, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> dict:
        name = "info" if args is None else "case_info"
        info = self.obj.info() if args is None else self.obj.case_info(*args, **(kwargs or {}))
        if not isinstance(info, dict) or not all(isinstance(k, str) for k in info):
            raise TypeError(f"{name} in {self.path} must return a dict with string keys.")
        return info

    @property
    def exe(self) -> str:
        """The script as the shell runs it: `./work.py`, quoted when the name needs it."""
        return shlex.quote(f"./{self.path}")

    def commands(self) -> Iterator[str]:
        if self.single:
            yield f"{self.exe} run"
        if self.multi:
            for args, kwargs in self.cases():
                yield f"{self.exe} run -- '{self.obj.CASE_FMT.format(*args, **kwargs)}'"

    def run(self, argstr: str) -> None:
        if argstr == "":
            if not self.single:
                raise RuntimeError(f"Script has no info function: {self.path}")
            info = self.info()
        else:
            if not self.multi:
                raise RuntimeError(f"Script has no case_info function: {self.path}")
            args, kwargs = parse_case(self.obj.CASE_FMT, argstr)
            info = self.info(args, kwargs)
        params = inspect.signature(self.obj.run).parameters
        self.obj.run(**{k: v for k, v in info.items() if k in params})


def _plan(script: _Script, optional: bool) -> None:
    from .api import amend, static, step

    imports = _local_imports(script.path)
    if not amend(inp=imports):
        return
    plans: list[tuple[str, dict]] = []
    if script.single:
        plans.append((f"{script.exe} run", script.info()))
    if script.multi:
        cases = list(script.cases())
        # Modules imported while listing the cases are inputs of this planning step too.
        if not amend(inp=_local_imports(script.path)):
            return
        for args, kwargs in cases:
            argstr = script.obj.CASE_FMT.format(*args, **kwargs)
            plans.append((f"{script.exe} run -- '{argstr}'", script.info(args, kwargs)))
    for command, info in plans:
        static(*_paths(info, "static", script.path))
        inp = [*_paths(info, "inp", script.path), *imports, script.path]
        out = _paths(info, "out", script.path)
        step(_redirect(command, info, out, script.path), inp=inp, out=out, optional=optional)


def _plan_4x(script: _Script, optional: bool, step_info: str | None) -> None:
    """StepUp 4's run steps: `./work.py run ARGS` with the script as first input."""
    from .api import static
    from .api_tools import _step

    plans: list[tuple[str, dict]] = []
    if script.single:
        plans.append((f"{script.exe} run", script.info()))
    if script.multi:
        for args, kwargs in list(script.cases()):
            argstr = shlex.quote(script.obj.CASE_FMT.format(*args, **kwargs))
            if argstr.startswith("-"):
                argstr = f"-- {argstr}"
            plans.append((f"{script.exe} run {argstr}", script.info(args, kwargs)))
    root = os.path.realpath(os.environ.get("STEPUP_ROOT", os.getcwd()))
    workdir = os.path.relpath(os.path.realpath(os.getcwd()), root)
    infos = []
    for command, info in plans:
        static(*_paths(info, "static", script.path))
        inp = [f"./{script.path}", *_paths(info, "inp", script.path)]
        out = _paths(info, "out", script.path)
        _step(command, inp=inp, out=out, optional=optional)
        infos.append(
            {
                "command": command,
                "inp": sorted(inp),
                "env": [],
                "out": sorted(out),
                "vol": [],
                "workdir": workdir,
            }
        )
    if step_info is not None:
        with open(step_info, "w") as fh:
            json.dump(infos[0] if script.single and not script.multi else infos, fh, indent=2)
            fh.write("\n")


def _amend_imports(script_path: str) -> None:
    """The project's Python files imported by now are inputs of this run step."""
    if "STEPUP_DIST_BUILD" not in os.environ:
        return
    from .api import amend
    from .extapi import get_local_import_paths

    imports = [str(p) for p in get_local_import_paths(script_path)]
    if imports:
        amend(inp=imports)


def _paths(info: dict, name: str, script_path: str) -> list[str]:
    paths = info.get(name, [])
    if isinstance(paths, str):
        return [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise TypeError(f"{name} is not a list of strings in the info of {script_path}")
    return list(paths)


def _redirect(command: str, info: dict, out: list[str], script_path: str) -> str:
    """The command with stdout and stderr sent where the info says; those files are outputs."""
    stdout, stderr = info.get("stdout"), info.get("stderr")
    for name, value in (("stdout", stdout), ("stderr", stderr)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} is not a string (or None) in the info of {script_path}")
    if stdout is not None:
        command += f" &> {stdout}" if stderr == stdout else f" > {stdout}"
        if stdout != "/dev/null":
            out.append(stdout)
    if stderr is not None and stderr != stdout:
        command += f" 2> {stderr}"
        if stderr != "/dev/null":
            out.append(stderr)
    return command


def _local_imports(script_path: str) -> list[str]:
    """Python files of the project (under STEPUP_ROOT) that are imported now, but the script."""
    root = os.path.realpath(os.environ.get("STEPUP_ROOT", os.getcwd()))
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        real = os.path.realpath(path)
        if real.startswith(root + os.sep) and not real.startswith(_OUR_PACKAGE + os.sep):
            found.add(os.path.relpath(path))
    found.discard(os.path.normpath(script_path))
    return sorted(found)


_FLOAT = r"[-+]?\s*(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?|[-+]?(?:nan|inf)"
_INT = r"[-+]?\s*\d+"
_TYPES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "d": (_INT, lambda s: int(s.replace(" ", ""))),
    "n": (_INT, lambda s: int(s.replace(" ", ""))),
    "b": (r"[-+]?[01]+", lambda s: int(s, 2)),
    "o": (r"[-+]?[0-7]+", lambda s: int(s, 8)),
    "x": (r"[-+]?[0-9a-f]+", lambda s: int(s, 16)),
    "X": (r"[-+]?[0-9A-F]+", lambda s: int(s, 16)),
    "f": (_FLOAT, lambda s: float(s.replace(" ", ""))),
    "F": (_FLOAT, lambda s: float(s.replace(" ", ""))),
    "e": (_FLOAT, lambda s: float(s.replace(" ", ""))),
    "E": (_FLOAT, lambda s: float(s.replace(" ", ""))),
    "g": (_FLOAT, lambda s: float(s.replace(" ", ""))),
    "G": (_FLOAT, lambda s: float(s.replace(" ", ""))),
    "%": (_FLOAT, lambda s: float(s.replace(" ", "").rstrip("%")) / 100),
}


def parse_case(fmt: str, text: str) -> tuple[list[Any], dict[str, Any]]:
    """The arguments that `fmt.format(*args, **kwargs)` turned into `text` (its inverse).

    The type of each field comes from its format spec (`d` an int, `f`, `e`, `g` a float,
    anything else a string).
    """
    regex, converters = [], []
    auto = 0
    for literal, field, spec, _conversion in string.Formatter().parse(fmt):
        regex.append(re.escape(literal))
        if field is None:
            continue
        if field == "":
            key: int | str = auto
            auto += 1
        else:
            key = int(field) if field.isdigit() else field
        kind = spec[-1] if spec else "s"
        pattern, convert = _TYPES.get(kind, (r".+?", str))
        regex.append(f"({pattern})")
        converters.append((key, convert))
    match = re.fullmatch("".join(regex), text)
    if match is None:
        raise ValueError(f"Could not parse string '{text}' with CASE_FMT '{fmt}'.")
    positional: dict[int, Any] = {}
    named: dict[str, Any] = {}
    for (key, convert), value in zip(converters, match.groups(), strict=True):
        if isinstance(key, int):
            positional[key] = convert(value)
        else:
            named[key] = convert(value)
    return [positional[i] for i in sorted(positional)], named
