"""The build graph: readiness, conflicting definitions, implicit directory inputs, cycles."""

import itertools

import pytest

from stepup_dist.errors import PlanError
from stepup_dist.messages import FileState
from stepup_dist.paths import step_key
from stepup_dist.planner.graph import Graph, Step, StepStatus

STATE = FileState(0o100644, 1, 2, 3, b"d" * 16)


def make_step(
    command: str,
    inp: list[str] | None = None,
    out: list[str] | None = None,
    vol: list[str] | None = None,
    *,
    workdir: str = "./",
    env: list[str] | None = None,
    pool: str | None = None,
    creator: str | None = "./plan.py",
) -> Step:
    return Step(
        step_key(command, workdir),
        command,
        workdir,
        list(inp or []),
        list(out or []),
        list(vol or []),
        list(env or []),
        pool,
        creator,
    )


def snapshot(graph: Graph) -> tuple:
    """Everything a failed definition must leave untouched."""
    return (
        sorted(graph.steps),
        {
            p: (n.producer, n.static, n.available, sorted(n.consumers))
            for p, n in graph.files.items()
        },
    )


def test_step_key() -> None:
    assert step_key("cp a b", "./") == "cp a b"
    assert step_key("cp a b", "sub/") == "cp a b  # wd=sub/"


def test_step_without_inputs_misses_nothing() -> None:
    graph = Graph()
    step = graph.add_step(make_step("touch a", out=["a"]))
    assert step.missing == set()
    assert step.status is StepStatus.PENDING
    assert graph.files["a"].producer == "touch a"
    assert graph.steps["touch a"] is step


def test_step_waits_for_each_input() -> None:
    graph = Graph()
    step = graph.add_step(make_step("cat a b > c", inp=["a", "b"], out=["c"]))
    assert step.missing == {"a", "b"}
    assert graph.make_available("a", STATE) == []
    assert step.missing == {"b"}
    assert step.status is StepStatus.PENDING
    assert graph.make_available("b", None) == [step]
    assert step.missing == set()
    assert step.status is StepStatus.READY
    assert graph.files["a"].state == STATE
    assert graph.files["a"].available


def test_input_available_before_definition_is_not_missing() -> None:
    graph = Graph()
    graph.add_static("a")
    graph.make_available("a", STATE)
    step = graph.add_step(make_step("cat a", inp=["a"]))
    assert step.missing == set()
    assert graph.input_states(step) == {"a": STATE}


def test_make_available_returns_ready_steps_sorted_and_only_pending_ones() -> None:
    graph = Graph()
    s_b = graph.add_step(make_step("b", inp=["x"]))
    s_a = graph.add_step(make_step("a", inp=["x"]))
    s_c = graph.add_step(make_step("c", inp=["x", "y"]))
    s_d = graph.add_step(make_step("d", inp=["x"]))
    s_d.status = StepStatus.FAILED
    assert graph.make_available("x", STATE) == [s_a, s_b]
    assert s_a.status is s_b.status is StepStatus.READY
    assert s_c.status is StepStatus.PENDING
    assert s_d.status is StepStatus.FAILED
    assert s_d.missing == set()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"out": ["x"]}, {"out": ["x"]}),
        ({"out": ["x"]}, {"vol": ["x"]}),
        ({"vol": ["x"]}, {"out": ["x"]}),
        ({"vol": ["x"]}, {"vol": ["x"]}),
    ],
)
def test_two_steps_with_one_output_are_refused(first: dict, second: dict) -> None:
    graph = Graph()
    graph.add_step(make_step("one", **first))
    before = snapshot(graph)
    with pytest.raises(PlanError, match="two steps declare output x: 'one' and 'two'"):
        graph.add_step(make_step("two", **second))
    assert snapshot(graph) == before
    assert graph.files["x"].producer == "one"


def test_output_that_is_static_is_refused() -> None:
    graph = Graph()
    graph.add_static("x")
    with pytest.raises(PlanError, match="output x of step 'make x' is declared static"):
        graph.add_step(make_step("make x", out=["x"]))
    assert "make x" not in graph.steps
    assert graph.files["x"].producer is None


def test_static_that_is_an_output_is_refused() -> None:
    graph = Graph()
    graph.add_step(make_step("make x", out=["x"]))
    with pytest.raises(PlanError, match="static path x is already an output of step 'make x'"):
        graph.add_static("x")
    assert not graph.files["x"].static


def test_static_twice_is_fine() -> None:
    graph = Graph()
    node = graph.add_static("x")
    assert graph.add_static("x") is node
    assert node.static


