"""Which amended inputs of a step it declares static itself (planner.skipping.own_statics):
those are hash-checked with its outputs when it may be skipped."""

from stepup_dist.planner.skipping import own_statics
from stepup_dist.planner.store import Record


def _record(calls: list) -> Record:
    return Record(
        "./plan.py", "./", ["plan.py"], [], [], [], [[], [], [], []], None, None, b"", {}, calls
    )


def test_own_statics_are_the_paths_and_trees_its_static_calls_named() -> None:
    old = _record(
        [
            ["static", {"paths": ["config.toml", "data/"], "stats": [None, None]}],
            ["step", {"command": "x", "inp": ["other.txt"]}],
            ["static", {"paths": ["sub/vars.py"]}],
        ]
    )
    amended = ["config.toml", "data/a.csv", "sub/vars.py", "other.txt", "database.txt"]
    assert own_statics(old, amended) == ["config.toml", "data/a.csv", "sub/vars.py"]


def test_a_step_without_static_calls_owns_nothing() -> None:
    assert own_statics(_record([["glob", {"patterns": ["*.txt"]}]]), ["a.txt"]) == []
