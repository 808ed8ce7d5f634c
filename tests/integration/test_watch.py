"""`stepup-dist build --watch` under a real terminal (a pty): runs, edits, keys.

Each test runs a real build with local workers, waits for what it prints (never sleeps for
the build), edits files, presses keys and reads the lines of the next run.
"""

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from stepup_dist.cli.watching import NOTHING
from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project
from tests.helpers import processes_running, start_worker, stop

pytestmark = pytest.mark.timeout(150)

EXAMPLES = Path(__file__).parents[2] / "examples"
_ANSI = re.compile(r"\r?\x1b\[K|\r")


class Watch:
    """One `stepup-dist build --watch` on a pty, read run by run."""

    def __init__(self, root: Path, *args: str, term: str = "dumb", env: dict | None = None):
        env = {**os.environ, **(env or {})}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.pop("STEPUP_DIST_REDIS_URL", None)
        env["TERM"] = term
        self.child = pexpect.spawn(
            str(BIN / "stepup-dist"),
            [
                "build",
                "--watch",
                *(args if any(a.startswith("-w") for a in args) else ("-w2", *args)),
            ],
            cwd=str(root),
            env=env,
            encoding="utf-8",
            timeout=90,
            dimensions=(50, 250),
        )
        self.text = ""

    def until(self, pattern: str) -> list[tuple[str, str]]:
        """Read up to the line matching `pattern` (a regex); the (status, text) lines read."""
        self.child.expect(pattern)
        chunk = self.child.before + self.child.after
        self.text += chunk
        return lines_of(chunk)

    def run(self) -> list[tuple[str, str]]:
        """The lines of one run, up to its SUMMARY."""
        return self.until(r"SUMMARY │ [^\n]*\n")

    def key(self, key: str) -> None:
        self.child.send(key)

    def end(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(9)


def lines_of(text: str) -> list[tuple[str, str]]:
    """(status, step or path) of each StepUp-style line in `text`."""
    found = []
    for raw in _ANSI.sub("\n", text).splitlines():
        head, sep, rest = raw.partition(" │ ")
        if sep and head.strip().isupper():
            found.append((head.strip(), rest.rsplit("  [", 1)[0]))
    return found


def started(lines: list[tuple[str, str]]) -> list[str]:
    return [text for status, text in lines if status == "START"]


@pytest.fixture
def watch() -> Iterator[list[Watch]]:
    sessions: list[Watch] = []
    yield sessions
    for session in sessions:
        session.close()


CHAIN = """
    from stepup.core.api import static, step
    static("a.txt")
    step("cp a.txt b.txt", inp="a.txt", out="b.txt")
    step("cp b.txt c.txt", inp="b.txt", out="c.txt")
    step("echo other > other.txt", out="other.txt")
"""


def _chain(project: Project) -> None:
    project.plan(CHAIN)
    project.write("a.txt", "one\n")


def _edit(path: Path, text: str) -> None:
    path.write_text(text)


def test_edit_and_r_rerun_the_consumers_only(project: Project, watch: list[Watch]) -> None:
    _chain(project)
    w = Watch(project.root)
    watch.append(w)
    first = w.run()
    assert len(started(first)) == 4
    # Nothing changed and the run built everything: r looks, says so, and runs nothing.
    w.key("r")
    idle = w.until(r"nothing to run")
    assert ("KEYBOARD", f"r: {NOTHING}") in idle
    assert started(idle) == []
    _edit(project.root / "a.txt", "two\n")
    w.until(r"UPDATED │ a.txt")
    w.key("r")
    second = w.run()
    assert started(second) == ["cp a.txt b.txt", "cp b.txt c.txt"]
    assert (project.root / "c.txt").read_text() == "two\n"
    # The steps no change reached are skipped without a word (as in StepUp), and counted.
    assert [s for s, _ in second if s == "SKIP"] == []
    assert second[-1][1].startswith("2 succeeded, 2 skipped, 0 failed")
    w.key("g")
    w.until(r"KEYBOARD │ g: wrote the graph to graph.txt")
    graph = (project.root / "graph.txt").read_text()
    assert "step cp a.txt b.txt\n    workdir ./; succeeded\n" in graph
    assert "    inp a.txt\n    out b.txt\n" in graph
    assert "step echo other > other.txt\n    workdir ./; skipped\n" in graph
    # Keys: an unknown one prints the help; t checks and skips everything; f runs it all.
    w.key("x")
    assert any("unknown key 'x'" in text for _, text in w.until(r"keys: q [^\n]*\n"))
    w.key("t")
    third = w.run()
    assert started(third) == []
    assert len([s for s, _ in third if s == "SKIP"]) == 4
    w.key("f")
    fourth = w.run()
    assert sorted(started(fourth)) == sorted(
        ["./plan.py", "cp a.txt b.txt", "cp b.txt c.txt", "echo other > other.txt"]
    )
    w.key("j")
    assert w.end() == 0


def test_auto_runs_on_the_edit_alone(project: Project, watch: list[Watch]) -> None:
    _chain(project)
    w = Watch(project.root, "--auto")
    watch.append(w)
    w.run()
    # An output rewritten by hand is made again; an edited input reruns its consumer.
    (project.root / "other.txt").unlink()
    second = w.run()
    assert ("DELETED", "other.txt") in second
    assert started(second) == ["echo other > other.txt"]
    _edit(project.root / "a.txt", "three\n")
    third = w.run()
    assert started(third) == ["cp a.txt b.txt", "cp b.txt c.txt"]
    assert (project.root / "c.txt").read_text() == "three\n"
    # A burst of saves makes one run.
    for i in range(5):
        _edit(project.root / "a.txt", f"burst {i}\n")
    fourth = w.run()
    assert started(fourth) == ["cp a.txt b.txt", "cp b.txt c.txt"]
    assert (project.root / "c.txt").read_text() == "burst 4\n"
    # A step's own outputs never trigger a run: the next thing seen is the key.
    w.key("q")
    rest = w.until(r"KEYBOARD │ q[^\n]*\n")
    assert started(rest) == []
    assert w.end() == 0


def test_q_stops_after_the_running_step_and_keeps_its_record(
    project: Project, watch: list[Watch]
) -> None:
    project.plan("""
        from stepup.core.api import step
        step("touch started; sleep 1; echo slow > slow.txt", out="slow.txt")
    """)
    w = Watch(project.root)
    watch.append(w)
    w.until(r"START │ touch started")
    w.key("q")
    lines = w.until(r"SUMMARY │ [^\n]*\n")
    assert ("SUCCESS", "touch started; sleep 1; echo slow > slow.txt") in lines
    assert w.end() == 0
    again = project.build("-w1")
    assert again.lines("SKIP") == ["./plan.py", "touch started; sleep 1; echo slow > slow.txt"]


def test_q_with_steps_left_exits_with_the_code_of_what_ran_not_ctrl_c_s(
    project: Project, watch: list[Watch]
) -> None:
    project.plan("""
        from stepup.core.api import pool, step
        pool("one", 1)
        step("touch started; sleep 1; echo a > a.txt", out="a.txt", pool="one")
        step("echo b > b.txt", out="b.txt", pool="one")
    """)
    w = Watch(project.root)
    watch.append(w)
    w.until(r"START │ touch started")
    w.key("q")
    lines = w.run()
    assert ("SUCCESS", "touch started; sleep 1; echo a > a.txt") in lines
    assert "1 not run (stopped)" in lines[-1][1], lines
    # q is asked for (StepUp's shutdown): DRAINED, not Ctrl-C's INTERRUPTED.
    assert w.end() == ReturnCode.DRAINED


def test_d_drains_the_run_and_keeps_watching(project: Project, watch: list[Watch]) -> None:
    project.plan("""
        from stepup.core.api import pool, step
        pool("one", 1)
        step("touch started; sleep 1; echo a > a.txt", out="a.txt", pool="one")
        step("echo b > b.txt", out="b.txt", pool="one")
    """)
    w = Watch(project.root)
    watch.append(w)
    w.until(r"START │ touch started")
    w.key("d")
    first = w.run()
    assert ("KEYBOARD", "d: draining: queueing nothing new, waiting for the running steps") in first
    assert ("SUCCESS", "touch started; sleep 1; echo a > a.txt") in first
    assert "1 not run (stopped)" in first[-1][1]
    assert not (project.root / "b.txt").exists()
    w.key("r")
    second = w.run()
    assert started(second) == ["echo b > b.txt"]
    assert (project.root / "b.txt").read_text() == "b\n"
    w.key("q")
    assert w.end() == 0


GLOB_PLAN = """
    from stepup.core.api import glob, static, step
    static("inp/")
    for path in glob("inp/*.txt"):
        step(f"cp {path} {path}.out", inp=path, out=f"{path}.out")
"""


def test_a_new_or_removed_glob_match_reruns_its_plan(project: Project, watch: list[Watch]) -> None:
    project.plan(GLOB_PLAN)
    project.write("inp/a.txt", "a\n")
    w = Watch(project.root)
    watch.append(w)
    first = w.run()
    assert started(first) == ["./plan.py", "cp inp/a.txt inp/a.txt.out"]
    project.write("inp/b.txt", "b\n")
    w.until(r"NEW │ inp/b.txt")
    w.key("r")
    second = w.run()
    assert started(second) == ["./plan.py", "cp inp/b.txt inp/b.txt.out"]
    assert (project.root / "inp/b.txt.out").read_text() == "b\n"
    (project.root / "inp/a.txt").unlink()
    w.until(r"GONE │ inp/a.txt")
    w.key("r")
    third = w.run()
    assert started(third) == ["./plan.py"]
    assert ("CLEAN", "inp/a.txt.out") in third
    assert not (project.root / "inp/a.txt.out").exists()
    w.key("q")
    assert w.end() == 0


def test_a_plan_error_fixed_while_watching(project: Project, watch: list[Watch]) -> None:
    project.plan("""
        from stepup.core.api import step
        step("echo fixed > fixed.txt", out="fixed.txt"
    """)
    w = Watch(project.root, "--auto")
    watch.append(w)
    first = w.run()
    assert ("FAIL", "./plan.py") in first
    project.plan("""
        from stepup.core.api import step
        step("echo fixed > fixed.txt", out="fixed.txt")
    """)
    second = w.run()
    assert ("UPDATED", "plan.py") in second
    assert started(second) == ["./plan.py", "echo fixed > fixed.txt"]
    assert "0 failed" in second[-1][1]
    assert (project.root / "fixed.txt").read_text() == "fixed\n"
    w.key("q")
    assert w.end() == 0


def test_seed_pools_example_f_reruns_under_the_pool(tmp_path: Path, watch: list[Watch]) -> None:
    """The seed's last line: run interactively, press f, the three steps run again, two at
    a time at most (the pool), with the status line drawn (a real TERM)."""
    root = tmp_path / "pools"
    shutil.copytree(EXAMPLES / "pools", root, ignore=shutil.ignore_patterns(".stepup"))
    w = Watch(root, term="xterm")
    watch.append(w)
    w.run()
    w.key("f")
    lines = w.run()
    steps = {f"sleep 0.1; echo {x}" for x in "ABC"}
    assert set(started(lines)) == {"./plan.py", *steps}
    running, peak = set(), 0
    for status, text in lines:
        if text in steps and status == "START":
            running.add(text)
            peak = max(peak, len(running))
        elif text in steps and status == "SUCCESS":
            running.discard(text)
    assert peak == 2
    assert "done ·" in w.text  # the status line
    w.key("q")
    assert w.end() == 0


def _other_host() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "new mount and network namespaces need root"
    probe = subprocess.run(
        ["unshare", "--mount", "--net", "true"], check=False, capture_output=True
    )
    if probe.returncode != 0:
        return f"cannot make namespaces: {probe.stderr.decode().strip()}"
    return None


OTHER_HOST = _other_host()


def test_polling_sees_an_edit_from_another_host(project: Project, watch: list[Watch]) -> None:
    """A process in mount and network namespaces of its own (another "host", with the
    project folder bind-mounted at another path, as a compute node mounts a shared
    filesystem) edits an input: polling sees it, with inotify off (--poll). Skipped
    without root, saying why; CI (CI=true, as root) must run it."""
    if OTHER_HOST is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs as root and must run this test: {OTHER_HOST}")
        pytest.skip(f"no other host: {OTHER_HOST}")
    _chain(project)
    w = Watch(project.root, "--auto", "--poll", "0.2")
    watch.append(w)
    w.until(r"WATCH │ polling every 0.2 s")
    w.run()
    script = (
        "set -e; mkdir -p /mnt/elsewhere; "
        f"mount --bind {project.root} /mnt/elsewhere; "
        "printf 'from another host\\n' > /mnt/elsewhere/a.txt"
    )
    subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script],
        check=True,
    )
    second = w.run()
    assert ("UPDATED", "a.txt") in second
    assert started(second) == ["cp a.txt b.txt", "cp b.txt c.txt"]
    assert (project.root / "c.txt").read_text() == "from another host\n"
    w.key("q")
    assert w.end() == 0


