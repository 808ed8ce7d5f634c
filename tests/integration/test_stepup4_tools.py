"""StepUp 4's composite plan functions in real builds: `call` (with `stepup.core.call`),
`script` in its 4.x form, `render_jinja`, `loadns`, `dumpns` and `stepup.core.extapi`.

Each test runs `stepup-dist build -w2` (private server, two local workers) on a project
written as a StepUp 4 user writes it, and checks the files the build leaves and which steps
run again when an input changes.
"""

import json

from tests.conftest import Project

WORK = """
    #!/usr/bin/env python3
    from path import Path
    from stepup.core.api import call
    from stepup.core.call import driver


    def plan(inp, greeting: str):
        for i, name in enumerate(["a", "b"]):
            call("./work.py", "run", inp=inp, out=[f"{name}.txt"], greeting=greeting, n=i)


    def run(inp: list[Path], out: list[Path], greeting: str, n: float):
        assert isinstance(inp[0], Path) and isinstance(n, float)
        with open(inp[0]) as src, open(out[0], "w") as dst:
            dst.write(f"{greeting} {n} {src.read()}")


    if __name__ == "__main__":
        driver()
"""


def _ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stdout + result.stderr


def test_call_runs_functions_that_plan_more_calls(project: Project) -> None:
    project.write("work.py", WORK, executable=True)
    project.write("data.txt", "data\n")
    project.plan(
        """
        from stepup.core.api import call, static

        static("work.py", "data.txt")
        call("./work.py", "plan", planning=True, inp="data.txt", greeting="$out ok")
        """
    )
    first = project.build("-w2")
    _ok(first)
    assert (project.root / "a.txt").read_text() == "$out ok 0.0 data\n"
    assert (project.root / "b.txt").read_text() == "$out ok 1.0 data\n"
    assert (
        """./work.py run '{"greeting": "$out ok", "n": 1, "inp": ["data.txt"], "out": """
        """["b.txt"]}'"""
    ) in first.lines("SUCCESS")
    again = project.build("-w2")
    _ok(again)
    assert again.lines("SUCCESS") == []
    project.write("data.txt", "new\n")
    changed = project.build("-w2")
    _ok(changed)
    # The planning call lists data.txt as input too (and passes it on): all three run.
    assert len(changed.lines("SUCCESS")) == 3
    assert "./plan.py" not in changed.lines("SUCCESS")
    assert (project.root / "b.txt").read_text() == "$out ok 1.0 new\n"


def test_an_args_file_carries_the_arguments_and_their_changes(project: Project) -> None:
    project.write("work.py", WORK, executable=True)
    project.write("data.txt", "data\n")
    plan = """
        from stepup.core.api import call, static

        static("work.py", "data.txt")
        call("./work.py", "plan", inp="data.txt", greeting="{}", args_file="args.json")
        """
    project.plan(plan.format("hello"))
    first = project.build("-w2")
    _ok(first)
    assert json.loads((project.root / "args.json").read_text()) == {
        "greeting": "hello",
        "inp": ["data.txt"],
    }
    assert "./work.py plan --inp=args.json" in first.lines("SUCCESS")
    assert (project.root / "a.txt").read_text() == "hello 0.0 data\n"
    _ok(again := project.build("-w2"))
    assert again.lines("SUCCESS") == []
    # The command stays the same: only the file's new content can run the step again.
    project.plan(plan.format("bye"))
    changed = project.build("-w2")
    _ok(changed)
    assert "./work.py plan --inp=args.json" in changed.lines("SUCCESS")
    assert (project.root / "a.txt").read_text() == "bye 0.0 data\n"


def test_a_bad_args_file_suffix_fails_the_plan(project: Project) -> None:
    project.write("work.py", WORK, executable=True)
    project.plan(
        """
        from stepup.core.api import call, static

        static("work.py")
        call("./work.py", "run", out="a.txt", args_file="args.dat")
        """
    )
    result = project.build("-w2")
    assert result.returncode != 0
    assert "unsupported file format" in result.stdout + result.stderr
    assert not (project.root / "args.dat").exists()


