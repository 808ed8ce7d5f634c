"""Plans written for StepUp 4's API, in real builds: `stepup-dist build` with its own workers.

Each test writes a plan as a StepUp 4 user would (`run`, `static` with patterns and folders,
`plan("./plan.py", workdir=...)`, `copy` into a folder nobody made, `getenv(path=...)`,
`shq`, `hold`, `graph`, `get_info`, `amend` raising `InputNotFoundError`), builds it, and
looks at the files it leaves, then builds again to see every step skipped.
"""

from tests.conftest import Project


def test_a_stepup_4_plan_runs_and_then_skips(project: Project) -> None:
    project.write("data/a.txt", "alpha\n")
    project.write("data/b c.txt", "beta\n")
    project.write("data/deep/d.txt", "delta\n")
    project.write("inp1.txt", "one\n")
    project.write("inp2.txt", "two\n")
    project.write(
        "work.py",
        """
        #!/usr/bin/env python
        import sys

        with open(sys.argv[1]) as fh, open(sys.argv[2], "w") as out:
            out.write(fh.read().upper())
        """,
        executable=True,
    )
    project.write(
        "say.sh",
        """
        #!/bin/sh
        echo "$MSG from $HERE" > "$1"
        """,
        executable=True,
    )
    project.plan(
        """
        from path import Path
        from stepup.core.api import copy, getenv, plan, run, shq, static

        # A static tree, files, a pattern; sub/ needs no static() of its own.
        assert static("data/", "work.py", "say.sh", "sub/plan.py") == [
            "data/", "say.sh", "sub/plan.py", "work.py"
        ]
        # StepUp 4's `**/` matches no folder too: data/a.txt is among these.
        assert static("data/**/*.txt") == ["data/a.txt", "data/b c.txt", "data/deep/d.txt"]
        for path in static("inp*.txt"):
            assert isinstance(path, Path)
            copy(path, "copies/")
        # ./work.py is an input of its own; res/ is made for the output.
        run("./work.py data/a.txt res/a.txt", inp="data/a.txt", out="res/a.txt")
        run("./work.py data/deep/d.txt res/d.txt", inp="data/deep/d.txt", out="res/d.txt")
        run(
            lambda inp, out: f"cat {shq(inp)} > {shq(out)}",
            inp=["data/b c.txt"],
            out=["both.txt"],
            shell=True,
        )
        run("MSG=hello ./say.sh msg.txt", out="msg.txt")
        outdir = getenv("OUTDIR", path=True)
        run(f"echo {outdir} > where.txt", shell=True, out="where.txt")
        plan("./plan.py", workdir="sub")
        """
    )
    project.plan(
        """
        from stepup.core.api import copy, static

        static("local.txt")
        copy("local.txt", "made/here.txt")
        """,
        relpath="sub/plan.py",
    )
    project.write("sub/local.txt", "local\n")
    env = {"OUTDIR": "some/dir/"}
    first = project.build("-w2", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    root = project.root
    assert (root / "copies/inp1.txt").read_text() == "one\n"
    assert (root / "copies/inp2.txt").read_text() == "two\n"
    assert (root / "res/a.txt").read_text() == "ALPHA\n"
    assert (root / "res/d.txt").read_text() == "DELTA\n"
    assert (root / "both.txt").read_text() == "beta\n"
    assert (root / "msg.txt").read_text() == "hello from .\n"
    assert (root / "where.txt").read_text() == "some/dir/\n"
    assert (root / "sub/made/here.txt").read_text() == "local\n"
    assert "cp -p inp1.txt copies/inp1.txt" in first.lines("SUCCESS")
    assert "./say.sh msg.txt" in first.lines("SUCCESS")
    again = project.build("-w2", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.lines("START") == []
    assert len(again.lines("SKIP")) == len(first.lines("SUCCESS"))
    # A new match of a static() pattern runs the plan again; so does a changed override.
    project.write("inp3.txt", "three\n")
    more = project.build("-w2", env=env)
    assert more.returncode == 0, more.stdout + more.stderr
    assert (root / "copies/inp3.txt").read_text() == "three\n"
    assert "./plan.py" in more.lines("SUCCESS")


def _late_reader(project: Project, name: str, body: str) -> None:
    """A script that amends late.txt (with `body`), then copies it to NAME.out."""
    out = name.replace(".py", ".out")
    project.write(
        name,
        f"#!/usr/bin/env python\n{body}"
        f"with open('late.txt') as fh, open('{out}', 'w') as o:\n"
        "    o.write(fh.read())\n",
        executable=True,
    )


def test_amend_of_an_input_made_later_runs_the_step_again(project: Project) -> None:
    # The maker of late.txt is optional: it only starts once a step amends its output, so
    # the first amend() surely finds late.txt missing. A step defined by run() calls in
    # StepUp 4's form: its amend() raises; the step runs again once late.txt is there.
    _late_reader(project, "v4.py", "from stepup.core.api import amend\n\namend(inp='late.txt')\n")
    project.plan(
        """
        from stepup.core.api import run, static

        static("v4.py")
        run("echo late > late.txt", shell=True, out="late.txt", optional=True)
        run("./v4.py", out="v4.out")
        """
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "v4.out").read_text() == "late\n"
    assert result.lines("START").count("./v4.py") == 2
    assert "InputNotFoundError: Dynamic inputs are not available yet." in result.stdout


def test_amend_in_the_1x_form_returns_false(project: Project) -> None:
    _late_reader(
        project,
        "v1.py",
        "import sys\nfrom stepup.core.api import amend\n\n"
        "if not amend(inp='late.txt'):\n    print('not yet')\n    sys.exit(0)\n",
    )
    project.plan(
        """
        from stepup.core.api import static, step

        static("v1.py")
        step("echo late > late.txt", out="late.txt", optional=True)
        step("./v1.py", inp="v1.py", out="v1.out")
        """
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "v1.out").read_text() == "late\n"
    assert result.lines("START").count("./v1.py") == 2
    assert "not yet" in result.stdout
    assert "InputNotFoundError" not in result.stdout


def test_hold_graph_and_get_info(project: Project) -> None:
    project.write(
        "info.py",
        """
        #!/usr/bin/env python
        from stepup.core.api import get_info

        info = get_info()
        with open("info.txt", "w") as fh:
            print(info.key, info.command, info.workdir, *info.inp, *info.out, file=fh)
        """,
        executable=True,
    )
    project.plan(
        """
        from pathlib import Path

        from stepup.core.api import graph, hold, run, static, step

        static("info.py")
        with hold():
            for name in ("a", "b"):
                step(f"echo {name} > {name}.txt", out=f"{name}.txt", duration=1.0)
            # Nothing held reaches the planner before the block ends.
            graph("held")
        run("./info.py", out="info.txt", workdir="./")
        graph("graphs/after")
        """
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    root = project.root
    assert (root / "a.txt").read_text() == "a\n"
    held = (root / "held.txt").read_text()
    assert "step echo a > a.txt" not in held
    after = (root / "graphs/after.txt").read_text()
    assert "step echo a > a.txt\n  state: " in after
    assert "step ./info.py\n" in after
    assert '"step:./info.py" -> "file:info.txt";' in (root / "graphs/after.dot").read_text()
    assert (root / "info.txt").read_text() == "./info.py ./info.py . info.py info.txt\n"


def test_a_static_folder_of_a_1x_plan_covers_what_is_under_it(project: Project) -> None:
    # A plan that uses only names both APIs have: what is in the tree becomes static once
    # nothing else can run (StepUp 1.x would leave the step pending).
    project.write("data/x.txt", "x\n")
    project.plan(
        """
        from stepup.core.api import static, step

        static("data/")
        step("cp data/x.txt y.txt", inp="data/x.txt", out="y.txt")
        step("cp ${inp} ${out}", inp="y.txt", out="z.txt")
        """
    )
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "z.txt").read_text() == "x\n"
    missing = project.build("-w2")
    assert missing.lines("START") == []
    (project.root / "data/x.txt").unlink()
    gone = project.build("-w2")
    assert gone.returncode != 0
    assert "data/x.txt, a static file that is missing" in gone.stdout
