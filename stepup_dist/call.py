"""The driver of scripts that `call()` runs: `./work.py FUNCTION [JSON | --inp=FILE]`.

A script ends with `if __name__ == "__main__": driver()`. The step that `call()` makes runs
it with the name of a function and its keyword arguments: a JSON object on the command line,
or `--inp=FILE` naming a JSON, YAML, TOML or Python file (see varfiles.py; the file becomes
an input of the step). Never pickle: the arguments are data.

The function gets the arguments it declares: an argument it does not declare is an error,
except `inp` and `out`, which `call()` always passes and many functions do not need. A
function with `**kwargs` gets them all. Arguments are converted to the parameters' type
hints (`varfiles.structure`). Without a function name, the driver prints one command line
for each function the script offers (those in `__all__`, or else the public functions the
script defines itself).
"""

import argparse
import inspect
import json
import os
import shlex
import sys
import typing
from collections.abc import Callable
from typing import Any

from .varfiles import structure

__all__ = ("driver",)


def driver() -> None:
    """Run the function that the command line names, with its arguments."""
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    if caller is None:
        raise RuntimeError("driver() must be called from a script")
    namespace = caller.f_globals
    script_path = namespace.get("__file__", sys.argv[0])
    args = _parse_args(script_path)
    if args.function is None:
        for line in command_lines(script_path, namespace):
            print(line)
    else:
        dispatch(script_path, namespace, args.function, _arguments(args))


def _parse_args(script_path: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=script_path, description="Call a function by name.")
    parser.add_argument("function", nargs="?", default=None, help="The function to call.")
    parser.add_argument(
        "json_inp", nargs="?", default=None, help="Its keyword arguments, as a JSON object."
    )
    parser.add_argument(
        "--inp",
        dest="path_inp",
        default=None,
        metavar="PATH",
        help="A JSON, YAML, TOML or Python file with its keyword arguments.",
    )
    args = parser.parse_args(argv)
    if args.json_inp is not None and args.path_inp is not None:
        parser.error("Cannot use both positional JSON and --inp.")
    return args


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    if args.json_inp is not None:
        value = json.loads(args.json_inp)
        if not isinstance(value, dict):
            raise TypeError(f"the arguments must be a JSON object, got: {args.json_inp}")
        return value
    if args.path_inp is not None:
        from .api_tools import loadns

        return vars(loadns(args.path_inp))
    return {}


def dispatch(
    script_path: str, namespace: dict[str, Any], name: str, arguments: dict[str, Any]
) -> Any:
    """Call `namespace[name]` with the `arguments` it declares, converted to its hints."""
    function = namespace.get(name)
    if function is None or not callable(function):
        raise AttributeError(f"{script_path} does not define a function '{name}'")
    params = inspect.signature(function).parameters
    hints = _hints(function)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        extra = sorted(k for k in arguments if k not in params and k not in ("inp", "out"))
        if extra:
            raise TypeError(
                f"{script_path}: function '{name}' received unexpected arguments: "
                + ", ".join(extra)
            )
        arguments = {k: v for k, v in arguments.items() if k in params}
    converted = {}
    for key, value in arguments.items():
        hint = hints.get(key)
        try:
            converted[key] = value if hint is None else structure(value, hint)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{script_path}: argument '{key}' expected {hint}, "
                f"got {type(value).__name__}: {value!r}"
            ) from exc
    return function(**converted)


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except (NameError, TypeError):
        # A hint that cannot be evaluated converts nothing, as no hint would.
        return {}


def command_lines(script_path: str, namespace: dict[str, Any]) -> list[str]:
    """One example command line for each function the script offers."""
    if "__all__" in namespace:
        names = [n for n in namespace["__all__"] if callable(namespace.get(n))]
    else:
        module = namespace.get("__name__")
        names = [
            n
            for n, f in namespace.items()
            if not n.startswith("_")
            and inspect.isfunction(f)
            and (module is None or f.__module__ == module)
        ]
    rel = os.path.relpath(script_path)
    display = rel if os.sep in rel else "./" + rel
    lines = []
    for name in names:
        params = {
            p.name: None if p.default is inspect.Parameter.empty else p.default
            for p in inspect.signature(namespace[name]).parameters.values()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }
        lines.append(f"{display} {name} {shlex.quote(json.dumps(params, default=str))}")
    return lines
