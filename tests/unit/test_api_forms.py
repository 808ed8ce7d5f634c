"""The plan API's two forms (StepUp 1.x and StepUp 4): what each call sends to the planner.

No server: the API's connection is replaced by a recorder of the calls it would send (their
method and arguments), and the answers of calls that need one are given by the test. What
the planner does with them is tested in test_plan_calls.py and in real builds
(tests/integration/test_stepup4_api.py).
"""

import os
import shlex
from pathlib import Path as PathlibPath
from typing import Any

import pytest
from path import Path

from stepup_dist import api, api_tools
from stepup_dist.nglob import NGlobMulti


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Any] = {}

    def send(self, method: str, **args: Any) -> None:
        self.sent.append((method, args))

    def call(self, method: str, **args: Any) -> Any:
        self.sent.append((method, args))
        return self.answers.get(method)

    def of(self, method: str) -> list[dict[str, Any]]:
        return [args for m, args in self.sent if m == method]


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch, tmp_path: PathlibPath) -> Recorder:
    """A fresh process as the API sees it: in a build, in the root folder, no form known."""
    recorder = Recorder()
    client = api._Client()
    client.active = True
    monkeypatch.setattr(client, "_impl_", lambda: None)
    monkeypatch.setattr(api, "_CLIENT", client)
    # hold() and the recorder share the client's held list: route the real send through it.
    real_send = client.send

    def send(method: str, **args: Any) -> None:
        if client.holding:
            real_send(method, **args)
        else:
            recorder.send(method, **args)

    monkeypatch.setattr(client, "send", send)
    monkeypatch.setattr(client, "call", recorder.call)
    monkeypatch.setattr(api, "_DIALECT", api._Dialect())
    monkeypatch.delenv("HERE", raising=False)
    monkeypatch.delenv("ROOT", raising=False)
    monkeypatch.delenv("STEPUP_JOB_I", raising=False)
    monkeypatch.chdir(tmp_path)
    return recorder


def write(path: str, text: str = "x\n") -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


# __all__ and types


def test_all_holds_the_names_of_both_apis() -> None:
    v1 = {"amend", "copy", "getenv", "glob", "mkdir", "plan", "pool", "script", "static", "step"}
    v4 = {
        "CommandArg",
        "amend",
        "copy",
        "get_info",
        "get_job_i",
        "get_rpc_client",
        "getenv",
        "glob",
        "graph",
        "hold",
        "plan",
        "run",
        "shq",
        "static",
        "step",
        "subs_env_vars",
    }
    # The composite functions (script, call, render_jinja, ...) live in api_tools; plans
    # see both through the shim's stepup.core.api (test_drivers.py checks that one).
    assert v1 | v4 <= set(api.__all__) | set(api_tools.__all__)
    for name in api.__all__:
        assert hasattr(api, name), name


# run()


def test_run_adds_its_local_executable_as_input_and_sorts_the_info(rec: Recorder) -> None:
    info = api.run("./work.py b.txt", inp=["z.txt", "a.txt"], out=["b.txt"])
    (args,) = rec.of("step")
    assert args["command"] == "./work.py b.txt"
    assert args["inp"] == ["work.py", "z.txt", "a.txt"]
    assert args["out"] == ["b.txt"]
    assert info.inp == ["a.txt", "work.py", "z.txt"]
    assert all(isinstance(p, Path) for p in info.inp + info.out)
    assert info.command == "./work.py b.txt"
    assert info.key == "./work.py b.txt"


def test_run_with_a_command_from_path_adds_no_input(rec: Recorder) -> None:
    api.run("cat a.txt", inp="a.txt")
    api.run("/bin/cat a.txt", inp="a.txt")
    assert [a["inp"] for a in rec.of("step")] == [["a.txt"], ["a.txt"]]


def test_run_turns_leading_assignments_into_env_overrides(rec: Recorder) -> None:
    api.run("OMP_NUM_THREADS=4 MSG='a b' ./work.py", duration=2.5)
    (args,) = rec.of("step")
    assert args["command"] == "./work.py"
    assert args["env_overrides"] == {"OMP_NUM_THREADS": "4", "MSG": "a b", "STEPUP_DIST_API": "4"}
    assert args["duration"] == 2.5
    assert args["inp"] == ["work.py"]


