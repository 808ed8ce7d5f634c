"""StepUp 4's composite plan functions: `call`, `script`, `render_jinja`, `loadns`, `dumpns`.

Each makes its step through the API's step definition (`api._define`), so it travels to the
planner as any step does, its command as written (JSON arguments may hold a `$`). The names
come from StepUp 4.0.3's `stepup.core.api`; `script` also keeps StepUp 1's form.

`script()` has two forms:

- StepUp 1: `script(executable, workdir="./", optional=False, block=False)`, with `workdir`
  (and `optional`, `block`) allowed as positional arguments;
- StepUp 4: `script(executable, *, step_info=None, inp=(), env=(), out=(), vol=(),
  workdir=".", optional=False, resources=None, duration=None)`.

A positional argument after `executable`, or `block=`, makes it the 1.x form; any of
`step_info`, `inp`, `env`, `out`, `vol`, `resources` or `duration` the 4.x form; mixing the
two is an error. A call with neither (`script("work.py")`, `workdir=`, `optional=`) takes
the form of the plan that makes it, as the API's other ambiguous calls do (`api._is_v4`):
4.x once the plan imported a name that only StepUp 4 has (`run`, `call`, ...) or made a
call only StepUp 4 has, 1.x otherwise. Both forms make the planning step
`./work.py plan [--step-info=FILE] [--optional]`; in the 4.x form it gets
`STEPUP_DIST_API=4` in its environment, as every step defined in StepUp 4's form does, which
tells the script's `driver()` to define the run steps as StepUp 4 does (see script.py).
"""

import json
import keyword
import os
import posixpath
import shlex
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from .api import (
    PathError,
    StepInfo,
    StepUpError,
    _check_duration,
    _define,
    _is_v4,
    _mark_v4,
    amend,
    subs_env_vars,
)
from .varfiles import FORMATS, dump_variables, load_variables, unstructure

__all__ = ("call", "dumpns", "loadns", "render_jinja", "script")

MAX_INLINE_ARGS = 128 * 1024
"""Bytes of JSON that `call()` puts on the command line; more needs `args_file=`."""

RENDER_JINJA_MODES = ("auto", "plain", "latex")


def loadns(
    *paths_variables: str | os.PathLike[str], dir_out: str | None = None, do_amend: bool = True
) -> SimpleNamespace:
    """Load variables from Python, JSON, TOML or YAML files into a namespace.

    Later files override earlier ones. A `path.Path` defined in a Python file is relative to
    that file's folder; it comes back relative to `dir_out` (default: the current directory).
    With `do_amend`, the calling step gets the files as inputs.
    """
    _mark_v4()
    with subs_env_vars() as subs:
        local = [str(subs(os.fspath(p))) for p in paths_variables]
    for path in local:
        if posixpath.splitext(path)[1] not in FORMATS:
            raise StepUpError(f"unsupported variable file format: {path}")
    variables = load_variables(local, dir_out)
    if do_amend:
        amend(inp=local)
    return SimpleNamespace(**variables)


def dumpns(
    path: str | os.PathLike[str],
    data: dict[str, Any] | SimpleNamespace,
    *,
    do_amend: bool = True,
) -> None:
    """Write variables to a JSON or YAML file (by its suffix); with `do_amend`, the calling
    step gets the file as an output."""
    _mark_v4()
    with subs_env_vars() as subs:
        local = str(subs(os.fspath(path)))
    _dumpns(local, data, do_amend=do_amend)


def _dumpns(path: str, data: dict[str, Any] | SimpleNamespace, *, do_amend: bool) -> None:
    if posixpath.splitext(path)[1] not in (".json", ".yaml", ".yml"):
        raise StepUpError(f"dumpns: unsupported file format: {path} (use .json, .yaml or .yml)")
    if do_amend:
        amend(out=[path])
    dump_variables(path, data)


def _plain_list(arg: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str]:
    if isinstance(arg, str | os.PathLike):
        return [os.fspath(arg)]
    return [os.fspath(a) for a in arg]


def _local_executable(executable: str) -> str:
    """`executable` normalized with its leading `./` kept (it marks a local file)."""
    if posixpath.isabs(executable):
        raise PathError(f"executable must not be an absolute path, got: {executable!r}")
    norm = posixpath.normpath(executable)
    if executable.startswith("./") and not norm.startswith("../"):
        return "./" + norm
    return norm


def _command_word(executable: str) -> str:
    """How a shell runs the local `executable`: with `./` unless it has it (or `../`)."""
    local = executable if executable.startswith(("./", "../")) else "./" + executable
    return shlex.quote(local)


def _verbatim(command: str) -> str:
    """`command` as `step()` must get it to run it unchanged.

    `api.step` fills in StepUp 1's `${inp}`/`${out}`/`${vol}` with string.Template; the
    commands made here (JSON arguments above all) may hold a `$` that must stay."""
    return command.replace("$", "$$")


