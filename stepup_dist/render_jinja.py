"""Render a Jinja2 template: the program that `render_jinja()`'s step runs.

`python3 -m stepup.core.render_jinja TEMPLATE [VARIABLES ...] OUTPUT [--mode=M] [--json=J]`:
variables come from the files (Python, JSON, TOML or YAML, see varfiles.py) and then the JSON
object. The `latex` mode (default for a `.tex` output) uses `<< >>`, `<% %>`, `<# #>` and
`%==` line statements, which leave LaTeX's braces alone. Undefined variables are errors.
The output gets the template's file mode, so a rendered script stays executable. Python
files the variable files import from the project become inputs of the step.
"""

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

import jinja2

from .api import amend
from .extapi import get_local_import_paths
from .varfiles import load_variables

__all__ = ("main", "render_jinja_file", "render_jinja_str")

MODES = ("auto", "plain", "latex")


def main(argv: Sequence[str] | None = None) -> None:
    """Render the template named on the command line."""
    args = _parse_args(argv)
    latex = args.path_out.endswith(".tex") if args.mode == "auto" else args.mode == "latex"
    dir_out = os.path.dirname(os.path.abspath(args.path_out))
    variables = load_variables(args.paths_variables, dir_out)
    # Only known once the Python variable files have run.
    imports = get_local_import_paths()
    if imports:
        amend(inp=[str(p) for p in imports])
    if args.json is not None:
        variables.update(json.loads(args.json))
    result = render_jinja_file(args.path_in, variables, latex=latex)
    with open(args.path_out, "w") as fh:
        fh.write(result)
    os.chmod(args.path_out, os.stat(args.path_in).st_mode & 0o7777)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stepup.core.render_jinja", description="Render a file with Jinja2."
    )
    parser.add_argument("path_in", help="The template.")
    parser.add_argument(
        "paths_variables",
        nargs="*",
        help="Python, JSON, TOML or YAML files with variables; later ones override earlier.",
    )
    parser.add_argument("path_out", help="The output file.")
    parser.add_argument("--mode", choices=MODES, default="auto", help="The delimiter style.")
    parser.add_argument("--json", help="Variables as a JSON object (override the files).")
    return parser.parse_args(argv)


def render_jinja_file(path: str, variables: dict[str, Any], *, latex: bool = False) -> str:
    """The template in the file `path`, rendered with `variables`."""
    with open(path) as fh:
        source = fh.read()
    return render_jinja_str(source, variables, latex=latex, name=os.fspath(path))


def render_jinja_str(
    source: str, variables: dict[str, Any], *, latex: bool = False, name: str = "<template>"
) -> str:
    """The template `source`, rendered with `variables`."""
    options: dict[str, Any] = {
        "keep_trailing_newline": True,
        "trim_blocks": True,
        "undefined": jinja2.StrictUndefined,
        "autoescape": False,
    }
    if latex:
        options.update(
            block_start_string="<%",
            block_end_string="%>",
            variable_start_string="<<",
            variable_end_string=">>",
            comment_start_string="<#",
            comment_end_string="#>",
            line_statement_prefix="%==",
        )
    template = jinja2.Environment(**options).from_string(source)
    template.filename = name
    # A dict, not keywords: a variable named `self` must not meet render()'s own parameter.
    return template.render(variables)