def test_run_with_shell_keeps_the_assignments_in_the_command(rec: Recorder) -> None:
    api.run("X=1 ./work.py > log.txt", shell=True, out="log.txt")
    (args,) = rec.of("step")
    assert args["command"] == "X=1 ./work.py > log.txt"
    assert args["env_overrides"] == {"STEPUP_DIST_API": "4"}
    assert args["inp"] == ["work.py"]


def test_run_calls_a_command_callable_with_the_paths_it_names(rec: Recorder) -> None:
    info = api.run(lambda out: f"./gen.py {api.shq(out)}", out=["a b.txt", "c.txt"])
    (args,) = rec.of("step")
    assert args["command"] == "./gen.py 'a b.txt' c.txt"
    assert info.inp == ["gen.py"]
    with pytest.raises(api.StepUpError, match="cannot declare a parameter 'other'"):
        api.run(lambda other: "true")


def test_run_makes_the_folders_of_its_outputs_and_declares_them(rec: Recorder) -> None:
    api.run("touch out/deep/x.txt", out="out/deep/x.txt", workdir="./")
    assert os.path.isdir("out/deep")
    static, step = rec.sent[0], rec.sent[1]
    assert static == ("static", {"paths": ["out/deep/"], "stats": static[1]["stats"]})
    assert step[0] == "step"
    # The next build finds the folder there: it is still declared, or the step would wait.
    api.run("touch out/deep/x.txt", out="out/deep/x.txt", workdir="./")
    assert [a["paths"] for a in rec.of("static")] == [["out/deep/"], ["out/deep/"]]


def test_run_in_a_missing_workdir_makes_it(rec: Recorder) -> None:
    info = api.run("touch x.txt", out="x.txt", workdir="new")
    assert os.path.isdir("new")
    assert rec.of("static")[0]["paths"] == ["new/"]
    assert rec.of("step")[0]["out"] == ["new/x.txt"]
    assert info.key == "touch x.txt  # wd=new/"
    assert info.workdir == "new"  # as StepUp 4 gives it


def test_a_bad_duration_is_refused(rec: Recorder) -> None:
    bad: Any
    for bad in (-1, float("nan"), float("inf"), True, "3"):
        with pytest.raises(api.StepUpError, match="Invalid duration"):
            api.run("true", duration=bad)
    assert rec.of("step") == []


# step()


def test_step_in_its_1x_form_makes_no_folders_and_fills_in_paths(rec: Recorder) -> None:
    info = api.step("cp ${inp} ${out}", inp="a.txt", out="sub/b.txt")
    assert not os.path.exists("sub")
    assert [m for m, _ in rec.sent] == ["step"]
    assert "env_overrides" not in rec.of("step")[0]
    assert rec.of("step")[0]["command"] == "cp a.txt sub/b.txt"
    assert "duration" not in rec.of("step")[0]
    assert info.out == ["sub/b.txt"]


def test_step_with_stepup_4_arguments(rec: Recorder) -> None:
    api.step(
        "./work.py",
        inp="work.py",
        out="o/x.txt",
        need=api.Need.OPTIONAL,
        env_overrides={"A": "1"},
        duration=3,
        resources="gpu:1",
    )
    (args,) = rec.of("step")
    assert args["optional"] is True
    assert args["env_overrides"] == {"A": "1", "STEPUP_DIST_API": "4"}
    assert args["duration"] == 3.0
    assert args["resources"] == "gpu:1"
    assert os.path.isdir("o")  # the StepUp 4 form makes the folders of outputs


def test_step_refuses_an_override_that_is_also_a_dependency(rec: Recorder) -> None:
    with pytest.raises(api.StepUpError, match="both an env dependency"):
        api.step("true", env="A", env_overrides={"A": "1"})
    with pytest.raises(api.StepUpError, match="cannot be overridden: HERE"):
        api.step("true", env_overrides={"HERE": "x"})