SCRIPT = """
    #!/usr/bin/env python3
    from stepup.core.script import driver

    CASE_FMT = "{:+03.1f}"


    def cases():
        yield -5.0
        yield 7.0


    def case_info(num):
        return {"out": f"data{num:+03.1f}.txt", "num": num}


    def run(num, out):
        from helper import word  # imported only while running

        with open(out, "w") as fh:
            fh.write(f"{word()} {num}\\n")


    if __name__ == "__main__":
        driver()
"""


def test_script_in_stepup4_form(project: Project) -> None:
    project.write("work.py", SCRIPT, executable=True)
    project.write("helper.py", "def word():\n    return 'one'\n")
    project.plan(
        """
        from stepup.core.api import script, static

        static("helper.py", "work.py")
        script("work.py", step_info="info.json")
        """
    )
    first = project.build("-w2")
    _ok(first)
    succeeded = first.lines("SUCCESS")
    assert "./work.py plan --step-info=info.json" in succeeded
    assert {"./work.py run -- -5.0", "./work.py run +7.0"} <= set(succeeded)
    assert (project.root / "data+7.0.txt").read_text() == "one 7.0\n"
    info = json.loads((project.root / "info.json").read_text())
    assert [i["command"] for i in info] == ["./work.py run -- -5.0", "./work.py run +7.0"]
    assert info[0]["inp"] == ["./work.py"]
    # helper.py is imported only inside run(): the run steps amended it as an input.
    project.write("helper.py", "def word():\n    return 'two'\n")
    changed = project.build("-w2")
    _ok(changed)
    assert sorted(changed.lines("SUCCESS")) == ["./work.py run +7.0", "./work.py run -- -5.0"]
    assert (project.root / "data-5.0.txt").read_text() == "two -5.0\n"


def test_an_ambiguous_script_call_in_a_stepup4_plan(project: Project) -> None:
    project.write("work.py", SCRIPT, executable=True)
    project.write("helper.py", "def word():\n    return 'one'\n")
    project.plan(
        """
        from stepup.core.api import run, script, static

        static("helper.py", "work.py")
        script("work.py")
        run("./helper.py", inp="helper.py") if False else None
        """
    )
    result = project.build("-w2")
    _ok(result)
    # The plan imported run(): StepUp 4's form, without a step-info file.
    assert {"./work.py plan", "./work.py run -- -5.0", "./work.py run +7.0"} <= set(
        result.lines("SUCCESS")
    )
    assert (project.root / "data-5.0.txt").read_text() == "one -5.0\n"


def test_script_in_stepup1_form_with_a_positional_workdir(project: Project) -> None:
    project.write(
        "sub/gen.py",
        """
        #!/usr/bin/env python3
        from stepup.core.script import driver


        def info():
            return {"out": "out.txt", "stdout": "log.txt"}


        def run(out):
            print("logged")
            with open(out, "w") as fh:
                fh.write("made\\n")


        if __name__ == "__main__":
            driver()
        """,
        executable=True,
    )
    project.plan(
        """
        from stepup.core.api import script, static

        static("sub/", "sub/gen.py")
        script("gen.py", "sub/")
        """
    )
    result = project.build("-w2")
    _ok(result)
    assert (project.root / "sub/out.txt").read_text() == "made\n"
    assert (project.root / "sub/log.txt").read_text() == "logged\n"
    assert "./gen.py run > log.txt  # wd=sub/" in result.lines("SUCCESS")


