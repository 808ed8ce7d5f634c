"""What one API call message carries (itself, or the calls of a batch), and what the
planner does with the calls of StepUp 4's API: durations, env_overrides, static trees."""

from pathlib import Path
from typing import Any

import pytest

from stepup_dist.broker.memory import MemoryBroker
from stepup_dist.errors import PlanError
from stepup_dist.planner.finish import unblock_stalled
from stepup_dist.planner.graph import Step, StepStatus
from stepup_dist.planner.loop import Planner
from stepup_dist.planner.plan_calls import calls_of, handle_call


def test_a_plain_call_is_itself() -> None:
    assert calls_of("getenv", {"name": "X"}) == [("getenv", {"name": "X"})]


def test_a_batch_yields_its_calls_in_order() -> None:
    calls = [["pool", {"name": "p", "size": 1}], ["step", {"command": "true"}]]
    assert calls_of("batch", {"calls": calls}) == [
        ("pool", {"name": "p", "size": 1}),
        ("step", {"command": "true"}),
    ]


@pytest.mark.parametrize(
    "args",
    [
        None,
        {},
        {"calls": "step"},
        {"calls": [["step"]]},
        {"calls": [["amend", {}]]},  # needs an answer: never batched
        {"calls": [["batch", {"calls": []}]]},
    ],
)
def test_a_malformed_batch_is_a_plan_error(args: object) -> None:
    with pytest.raises(PlanError, match="batch"):
        calls_of("batch", args)


# The handlers, against a planner on the in-memory broker (the loop does not run).


class _Lines:
    def line(self, status: str, text: str, host: str = "") -> None:
        pass

    def done(self, step: Step, result: object, status: str) -> None:
        pass


@pytest.fixture
def planner(tmp_path: Path) -> Planner:
    (tmp_path / "plan.py").write_text("#!/usr/bin/env python\n")
    p = Planner(MemoryBroker(), _Lines(), tmp_path, environ={"E": "from the build"})
    p.declare_step(Step("./plan.py", "./plan.py", "./", ["plan.py"], [], [], [], None, None))
    return p


PLAN = "./plan.py"


def _step(**args: Any) -> dict[str, Any]:
    return {"workdir": "./", **args}


def test_a_step_keeps_its_duration_hint(planner: Planner) -> None:
    handle_call(planner, PLAN, "step", _step(command="slow", duration=12))
    handle_call(planner, PLAN, "step", _step(command="fast"))
    assert planner.graph.steps["slow"].duration == 12.0
    assert planner.graph.steps["fast"].duration is None


@pytest.mark.parametrize("bad", [-1, "3", True, float("nan"), float("inf"), [1]])
def test_a_bad_duration_is_a_plan_error(planner: Planner, bad: object) -> None:
    with pytest.raises(PlanError, match="duration must be a number of seconds"):
        handle_call(planner, PLAN, "step", _step(command="x", duration=bad))
    assert "x" not in planner.graph.steps


def test_env_overrides_reach_the_job_and_the_digest(planner: Planner) -> None:
    handle_call(
        planner,
        PLAN,
        "step",
        _step(command="./work.py", env=["E"], env_overrides={"OMP_NUM_THREADS": "4"}),
    )
    step = planner.graph.steps["./work.py"]
    assert step.env_overrides == {"OMP_NUM_THREADS": "4"}
    assert planner.env_values(step) == {"E": "from the build", "OMP_NUM_THREADS": "4"}


def test_getenv_sees_the_calling_step_s_env_overrides(planner: Planner) -> None:
    handle_call(planner, PLAN, "step", _step(command="./sub.py", env_overrides={"E": "mine"}))
    assert handle_call(planner, "./sub.py", "getenv", {"name": "E"}) == "mine"
    assert handle_call(planner, PLAN, "getenv", {"name": "E"}) == "from the build"
    assert handle_call(planner, "./sub.py", "getenv", {"name": "F", "default": "d"}) == "d"


def test_env_overrides_are_part_of_the_definition(planner: Planner) -> None:
    handle_call(planner, PLAN, "step", _step(command="w", env_overrides={"A": "1"}))
    handle_call(planner, PLAN, "step", _step(command="w", env_overrides={"A": "1"}))
    with pytest.raises(PlanError, match="defined twice with different arguments"):
        handle_call(planner, PLAN, "step", _step(command="w", env_overrides={"A": "2"}))


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"E": "x"}, "E both in env and in env_overrides"),
        ({"A": 1}, "env_overrides must map names to strings"),
        ("A=1", "env_overrides must map names to strings"),
    ],
)
def test_bad_env_overrides_are_plan_errors(planner: Planner, overrides: object, error: str) -> None:
    with pytest.raises(PlanError, match=error):
        handle_call(planner, PLAN, "step", _step(command="w", env=["E"], env_overrides=overrides))


def test_the_folders_above_a_static_path_are_static_too(planner: Planner) -> None:
    handle_call(planner, PLAN, "static", {"paths": ["a/b/c.txt"]})
    files = planner.graph.files
    assert [p for p in ("a/", "a/b/", "a/b/c.txt") if files[p].static] == [
        "a/",
        "a/b/",
        "a/b/c.txt",
    ]
    assert "./" not in files