def test_step_with_a_pool_is_the_1x_form(rec: Recorder) -> None:
    api.run("true")  # this process is a StepUp 4 one
    api.step("touch made/x.txt", out="made/x.txt", pool="p")
    assert not os.path.exists("made")
    api.step("touch made/x.txt", out="made/x.txt")
    assert os.path.isdir("made")


def test_need_plan_and_default_are_not_optional(rec: Recorder) -> None:
    api.step("true", need=api.Need.PLAN)
    api.step("false", need="default")
    assert ["optional" in a for a in rec.of("step")] == [False, False]
    with pytest.raises(api.StepUpError, match="need must be one of"):
        api.step("true", need="sometimes")


# plan()


def test_plan_in_its_1x_form_runs_plan_py_in_the_folder(rec: Recorder) -> None:
    write("sub/plan.py")
    api.plan("sub/")
    api.plan("sub")
    keys = [(a["command"], a["workdir"], a["inp"]) for a in rec.of("step")]
    assert keys == [("./plan.py", "sub/", ["sub/plan.py"])] * 2


def test_plan_in_its_4x_form_gives_the_same_step_as_1x(rec: Recorder) -> None:
    write("sub/plan.py")
    info4 = api.plan("./plan.py", workdir="sub")
    info1 = api.plan("sub/")
    assert info4.key == info1.key == "./plan.py  # wd=sub/"
    first, second = rec.of("step")
    # The same step; the StepUp 4 one tells its plan.py that it is a StepUp 4 plan.
    assert first.pop("env_overrides") == {"STEPUP_DIST_API": "4"}
    assert first == second


def test_plan_with_a_path_with_a_slash_is_a_command(rec: Recorder) -> None:
    write("sub/plan.py")
    api.plan("sub/plan.py")
    api.plan("OMP=2 ./plan.py")
    one, two = rec.of("step")
    assert (one["command"], one["workdir"], one["inp"]) == ("sub/plan.py", "./", ["sub/plan.py"])
    assert (two["command"], two["env_overrides"]) == (
        "./plan.py",
        {"OMP": "2", "STEPUP_DIST_API": "4"},
    )


def test_plan_in_its_4x_form_needs_a_local_executable(rec: Recorder) -> None:
    with pytest.raises(api.PathError, match="relative path to a local executable"):
        api.plan("plan.py", workdir="sub")


