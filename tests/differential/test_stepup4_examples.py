"""StepUp 4's example plans that stepup-dist runs as StepUp 4.0.3 does stay that way.

`stepup4_examples.py` runs each of StepUp 4's example plans under StepUp 4.0.3 and under
stepup-dist and compares what they leave; run as a script, it prints the count line and the
causes of the differences. The examples come from a clone of StepUp's repository, which is
not on every machine (not in CI, which reaches package registries only): without it these
tests skip, saying why, and the golden 4.x examples (`tests/examples/v4_*`) carry the checking.

`SAME` lists the examples that were the same when the list was last updated: each must stay
the same. The tests of the tool itself (selection, causes, count line) need no StepUp.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.differential.stepup4_examples import (
    Example,
    Reference4,
    Unavailable,
    _agree,
    _main_sh_builds_once_as_is,
    _remove_ignored,
    cause,
    cause_table,
    compare,
    count_line,
    examples,
    imported_names,
    name_table,
    reference4,
    select,
)
from tests.differential.stepup_cases import Listing

SAME: tuple[str, ...] = (
    "amend",
    "amend_missing_inp",
    "call_args_file_json",
    "call_args_file_no_ext",
    "call_list",
    "call_resources",
    "call_restart_change_args_file",
    "call_restart_change_kwargs",
    "clean_after",
    "clean_dir",
    "command_callable",
    "docs/advanced_topics/blocked_steps",
    "docs/advanced_topics/build_targets",
    "docs/advanced_topics/cyclic_dependencies",
    "docs/advanced_topics/duration_and_hold",
    "docs/advanced_topics/dynamic_dependencies",
    "docs/advanced_topics/dynamic_static_inputs",
    "docs/advanced_topics/environment_variables",
    "docs/advanced_topics/optional_steps",
    "docs/advanced_topics/render_jinja",
    "docs/advanced_topics/resources",
    "docs/advanced_topics/variable_substitution",
    "docs/advanced_topics/volatile_outputs",
    "docs/deprecated/script_multiple",
    "docs/deprecated/script_single",
    "docs/getting_started/call",
    "docs/getting_started/copy",
    "docs/getting_started/distributed_plans",
    "docs/getting_started/distributed_plans/sub",
    "docs/getting_started/first_runpy",
    "docs/getting_started/first_step",
    "docs/getting_started/glob",
    "docs/getting_started/glob_conditional",
    "docs/getting_started/load_namespace",
    "docs/getting_started/named_glob",
    "docs/getting_started/no_rules",
    "docs/getting_started/static_files",
    "docs/getting_started/static_patterns",
    "docs/getting_started/workdir",
    "error_amend_while_holding",
    "get_info",
    "glob_dir_parent_of_static",
    "glob_justified_late",
    "glob_overlapping",
    "hold_nested",
    "plan_inp",
    "record_subprocess",
    "record_subprocess_shell",
    "render_jinja_dict",
    "render_jinja_json",
    "script_cases",
    "script_cases_settings",
    "subdir",
)
"""Examples that stepup-dist ran as StepUp 4.0.3 did when this list was last updated: up to
two per name of the API that they import, the documentation's examples, and a few that fail
alike under both tools (`python tests/differential/stepup4_examples.py` lists them all)."""


@pytest.fixture(scope="session")
def stepup4() -> Reference4:
    try:
        return reference4()
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def by_name(stepup4: Reference4) -> dict[str, Example]:
    return {e.name: e for e in examples(stepup4)}


def test_the_examples_are_found(by_name: dict[str, Example]) -> None:
    assert len(by_name) > 100
    for example in by_name.values():
        assert (example.path / "plan.py").is_file()


@pytest.mark.parametrize("name", SAME)
def test_example_stays_the_same(
    by_name: dict[str, Example],
    stepup4: Reference4,
    name: str,
    record_property: Callable[[str, object], None],
) -> None:
    if name not in by_name:
        pytest.skip(f"{name} is not among this clone's examples")
    expected, got, unstable = compare(stepup4, by_name[name])
    if unstable:
        pytest.skip(f"{name} is left out: {unstable}")
    same = _agree(expected, got)
    record_property("stepup4_example", "same" if same else "different")
    assert same, f"{name}: {cause(expected, got)}\n{expected.diff(got)}\n{got.output}"


def _main_sh(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "main.sh"
    path.write_text("#!/usr/bin/env -S bash -x\nsource ../example.rc\n" + text)
    return path


def test_an_example_builds_once_on_the_files_as_they_are(tmp_path: Path) -> None:
    assert _main_sh_builds_once_as_is(_main_sh(tmp_path, "# run\nsb -j 1 -w &\nstepup join\n"))
    assert not _main_sh_builds_once_as_is(_main_sh(tmp_path, "echo x > a.txt\nsb -j 1 &\n"))
    assert not _main_sh_builds_once_as_is(_main_sh(tmp_path, "sb &\nwait\nsb &\n"))
    assert not _main_sh_builds_once_as_is(_main_sh(tmp_path, "stepup clean .\n"))


def test_select_takes_tests_examples_and_docs_but_the_docs_root(tmp_path: Path) -> None:
    for folder, main in [("tests/examples/ok", "sb\n"), ("tests/examples/twice", "sb\nsb\n")]:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "plan.py").write_text("")
        _main_sh(tmp_path / folder, main)
    for folder in ["docs", "docs/a/b"]:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "plan.py").write_text("")
    assert [e.name for e in select(tmp_path)] == ["ok", "docs/a/b"]


def test_what_gitignore_lists_is_removed_first(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text(".stepup/\ncurrent_*\n# a comment\nout.txt\n")
    for name in ["current_a.txt", "out.txt", "keep.txt", ".stepup/x"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    _remove_ignored(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", "keep.txt"]


def test_the_cause_is_stepup_dist_s_first_error_line() -> None:
    stepup = Listing(True, {"a.txt": "a"})
    failed = Listing(
        False,
        {},
        "FAIL │ ./plan.py  [vm]\nTraceback (most recent call last):\n"
        "ImportError: cannot import name 'run' from 'stepup.core.api' (/x/api.py)\n",
    )
    assert cause(stepup, failed) == "ImportError: cannot import name 'run' from 'stepup.core.api'"
    assert cause(stepup, Listing(False, {}, " ERROR │ no plan\n  STUCK │ x\n")) == "ERROR no plan"
    assert cause(stepup, Listing(True, {})) == "both succeeded, stepup-dist did not make a.txt"
    assert cause(stepup, Listing(True, {"a.txt": "b"})) == (
        "both succeeded, other content in a.txt"
    )
    only = cause(Listing(False, {}, "ValueError: no"), Listing(True, {}))
    assert only == "only StepUp failed: ValueError: no"


def test_the_cause_table_counts_and_names() -> None:
    table = cause_table({"a": "X", "b": "X", "c": "Y", "d": "X", "e": "X"})
    assert table.splitlines() == ["   4  X", "        (a, b, d, +1)", "   1  Y", "        (c)"]


def test_count_line() -> None:
    assert count_line(42, 152) == "StepUp 4.0.3 examples: 42 of 152 the same"
    assert count_line(1, 2, 1).endswith(", 1 left out (two StepUp runs disagree)")


def test_names_imported_and_their_table(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "plan.py").write_text("from stepup.core.api import (\n run,\n static)\n")
    (tmp_path / "a" / "work.py").write_text("from stepup.core.call import driver\n")
    (tmp_path / "b" / "plan.py").write_text("from stepup.core.api import run\nx = (\n")
    (tmp_path / "b" / "w.py").write_text("import os\nfrom stepup.core.api import copy\n")
    a, b = Example("a", tmp_path / "a"), Example("b", tmp_path / "b")
    assert imported_names(a) == {"run", "static", "stepup.core.call"}
    assert imported_names(b) == {"copy"}  # plan.py does not parse
    table = name_table([a, b], {"a"})
    assert table.splitlines() == [
        "  copy                           0 of   1",
        "  run                            1 of   1",
        "  static                         1 of   1",
        "  stepup.core.call               1 of   1",
    ]