def test_identical_redefinition_returns_the_existing_step() -> None:
    graph = Graph()
    first = graph.add_step(make_step("cp a b", inp=["a"], out=["b"], creator="./plan.py"))
    first.status = StepStatus.QUEUED
    again = graph.add_step(make_step("cp a b", inp=["a"], out=["b"], creator="other"))
    assert again is first
    assert again.status is StepStatus.QUEUED
    assert list(graph.steps) == ["cp a b"]
    assert graph.files["a"].consumers == {"cp a b"}


def test_redefinition_is_compared_with_the_declared_lists() -> None:
    """The implicit directory input added to `inp` must not make a redefinition differ."""
    graph = Graph()
    graph.add_step(make_step("mkdir sub", out=["sub/"]))
    first = graph.add_step(make_step("touch sub/a", out=["sub/a"]))
    assert "sub/" in first.inp
    assert graph.add_step(make_step("touch sub/a", out=["sub/a"])) is first


@pytest.mark.parametrize(
    "change",
    [
        {"inp": ["other"]},
        {"out": ["b", "c"]},
        {"vol": ["v"]},
        {"env": ["HOME"]},
        {"pool": "p"},
    ],
)
def test_different_redefinition_is_refused(change: dict) -> None:
    graph = Graph()
    graph.add_step(make_step("cp a b", inp=["a"], out=["b"]))
    args = {"inp": ["a"], "out": ["b"], **change}
    with pytest.raises(PlanError, match="defined twice with different arguments"):
        graph.add_step(make_step("cp a b", **args))
    assert graph.steps["cp a b"].declared == (("a",), ("b",), (), ())


def test_same_command_in_another_workdir_is_another_step() -> None:
    graph = Graph()
    one = graph.add_step(make_step("make", out=["a"]))
    two = graph.add_step(make_step("make", out=["sub/a"], workdir="sub/"))
    assert one is not two
    assert set(graph.steps) == {"make", "make  # wd=sub/"}


def test_step_waits_for_a_directory_made_by_another_step() -> None:
    graph = Graph()
    mkdir = graph.add_step(make_step("mkdir sub", out=["sub/"]))
    writer = graph.add_step(make_step("touch sub/a", out=["sub/a"]))
    vol_writer = graph.add_step(make_step("touch sub/v", vol=["sub/v"]))
    assert writer.inp == ["sub/"]
    assert writer.declared[0] == ()
    assert writer.missing == {"sub/"}
    assert vol_writer.missing == {"sub/"}
    assert graph.files["sub/"].consumers == {"touch sub/a", "touch sub/v"}
    assert mkdir.missing == set()
    assert graph.make_available("sub/", None) == [writer, vol_writer]


def test_no_implicit_input_for_a_directory_made_by_the_step_itself() -> None:
    graph = Graph()
    step = graph.add_step(make_step("mkdir sub; touch sub/a", out=["sub/", "sub/a"]))
    assert step.inp == []
    assert step.missing == set()


def test_a_static_directory_is_an_input_of_the_steps_writing_into_it() -> None:
    # As in StepUp: the folder of an output is an input; a static one once it is checked.
    graph = Graph()
    graph.add_static("sub/")
    step = graph.add_step(make_step("touch sub/a", out=["sub/a"]))
    assert step.inp == ["sub/"]
    assert step.missing == {"sub/"}
    step.status = StepStatus.PENDING
    assert graph.make_available("sub/", None) == [step]
    # The root folder and a folder the step makes itself are no inputs.
    top = graph.add_step(make_step("mkdir top; touch top/b c", out=["top/", "top/b", "c"]))
    assert top.inp == []


def test_declared_directory_input_is_not_added_twice() -> None:
    graph = Graph()
    graph.add_step(make_step("mkdir sub", out=["sub/"]))
    step = graph.add_step(make_step("touch sub/a", inp=["sub/"], out=["sub/a"]))
    assert step.inp == ["sub/"]


def test_input_that_is_also_an_output_is_refused_without_changing_the_graph() -> None:
    graph = Graph()
    before = snapshot(graph)
    with pytest.raises(PlanError, match="lists a as both input and output"):
        graph.add_step(make_step("loop", inp=["a"], out=["a"]))
    assert snapshot(graph) == before
    # Once refused, a corrected definition of the same step is accepted.
    step = graph.add_step(make_step("loop", inp=["b"], out=["a"]))
    assert step.missing == {"b"}


def test_add_outputs_conflicts() -> None:
    graph = Graph()
    graph.add_static("s")
    one = graph.add_step(make_step("one", out=["x"]))
    two = graph.add_step(make_step("two"))
    with pytest.raises(PlanError, match="two steps declare output x"):
        graph.add_outputs(two, ["x"], [])
    with pytest.raises(PlanError, match="output s of step 'two' is declared static"):
        graph.add_outputs(two, [], ["s"])
    graph.add_outputs(one, ["x"], ["y"])
    graph.add_outputs(two, ["z"], [])
    assert graph.files["y"].producer == "one"
    assert graph.files["z"].producer == "two"