def test_plan_with_a_variable_in_the_folder(rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    write("sub/plan.py")
    monkeypatch.setenv("SUB", "sub")
    api.plan("${SUB}/")
    api.plan("./plan.py", workdir="${SUB}")
    steps = rec.of("step")
    assert [a["workdir"] for a in steps] == ["sub/", "sub/"]
    assert ["SUB"] in [a["env"] for a in rec.of("amend")]


# static()


def test_static_returns_what_it_declared(rec: Recorder) -> None:
    write("b.txt")
    write("a.txt")
    got = api.static("b.txt", ["a.txt"])
    assert got == ["a.txt", "b.txt"]
    assert all(isinstance(p, Path) for p in got)
    (args,) = rec.of("static")
    assert args["paths"] == ["b.txt", "a.txt"]
    assert "trees" not in args


def test_static_of_a_pattern_declares_the_matches_and_records_the_glob(rec: Recorder) -> None:
    for name in ("inp1.txt", "inp2.txt", "other.txt"):
        write(name)
    got = api.static("inp*.txt")
    assert got == ["inp1.txt", "inp2.txt"]
    assert rec.of("static")[0]["paths"] == ["inp1.txt", "inp2.txt"]
    assert rec.of("glob") == [
        {
            "patterns": ["inp*.txt"],
            "subs": {},
            "matches": ["inp1.txt", "inp2.txt"],
            "zero_dirs": True,
        }
    ]
    assert api._DIALECT.v4


def test_static_of_a_recursive_pattern_includes_the_top_folder(rec: Recorder) -> None:
    write("sub/a.txt")
    write("sub/deeper/b.txt")
    assert api.static("sub/**/*.txt") == ["sub/a.txt", "sub/deeper/b.txt"]
    assert rec.of("glob")[0]["zero_dirs"] is True


def test_glob_takes_stepup_4s_recursive_wildcard_in_its_form(rec: Recorder) -> None:
    write("sub/a.txt")
    write("sub/deeper/b.txt")
    v1 = api.glob("sub/**/*.txt")
    assert v1 is not None
    assert v1.files() == ("sub/deeper/b.txt",)
    assert "zero_dirs" not in rec.of("glob")[0]
    api.run("true")
    v4 = api.glob("sub/**/*.txt")
    assert v4 is not None
    assert v4.files() == ("sub/a.txt", "sub/deeper/b.txt")
    assert rec.of("glob")[1]["zero_dirs"] is True


def test_static_of_a_named_pattern_and_of_a_glob_result(rec: Recorder) -> None:
    write("sub/x.txt")
    write("sub/y.md")
    assert api.static("sub/${*name}.txt") == ["sub/x.txt"]
    ngm = NGlobMulti(["sub/*.md"])
    ngm.glob()
    assert api.static(ngm) == ["sub/y.md"]


def test_static_of_nothing_matching_still_records_the_pattern(rec: Recorder) -> None:
    assert api.static("nothing*.txt") == []
    assert rec.of("static") == []
    assert rec.of("glob") == [
        {"patterns": ["nothing*.txt"], "subs": {}, "matches": [], "zero_dirs": True}
    ]


def test_static_of_a_folder_is_a_tree(rec: Recorder) -> None:
    write("data/a.txt")
    write("src/b.txt")
    got = api.static("data/", "src")
    assert got == ["data/", "src/"]
    (args,) = rec.of("static")
    assert args["trees"] == ["data/", "src/"]
    # A plan not known to be StepUp 4's: the tree's files wait until nothing else can run.
    assert args["eager"] is False
    api.run("true")
    api.static("data/")
    assert rec.of("static")[1]["eager"] is True


def test_static_refuses_a_trailing_recursive_wildcard(rec: Recorder) -> None:
    with pytest.raises(api.PathError, match="trailing recursive"):
        api.static("sub/**")


def test_static_of_a_missing_path_is_left_to_the_planner(rec: Recorder) -> None:
    assert api.static("missing.txt") == ["missing.txt"]
    assert rec.of("static")[0]["stats"] == [["missing"]]


# glob()


def test_glob_returns_paths_and_declares_them(rec: Recorder) -> None:
    write("ch-1/sec-1.txt")
    write("ch-2/sec-2.txt")
    ngm = api.glob("ch-${*ch}/sec-${*ch}.txt")
    assert ngm is not None
    assert [m.ch for m in ngm.matches()] == ["1", "2"]
    assert all(isinstance(f, Path) for f in ngm.files())
    assert rec.of("static")[0]["paths"] == ["ch-1/sec-1.txt", "ch-2/sec-2.txt"]
    assert rec.of("glob")[0]["matches"] == ["ch-1/sec-1.txt", "ch-2/sec-2.txt"]


# getenv()


def test_getenv_forms(rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERE", "sub")
    monkeypatch.setenv("ROOT", "..")
    monkeypatch.setenv("NAME", "value")
    rec.answers["getenv"] = "data/${NAME}/x"
    # StepUp 4: path=True fills in variables; back=True translates from the root to here.
    assert api.getenv("V", path=True) == "data/value/x"
    assert isinstance(api.getenv("V", path=True), Path)
    assert api.getenv("V", back=True) == "../data/value/x"
    rec.answers["getenv"] = "."
    assert api.getenv("V", back=True) == ".."
    rec.answers["getenv"] = "out/"
    assert api.getenv("V", back=True) == "../out/"
    rec.answers["getenv"] = "a:sub/b: :"
    assert api.getenv("V", multi=True) == ["a", "sub/b"]
    assert api.getenv("V", multi=True, back=True) == ["../a", "b"]
    # StepUp 1.x: is_path=True is relative to the root, and the step depends on ROOT.
    rec.answers["getenv"] = "data/x"
    assert api.getenv("V", is_path=True) == "../data/x"
    assert ["ROOT"] in [a["env"] for a in rec.of("amend")]
    rec.answers["getenv"] = None
    assert api.getenv("V", multi=True) == []
    with pytest.raises(ValueError, match="Undefined shell variable: V"):
        api.getenv("V", path=True)
    assert api.getenv("V") is None
    assert rec.of("getenv")[-1] == {"name": "V", "default": None}


def test_getenv_of_here_and_root_is_the_step_s_own(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERE", "sub/deeper")
    monkeypatch.setenv("ROOT", "../..")
    rec.answers["getenv"] = "what the build has"
    assert api.getenv("HERE") == "sub/deeper"
    assert api.getenv("ROOT", path=True) == "../.."
    assert rec.of("getenv") == []


# copy()


def test_copy_forms(rec: Recorder) -> None:
    api.copy("a.txt", "b.txt")
    # A name the shell would split is quoted (a plain one stays as 1.x wrote it).
    api.copy("README NOW.txt", "a b.txt")
    api.copy("a.txt", "out/", duration=1.0)
    one, spaced, two = rec.of("step")
    assert one["command"] == "cp -aT a.txt b.txt"
    assert spaced["command"] == "cp -aT 'README NOW.txt' 'a b.txt'"
    assert (two["command"], two["out"]) == ("cp -p a.txt out/a.txt", ["out/a.txt"])
    assert os.path.isdir("out")


def test_a_module_that_uses_stepup_4_names_gets_the_4x_form(rec: Recorder) -> None:
    code = "from stepup_dist.api import copy, run\ncopy('a.txt', 'new/')\n"
    exec(compile(code, "plan.py", "exec"), {"__name__": "__main__"})
    assert rec.of("step")[0]["command"] == "cp -p a.txt new/a.txt"
    assert os.path.isdir("new")


def test_a_module_with_names_of_both_apis_is_undecided(rec: Recorder) -> None:
    code = "from stepup_dist.api import *\ncopy('a.txt', 'new/')\n"
    exec(compile(code, "plan.py", "exec"), {"__name__": "__main__"})
    assert rec.of("step")[0]["command"] == "cp -aT a.txt new/a.txt"


def test_a_step_defined_in_the_4x_form_calls_in_the_4x_form(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPUP_DIST_API", "4")
    code = "from stepup_dist.api import copy, static\ncopy('a.txt', 'new/')\n"
    exec(compile(code, "plan.py", "exec"), {"__name__": "__main__"})
    assert rec.of("step")[0]["command"] == "cp -p a.txt new/a.txt"
    with pytest.raises(api.StepUpError, match="cannot be overridden: STEPUP_DIST_API"):
        api.step("true", env_overrides={"STEPUP_DIST_API": "1"})


def test_a_module_with_only_shared_names_gets_the_1x_form(rec: Recorder) -> None:
    code = "from stepup_dist.api import copy, static\ncopy('a.txt', 'new/')\n"
    exec(compile(code, "plan.py", "exec"), {"__name__": "__main__"})
    assert rec.of("step")[0]["command"] == "cp -aT a.txt new/a.txt"
    assert not os.path.exists("new")


# amend() and hold()


def test_amend_of_an_input_not_there_yet(rec: Recorder) -> None:
    rec.answers["amend"] = False
    assert api.amend(inp="later.txt") is False
    api.run("true")  # from now on this process is a StepUp 4 one
    with pytest.raises(api.InputNotFoundError):
        api.amend(inp="later.txt")


def test_amend_of_an_input_that_is_there(rec: Recorder) -> None:
    write("here.txt")
    rec.answers["amend"] = True
    assert api.amend(inp="here.txt", out="o.txt") is True
    assert rec.of("amend")[0]["inp"] == ["here.txt"]
    rec.answers["amend"] = True
    with pytest.raises(ValueError, match=r"Path does not exist: gone\.txt"):
        api.amend(inp="gone.txt")


def test_hold_sends_its_steps_when_the_outer_block_ends(rec: Recorder) -> None:
    with api.hold():
        api.step("a", duration=1)
        with api.hold():
            api.step("b")
        assert rec.of("step") == []
        with pytest.raises(api.AmendWhileHoldingError):
            api.amend(inp="x.txt")
        api.amend(env="X")  # not an input: allowed
    assert [a["command"] for a in rec.of("step")] == ["a", "b"]


def test_hold_releases_when_its_block_raises(rec: Recorder) -> None:
    def held_then_raise() -> None:
        with api.hold():
            api.step("a")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        held_then_raise()
    assert [a["command"] for a in rec.of("step")] == ["a"]
    assert api._CLIENT.holding == 0


# shq(), graph(), get_info(), get_job_i(), get_rpc_client(), subs_env_vars()


def test_shq_quotes_and_fills_in(rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D", "my dir")
    assert api.shq("a b.txt") == "'a b.txt'"
    assert api.shq(["x", "${D}/y"]) == "x 'my dir/y'"
    assert shlex.split(api.shq(["x", "${D}/y"])) == ["x", "my dir/y"]
    assert rec.of("amend") == [{"inp": [], "env": ["D"], "out": [], "vol": []}] * 2


def test_graph_asks_the_planner(rec: Recorder) -> None:
    api.graph("current_graph")
    assert rec.of("graph") == [{"prefix": "current_graph"}]


def test_get_info_gives_paths_relative_to_here(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERE", "sub")
    rec.answers["info"] = {
        "key": "./work.py  # wd=sub/",
        "command": "./work.py",
        "workdir": "sub/",
        "inp": ["sub/work.py", "data/a.txt"],
        "env": ["B", "A"],
        "out": ["sub/o/"],
        "vol": [],
    }
    info = api.get_info()
    assert info.inp == ["../data/a.txt", "work.py"]
    assert info.out == ["o/"]
    assert (info.env, info.workdir, info.command) == (["A", "B"], "sub", "./work.py")


def test_get_info_outside_a_build() -> None:
    assert api.get_info().key == "dummy:"


def test_get_job_i(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPUP_JOB_I", raising=False)
    assert api.get_job_i() == -1
    monkeypatch.setenv("STEPUP_JOB_I", "7")
    assert api.get_job_i() == 7


def test_get_rpc_client_sends_what_has_a_meaning_here(rec: Recorder) -> None:
    client = api.get_rpc_client()
    client.call.write_graph("g")
    rec.answers["amend"] = False
    assert client.call.amend_step(-1, ["b.txt"], ["E"], [], []) is False
    assert rec.of("graph") == [{"prefix": "g"}]
    assert rec.of("amend") == [{"inp": ["b.txt"], "env": ["E"], "out": [], "vol": []}]
    with pytest.raises(NotImplementedError, match="no director method 'define_step'"):
        client.call.define_step(-1, "true")
    with pytest.raises(NotImplementedError, match="no director socket"):
        api.get_rpc_client("/tmp/socket")


def test_subs_env_vars_yields_a_substitutor(rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A", "x")
    with api.subs_env_vars() as subs:
        got = subs("${A}/$A/${*name}/")
        assert isinstance(subs, api.EnvSubstitutor)
        assert subs.used_env == {"A"}
        assert subs(None) is None
    assert got == "x/x/${*name}/"
    assert isinstance(got, Path)
    assert rec.of("amend") == [{"inp": [], "env": ["A"], "out": [], "vol": []}]
    with (
        pytest.raises(ValueError, match="Undefined shell variable: NOPE"),
        api.subs_env_vars() as subs,
    ):
        subs("${NOPE}")


def test_here_in_step_paths_is_the_workdir_s_in_the_4x_form_only(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERE", ".")
    api.step("true", inp="${HERE}/x", workdir="sub")
    api.step("true", inp="${HERE}/x", workdir="sub", duration=1)
    assert [a["inp"] for a in rec.of("step")] == [["sub/x"], ["sub/sub/x"]]


def test_here_and_root_for_a_workdir_are_computed(rec: Recorder) -> None:
    with api.subs_env_vars() as subs:
        assert subs("${HERE}/x", "sub/deeper") == "sub/deeper/x"
        assert subs("${ROOT}/x", "sub/deeper") == "../../x"
    assert rec.of("amend") == []