def _step(
    command: str,
    *,
    inp: list[str],
    env: list[str] = (),  # type: ignore[assignment]
    out: list[str] = (),  # type: ignore[assignment]
    vol: list[str] = (),  # type: ignore[assignment]
    workdir: str = "./",
    optional: bool = False,
    resources: dict[str, int] | str | None = None,
    duration: float | None = None,
    v4: bool = True,
    env_overrides: dict[str, str] | None = None,
) -> StepInfo:
    """Define a step whose command runs as written, in StepUp 4's form unless `v4=False`."""
    if v4:
        _mark_v4()
    return _define(
        _verbatim(command),
        inp=inp,
        env=env,
        out=out,
        vol=vol,
        workdir=workdir,
        optional=optional,
        pool=None,
        resources=resources,
        v4=v4,
        env_overrides=env_overrides,
        duration=_check_duration(duration),
    )


def call(
    executable: str | os.PathLike[str],
    function: str,
    /,
    *,
    inp: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] = (),
    env: Iterable[str] | str = (),
    out: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] = (),
    vol: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] = (),
    workdir: str | os.PathLike[str] = ".",
    optional: bool = False,
    planning: bool = False,
    resources: dict[str, int] | str | None = None,
    args_file: str | os.PathLike[str] | None = None,
    duration: float | None = None,
    **kwargs: Any,
) -> StepInfo:
    """Add a step that calls `function` of `executable` (a script ending with
    `stepup.core.call.driver()`) with `kwargs`, `inp` and `out` as keyword arguments.

    The arguments travel as JSON: on the command line
    (`./work.py run '{"inp": [...], "out": [...]}'`), or, with `args_file=` (`.json`,
    `.yaml`, `.yml`), in a file that this step writes (an output of the caller, an input of
    the called step) and that the command names as `--inp=FILE`. `executable` and the paths
    are relative to `workdir`, where the step runs. `planning=True` marks a step whose
    function defines more steps; stepup-dist runs it as any other step.
    """
    if optional and planning:
        raise StepUpError("optional and planning are mutually exclusive")
    exe = _local_executable(os.fspath(executable))
    if "/" not in exe:
        raise PathError(
            f"executable must contain a path separator (e.g. './script.py'), got: {exe!r}"
        )
    if not (function.isidentifier() and not keyword.iskeyword(function)):
        raise StepUpError(f"function must be a valid Python function name, got: {function!r}")
    _check_duration(duration)
    _mark_v4()
    with subs_env_vars() as subs:
        wd = str(subs(os.fspath(workdir)))
        inp_l = [str(subs(p, wd)) for p in _plain_list(inp)]
        out_l = [str(subs(p, wd)) for p in _plain_list(out)]
        args_path = None if args_file is None else str(subs(os.fspath(args_file), wd))
    forwarded = dict(kwargs)
    if inp_l:
        forwarded["inp"] = inp_l
    if out_l:
        forwarded["out"] = out_l
    step_inp = [exe, *inp_l]
    if args_path is None:
        text = json.dumps(unstructure(forwarded))
        if len(text.encode()) > MAX_INLINE_ARGS:
            raise StepUpError(
                "serialized call arguments exceed 128 KiB; pass args_file= to use a file instead"
            )
        command = f"{shlex.quote(exe)} {function} {shlex.quote(text)}"
    else:
        # The step reads the file in its workdir; this process writes it from here.
        _dumpns(posixpath.normpath(posixpath.join(wd, args_path)), forwarded, do_amend=True)
        command = f"{shlex.quote(exe)} {function} --inp={shlex.quote(args_path)}"
        step_inp.append(args_path)
    return _step(
        command,
        inp=step_inp,
        env=_plain_list(env),
        out=out_l,
        vol=_plain_list(vol),
        workdir=wd,
        optional=optional,
        resources=resources,
        duration=duration,
    )


_SCRIPT_4X = ("step_info", "inp", "env", "out", "vol", "resources", "duration")