def _assert_is_cycle(graph: Graph, cycle: list[str]) -> None:
    assert len(cycle) >= 3
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for waiter, maker in itertools.pairwise(cycle):
        assert any(graph.files[p].producer == maker for p in graph.steps[waiter].missing)


def test_find_cycle_of_two_steps() -> None:
    graph = Graph()
    graph.add_step(make_step("A", inp=["b"], out=["a"]))
    graph.add_step(make_step("B", inp=["a"], out=["b"]))
    cycle = graph.find_cycle(["A", "B"])
    assert cycle is not None
    _assert_is_cycle(graph, cycle)
    assert set(cycle) == {"A", "B"}


def test_find_cycle_skips_the_tail_leading_into_it() -> None:
    graph = Graph()
    graph.add_step(make_step("0 tail", inp=["a"], out=["t"]))
    graph.add_step(make_step("A", inp=["c", "static"], out=["a"]))
    graph.add_step(make_step("B", inp=["a"], out=["b"]))
    graph.add_step(make_step("C", inp=["b"], out=["c"]))
    cycle = graph.find_cycle(graph.steps)
    assert cycle is not None
    _assert_is_cycle(graph, cycle)
    assert set(cycle) == {"A", "B", "C"}


def test_find_cycle_is_none_for_a_plain_missing_input() -> None:
    graph = Graph()
    graph.add_step(make_step("A", inp=["never-made"], out=["a"]))
    graph.add_step(make_step("B", inp=["a"], out=["b"]))
    graph.add_step(make_step("C", inp=["a", "b"], out=["c"]))
    assert graph.find_cycle(["A", "B", "C"]) is None


def test_find_cycle_only_follows_the_given_steps() -> None:
    graph = Graph()
    graph.add_step(make_step("A", inp=["b"], out=["a"]))
    graph.add_step(make_step("B", inp=["a"], out=["b"]))
    assert graph.find_cycle(["A"]) is None
    assert graph.find_cycle([]) is None


def test_find_cycle_ignores_inputs_already_available() -> None:
    graph = Graph()
    graph.add_step(make_step("A", inp=["b"], out=["a"]))
    graph.add_step(make_step("B", inp=["a"], out=["b"]))
    graph.make_available("b", STATE)
    assert graph.find_cycle(["A", "B"]) is None


def test_step_waits_for_a_directory_whose_maker_is_defined_later() -> None:
    graph = Graph()
    writer = graph.add_step(make_step("touch sub/a", out=["sub/a"]))
    assert writer.missing == {"sub/"}
    graph.add_step(make_step("mkdir sub", out=["sub/"]))
    assert writer.missing == {"sub/"}
    writer.status = StepStatus.PENDING
    assert graph.make_available("sub/", None) == [writer]


def test_a_folder_nobody_declares_keeps_its_writer_waiting() -> None:
    # StepUp's mkdir_error case: mkdir("sub/blub/pup") without "sub/blub/" stays pending.
    graph = Graph()
    step = graph.add_step(make_step("mkdir -p sub/blub/pup/", out=["sub/blub/pup/"]))
    assert step.missing == {"sub/blub/"}
    assert graph.files["sub/blub/"].producer is None
    assert not graph.files["sub/blub/"].static


def test_an_optional_step_runs_only_once_a_needed_step_uses_it() -> None:
    graph = Graph()
    first = make_step("make a", out=["a"])
    first.optional = True
    graph.add_step(first)
    second = make_step("make b", inp=["a"], out=["b"])
    second.optional = True
    graph.add_step(second)
    assert first.optional
    assert second.optional
    # A step that must run needs b: both wake up, in turn.
    graph.add_step(make_step("use b", inp=["b"]))
    assert not first.optional
    assert not second.optional
    # Defined after the step that needs it, an optional step is needed at once.
    graph.add_step(make_step("use c", inp=["c"]))
    late = make_step("make c", out=["c"])
    late.optional = True
    graph.add_step(late)
    assert not late.optional


def test_check_amend_refuses_conflicts_without_changing_anything() -> None:
    graph = Graph()
    graph.add_static("s.txt")
    other = graph.add_step(make_step("make o", out=["o.txt"]))
    step = graph.add_step(make_step("run", out=["r.txt"]))
    before = snapshot(graph)
    for inp, out in ((["r.txt"], []), ([], ["s.txt"]), ([], ["o.txt"]), (["x"], ["x"])):
        with pytest.raises(PlanError):
            graph.check_amend(step, inp, out, [])
    assert snapshot(graph) == before
    assert other.out == ["o.txt"]
    graph.check_amend(step, ["s.txt"], ["new.txt"], [])