def test_render_jinja_from_files_and_dicts(project: Project) -> None:
    project.write("tpl.txt", "Hi {{ name }}, a {{ mood }} day{{ mark }}\n")
    project.write("config.yaml", "name: Alice\nmood: great\n")
    project.write("main.tex", "\\title{<< title >>}\n\\input{<< extra >>}\n")
    project.write(
        "vars.py", "from path import Path\ntitle = 'Everything'\nextra = Path('pre.tex')\n"
    )
    project.plan(
        """
        from stepup.core.api import render_jinja, static

        static("tpl.txt", "config.yaml", "main.tex", "vars.py")
        render_jinja("tpl.txt", "config.yaml", {"mark": "!"}, "email.txt")
        # As in StepUp 4, the folder of the output is made for the step.
        render_jinja("main.tex", "vars.py", "public/")
        """
    )
    first = project.build("-w2")
    _ok(first)
    assert (project.root / "email.txt").read_text() == "Hi Alice, a great day!\n"
    # latex delimiters for a .tex output; a Path from vars.py is made relative to public/.
    assert (project.root / "public/main.tex").read_text() == (
        "\\title{Everything}\n\\input{../pre.tex}\n"
    )
    assert any(
        line.startswith("python3 -m stepup.core.render_jinja main.tex vars.py public/main.tex")
        for line in first.lines("SUCCESS")
    )
    project.write("config.yaml", "name: Bob\nmood: fine\n")
    changed = project.build("-w2")
    _ok(changed)
    assert len(changed.lines("SUCCESS")) == 1
    assert (project.root / "email.txt").read_text() == "Hi Bob, a fine day!\n"


def test_loadns_and_dumpns_between_a_plan_and_its_steps(project: Project) -> None:
    project.write("config.toml", 'names = ["x", "y"]\n')
    project.write(
        "count.py",
        """
        #!/usr/bin/env python3
        from stepup.core.api import dumpns, loadns

        ns = loadns("config.toml")
        dumpns("count.json", {"count": len(ns.names), "names": ns.names})
        """,
        executable=True,
    )
    project.plan(
        """
        from stepup.core.api import loadns, static, step

        static("config.toml", "count.py")
        for name in loadns("config.toml").names:
            step(f"echo {name} > {name}.txt", out=f"{name}.txt")
        step("./count.py", inp="count.py")
        step("cp count.json copy.json", inp="count.json", out="copy.json")
        """
    )
    first = project.build("-w2")
    _ok(first)
    assert (project.root / "y.txt").read_text() == "y\n"
    assert json.loads((project.root / "copy.json").read_text()) == {
        "count": 2,
        "names": ["x", "y"],
    }
    # The plan amended config.toml, which it declares static itself: it is checked with the
    # plan's outputs, and the plan is skipped.
    again = project.build("-w2")
    _ok(again)
    assert again.lines("SUCCESS") == []
    assert "./plan.py" in again.lines("SKIP")
    project.write("config.toml", 'names = ["z"]\n')
    changed = project.build("-w2")
    _ok(changed)
    # The plan and count.py read config.toml (loadns amended it): both ran again.
    assert {"./plan.py", "./count.py", "echo z > z.txt"} <= set(changed.lines("SUCCESS"))
    assert json.loads((project.root / "copy.json").read_text())["count"] == 1


def test_extapi_in_a_wrapper_step(project: Project) -> None:
    project.write("local_mod.py", "VALUE = 3\n")
    project.write(
        "wrap.py",
        """
        #!/usr/bin/env python3
        import local_mod
        from stepup.core.extapi import child_env, get_local_import_paths, run_subprocess

        cp = run_subprocess("GREETING=hi sh -c 'echo $GREETING $HERE'", workdir="sub")
        imports = [str(p) for p in get_local_import_paths("wrap.py")]
        with open("wrapped.txt", "w") as fh:
            print(cp.stdout.strip(), imports, child_env("sub")["ROOT"], file=fh)
        """,
        executable=True,
    )
    project.plan(
        """
        from stepup.core.api import static, step

        static("wrap.py", "local_mod.py", "sub/")
        step("./wrap.py", inp="wrap.py", out="wrapped.txt")
        """
    )
    (project.root / "sub").mkdir()
    result = project.build("-w2")
    _ok(result)
    assert (project.root / "wrapped.txt").read_text() == "hi sub ['local_mod.py'] ..\n"