def script(
    executable: str | os.PathLike[str],
    *legacy: Any,
    workdir: str | os.PathLike[str] | None = None,
    optional: bool | None = None,
    block: bool | None = None,
    step_info: str | os.PathLike[str] | None = None,
    inp: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] = (),
    env: Iterable[str] | str = (),
    out: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] = (),
    vol: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] = (),
    resources: dict[str, int] | str | None = None,
    duration: float | None = None,
) -> StepInfo:
    """Add a step that runs `./executable plan` in `workdir`: the script (ending with
    `stepup.core.script.driver()`) then defines its run steps.

    StepUp 1's form is `script(executable, workdir="./", optional=False, block=False)`;
    StepUp 4's adds the keywords `step_info` (a JSON file, relative to `workdir`, listing
    the run steps), `inp`, `env`, `out`, `vol` (of the planning step), `resources` and
    `duration`. See the module docstring for how the forms are told apart.
    """
    if len(legacy) > 3:
        raise TypeError(f"script() takes at most 4 positional arguments ({len(legacy) + 1} given)")
    given_4x = [
        name
        for name, value in zip(
            _SCRIPT_4X, (step_info, inp, env, out, vol, resources, duration), strict=True
        )
        if value not in (None, ())
    ]
    form_1x = bool(legacy) or block is not None
    if form_1x and given_4x:
        raise TypeError(
            "script(): StepUp 1's form (positional workdir/optional/block, or block=) cannot "
            f"be mixed with StepUp 4's keywords ({', '.join(given_4x)})"
        )
    named: dict[str, Any] = {"workdir": workdir, "optional": optional, "block": block}
    for name, value in zip(named, legacy, strict=False):
        if named[name] is not None:
            raise TypeError(f"script() got multiple values for argument {name!r}")
        named[name] = value
    _check_duration(duration)
    # An ambiguous call takes the form of the plan that makes it (api._is_v4).
    v4 = bool(given_4x) or (not form_1x and _is_v4(1))
    with subs_env_vars() as subs:
        exe = str(subs(_local_executable(os.fspath(executable))))
        wd = str(subs(os.fspath(named["workdir"] or "./")))
        info_path = None if step_info is None else str(subs(os.fspath(step_info), wd))
    command = _command_word(exe) + " plan"
    out_l = _plain_list(out)
    if info_path is not None:
        command += " --step-info=" + shlex.quote(info_path)
        out_l.append(info_path)
    if named["optional"]:
        command += " --optional"
    return _step(
        command,
        inp=[*_plain_list(inp), exe],
        env=_plain_list(env),
        out=out_l,
        vol=_plain_list(vol),
        workdir=wd,
        resources=resources,
        duration=duration,
        # In StepUp 4's form the step gets STEPUP_DIST_API=4 (api._define), which tells the
        # script's driver to define the run steps as StepUp 4 does (script.py).
        v4=v4,
    )


def render_jinja(
    *args: str | os.PathLike[str] | dict[str, Any],
    mode: str = "auto",
    optional: bool = False,
    resources: dict[str, int] | str | None = None,
    duration: float | None = None,
) -> StepInfo:
    """Add a step that renders a Jinja2 template: `render_jinja(template, *variables, dest)`.

    `variables` are Python, JSON, TOML or YAML files (inputs of the step) and dicts (passed
    as JSON on the command line, overriding the files); `dest` is a file, or a folder (with a
    trailing slash) to put the template's name in. `mode="latex"` (the default for a `.tex`
    output) uses `<< >>`, `<% %>` and `<# #>` as delimiters. The step runs
    `python3 -m stepup.core.render_jinja ...` on a worker.
    """
    if len(args) < 3:
        raise TypeError(
            "At least three positional arguments must be given: "
            "the template, at least one file or dict with variables, and the destination."
        )
    template, dest = args[0], args[-1]
    if not isinstance(template, str | os.PathLike):
        raise TypeError("The template argument must be a path.")
    if not isinstance(dest, str | os.PathLike):
        raise TypeError("The destination argument must be a path.")
    variables: dict[str, Any] = {}
    paths_variables: list[str] = []
    for arg in args[1:-1]:
        if isinstance(arg, dict):
            variables.update(arg)
        elif isinstance(arg, str | os.PathLike):
            paths_variables.append(os.fspath(arg))
        else:
            raise TypeError("The variables arguments must be paths or dictionaries.")
    if mode not in RENDER_JINJA_MODES:
        modes = ", ".join(repr(known) for known in RENDER_JINJA_MODES)
        raise StepUpError(f"Unsupported mode {mode!r}. Must be one of {modes}")
    if not paths_variables and not variables:
        raise StepUpError("At least one file with variable definitions needed.")
    _check_duration(duration)
    _mark_v4()
    with subs_env_vars() as subs:
        template_l = str(subs(os.fspath(template)))
        dest_s = os.fspath(dest)
        dest_l = str(subs(dest_s))
        paths_l = [str(subs(p)) for p in paths_variables]
    if dest_s.endswith("/") and not dest_l.endswith("/"):
        dest_l += "/"
    path_out = _path_out(template_l, dest_l)
    paths_inp = [template_l, *paths_l]
    words = ["python3 -m stepup.core.render_jinja", shlex.join(paths_inp), shlex.quote(path_out)]
    if mode != "auto":
        words.append(f"--mode={mode}")
    if variables:
        words.append("--json=" + shlex.quote(json.dumps(unstructure(variables))))
    return _step(
        " ".join(words),
        inp=paths_inp,
        out=[path_out],
        optional=optional,
        resources=resources,
        duration=duration,
    )


def _path_out(path_in: str, dest: str) -> str:
    """The rendered file: `dest`, or the template's name in the folder `dest/`."""
    if dest.endswith("/"):
        base = posixpath.basename(path_in)
        path_out = base if dest == "./" else posixpath.join(dest, base)
    else:
        path_out = dest
    if posixpath.normpath(path_out) == posixpath.normpath(path_in):
        raise PathError(f"The output path cannot equal the input path: {path_out}")
    return path_out