def test_without_a_terminal_sigterm_stops_the_loop(project: Project) -> None:
    _chain(project)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("STEPUP_DIST_REDIS_URL", None)
    proc = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "--watch", "-w1"],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "SUMMARY" in line:
            break
    proc.terminate()
    rest, _ = proc.communicate(timeout=60)
    # The last run's code (0), with StepUp 4's bit for a signal.
    assert proc.returncode == ReturnCode.INTERRUPTED, "".join(seen) + rest
    assert "stopped watching" in rest


def _shells(marker: str) -> list[int]:
    """Pids of the `sh -c` processes running a step whose command holds `marker`."""
    found = []
    for pid in processes_running(marker):
        with contextlib.suppress(OSError):  # it may have ended meanwhile
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/bin/sh"):
                found.append(pid)
    return found


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def test_the_loop_survives_a_server_restart_and_a_killed_worker(
    tmp_path: Path, prefix: str, watch: list[Watch]
) -> None:
    """Between runs the server restarts (forgetting everything); in the next run the
    worker of a step is killed: the step runs again elsewhere, and the loop goes on."""
    from stepup_dist.broker.server import EmbeddedServer

    lease = {"STEPUP_DIST_LEASE": "6"}  # as the cluster box's tests: CI's load
    server = EmbeddedServer(tmp_path / "srv")
    server.start()
    workers = [start_worker(server.url, prefix, env=lease) for _ in range(2)]
    project = Project(tmp_path / "p")
    marker = f"sleep 2.{os.getpid()}"
    project.plan(f"""
        from stepup.core.api import static, step
        static("a.txt")
        step("touch started; cp a.txt b.txt; {marker}", inp="a.txt", out="b.txt")
    """)
    project.write("a.txt", "one\n")
    try:
        w = Watch(
            project.root, "--auto", "-w0", "--redis", server.url, "--prefix", prefix, env=lease
        )
        watch.append(w)
        w.run()
        server.stop()
        w.until(r"REDIS │ [^\n]*reconnecting")
        server.start()
        w.until(r"REDIS │ the server restarted")
        (project.root / "started").unlink()
        _edit(project.root / "a.txt", "two\n")
        w.until(r"START │ touch started")
        deadline = time.monotonic() + 30
        while not _shells(marker):
            assert time.monotonic() < deadline, "the step never started its command"
            time.sleep(0.05)
        # A shell's fork for `touch` or `cp` has the shell's command line until it execs:
        # only a shell whose parent is not one is the step's. Under load, a lapsed lease may
        # leave an older attempt dying: take the newest.
        shells = {pid: _parent(pid) for pid in _shells(marker)}
        shell = max(
            p for p, parent in shells.items() if parent is not None and parent not in shells
        )
        worker = shells[shell]
        assert worker is not None
        os.kill(worker, 9)
        lines = w.run()
        assert ("SUCCESS", f"touch started; cp a.txt b.txt; {marker}") in lines, w.text
        assert any(status == "LOST" for status, _ in lines), w.text
        assert (project.root / "b.txt").read_text() == "two\n"
        w.key("q")
        assert w.end() == 0
    finally:
        stop(workers)
        server.stop()