def test_a_folder_a_step_makes_cannot_hold_a_static_path(planner: Planner) -> None:
    handle_call(planner, PLAN, "step", _step(command="mkdir made", out=["made/"]))
    with pytest.raises(PlanError, match=r"no static parent path node: made/in\.txt"):
        handle_call(planner, PLAN, "static", {"paths": ["made/in.txt"]})
    assert "made/in.txt" not in planner.graph.files


def test_a_missing_static_path_is_refused(planner: Planner) -> None:
    with pytest.raises(PlanError, match=r"missing static input: gone\.txt"):
        handle_call(planner, PLAN, "static", {"paths": ["gone.txt"], "stats": [["missing"]]})


def test_an_eager_tree_makes_what_steps_need_in_it_static(planner: Planner) -> None:
    handle_call(planner, PLAN, "step", _step(command="early", inp=["data/early.txt"]))
    handle_call(planner, PLAN, "static", {"paths": ["data/"], "trees": ["data/"], "eager": True})
    handle_call(planner, PLAN, "step", _step(command="late", inp=["data/sub/late.txt"]))
    handle_call(planner, PLAN, "step", _step(command="make", out=["data/made.txt"]))
    handle_call(planner, PLAN, "step", _step(command="use", inp=["data/made.txt", "other.txt"]))
    files = planner.graph.files
    assert files["data/early.txt"].static
    assert files["data/sub/late.txt"].static
    assert not files["data/made.txt"].static  # a step makes it
    assert not files["other.txt"].static  # not in the tree


def test_a_lazy_tree_waits_until_nothing_else_can_run(planner: Planner) -> None:
    handle_call(planner, PLAN, "static", {"paths": ["data/"], "trees": ["data/"], "eager": False})
    handle_call(planner, PLAN, "step", _step(command="use", inp=["data/a.txt"]))
    assert not planner.graph.files["data/a.txt"].static
    planner.graph.steps[PLAN].status = StepStatus.SUCCEEDED
    assert unblock_stalled(planner) is True
    assert planner.graph.files["data/a.txt"].static
    assert unblock_stalled(planner) is False


def test_the_root_as_a_tree_covers_the_project_only(planner: Planner) -> None:
    handle_call(planner, PLAN, "static", {"paths": ["./"], "trees": ["./"], "eager": True})
    handle_call(planner, PLAN, "step", _step(command="use", inp=["x.txt", "/abs/y", "../z"]))
    files = planner.graph.files
    assert (files["x.txt"].static, files["/abs/y"].static, files["../z"].static) == (
        True,
        False,
        False,
    )


def test_trees_must_be_folders_among_the_paths(planner: Planner) -> None:
    with pytest.raises(PlanError, match="trees must be folders among the static paths"):
        handle_call(planner, PLAN, "static", {"paths": ["a.txt"], "trees": ["data/"]})
    with pytest.raises(PlanError, match="trees must be folders among the static paths"):
        handle_call(planner, PLAN, "static", {"paths": ["a.txt"], "trees": ["a.txt"]})


def test_info_describes_the_calling_step_as_defined(planner: Planner) -> None:
    handle_call(
        planner,
        PLAN,
        "step",
        _step(command="w", workdir="sub/", inp=["sub/w.py"], out=["sub/o/x.txt"], env=["E"]),
    )
    step = planner.graph.steps["w  # wd=sub/"]
    step.status = StepStatus.QUEUED
    planner.amend(step.key, ["more.txt"], ["sub/more.out"], [], ["F"])
    info = handle_call(planner, step.key, "info", {})
    assert info == {
        "key": "w  # wd=sub/",
        "command": "w",
        "workdir": "sub/",
        "inp": ["sub/w.py"],
        "env": ["E"],
        "out": ["sub/o/x.txt"],
        "vol": [],
    }


def test_graph_writes_text_and_two_dot_files(planner: Planner) -> None:
    handle_call(planner, PLAN, "step", _step(command='say "hi"', inp=["a.txt"], out=["b.txt"]))
    handle_call(planner, PLAN, "graph", {"prefix": "out/current_graph"})
    text = (planner.root / "out/current_graph.txt").read_text()
    assert (
        'step say "hi"\n    workdir ./; pending\n    created by ./plan.py\n'
        "    inp a.txt\n    out b.txt\n"
    ) in text
    dependency = (planner.root / "out/current_graph_dependency.dot").read_text()
    assert dependency.startswith("digraph dependency {")
    assert '"say \\"hi\\"";' in dependency
    provenance = (planner.root / "out/current_graph_provenance.dot").read_text()
    assert '"./plan.py" -> "say \\"hi\\"" [style=dashed];' in provenance
    assert '"a.txt" -> "say \\"hi\\"";' in provenance
    assert '"say \\"hi\\"" -> "b.txt";' in provenance
    with pytest.raises(PlanError, match="prefix must be a non-empty string"):
        handle_call(planner, PLAN, "graph", {})


def test_a_tree_declared_again_by_a_stepup_4_call_becomes_eager(planner: Planner) -> None:
    lazy = {"paths": ["data/"], "trees": ["data/"], "eager": False}
    handle_call(planner, PLAN, "static", lazy)
    handle_call(planner, PLAN, "step", _step(command="use", inp=["data/a.txt"]))
    assert not planner.graph.files["data/a.txt"].static
    handle_call(planner, PLAN, "static", {**lazy, "eager": True})
    assert planner.graph.files["data/a.txt"].static
    handle_call(planner, PLAN, "static", lazy)  # stays eager
    assert planner.trees == {"data/": True}
