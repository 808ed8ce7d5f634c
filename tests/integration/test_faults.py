"""Faults of a real cluster: dead workers, a dead planner. Real processes, real kill -9."""

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

from stepup_dist.errors import ReturnCode
from tests.conftest import BIN, Project
from tests.helpers import peak, processes_running, start_build, start_worker, stop

LEASE = {"STEPUP_DIST_LEASE": "3"}


def _build(project: Project, url: str, prefix: str) -> subprocess.Popen:
    return start_build(project, url, prefix, LEASE)


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_step_of_a_killed_worker_runs_again_elsewhere(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    workers = [start_worker(server.url, prefix, env=LEASE) for _ in range(2)]
    marker = f"sleep 2.{os.getpid()}"
    log = project.root / "attempts.log"
    project.plan(
        "from stepup.core.api import step\n"
        f'step("echo start >> {log}; {marker}; echo ok > out.txt", out="out.txt")\n'
    )
    build = _build(project, server.url, prefix)
    try:
        _wait_for(log)
        time.sleep(0.2)
        (shell,) = [
            pid
            for pid in processes_running(marker)
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/bin/sh")
        ]
        victim = _parent(shell)  # the stepup-worker that runs `sh -c`
        os.kill(victim, signal.SIGKILL)
        # Its watchdog sees the worker die and kills the step at once.
        time.sleep(0.5)
        assert not processes_running(marker) or log.read_text().count("start") == 2
        text, _ = build.communicate(timeout=60)
    finally:
        stop([build, *workers])
    assert build.returncode == 0, text
    assert "LOST" in text
    assert log.read_text().split() == ["start", "start"]
    assert (project.root / "out.txt").read_text() == "ok\n"


def test_a_step_killed_with_its_workers_job_runs_again(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    """As Slurm ends a job (scancel, time limit): SIGTERM to the step and its worker at once.
    The step is not a failure of its own: it runs again on another worker."""
    workers = [start_worker(server.url, prefix, env=LEASE) for _ in range(2)]
    marker = f"sleep 3.{os.getpid()}"
    log = project.root / "attempts.log"
    project.plan(
        "from stepup.core.api import step\n"
        f'step("echo start >> {log}; echo ok > out.txt; exec {marker}", out="out.txt")\n'
    )
    build = _build(project, server.url, prefix)
    try:
        _wait_for(log)
        deadline = time.monotonic() + 10
        while not (steps := processes_running(marker)):
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.05)
        (step,) = steps
        victim = _parent(step)  # the stepup-worker whose `sh -c` became the sleep
        os.kill(step, signal.SIGTERM)
        os.kill(victim, signal.SIGTERM)
        text, _ = build.communicate(timeout=60)
    finally:
        stop([build, *workers])
    assert build.returncode == 0, text
    assert "LOST" in text, text
    assert log.read_text().split() == ["start", "start"]


def test_a_step_lost_three_times_fails(project: Project, server, prefix: str) -> None:  # type: ignore[no-untyped-def]
    workers = [start_worker(server.url, prefix, env=LEASE) for _ in range(3)]
    # The step kills the worker that runs it (its shell's parent), every time.
    project.plan(
        'from stepup.core.api import step\nstep("kill -9 $PPID; sleep 5")\nstep("echo fine")\n'
    )
    build = _build(project, server.url, prefix)
    try:
        text, _ = build.communicate(timeout=90)
    finally:
        stop([build, *workers])
    assert build.returncode == ReturnCode.FAILED | ReturnCode.DRAINED, text
    assert "lost 3 times" in text
    assert text.count("LOST") == 2
    assert "Traceback" not in text


def test_steps_of_a_killed_planner_stop_within_the_lease(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    worker = start_worker(server.url, prefix, env=LEASE)
    marker = f"sleep 60.{os.getpid()}"
    project.plan(f'from stepup.core.api import step\nstep("touch go; {marker}")\n')
    build = _build(project, server.url, prefix)
    try:
        _wait_for(project.root / "go")
        time.sleep(0.2)
        assert processes_running(marker)
        build.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while processes_running(marker):
            assert time.monotonic() - killed < 3 + 1.5, "the step outlived its lease"
            time.sleep(0.1)
        # The worker lives on and serves the next build.
        assert worker.poll() is None
    finally:
        stop([build, worker])


def test_the_next_build_resumes_after_a_killed_planner(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    worker = start_worker(server.url, prefix, env=LEASE)
    project.plan(
        "from stepup.core.api import step\n"
        'step("echo a > a.txt", out="a.txt")\n'
        'step("cat a.txt > b.txt; touch slow; sleep 30", inp="a.txt", out="b.txt")\n'
    )
    build = _build(project, server.url, prefix)
    try:
        _wait_for(project.root / "slow")
        # No wait for a save: the journal holds what finished.
        build.send_signal(signal.SIGKILL)
        build.wait()
        # A lease later, the worker has stopped the slow step (a build started within the
        # lease would wait for it and adopt its result instead: test_adopt.py).
        time.sleep(3.5)
    finally:
        stop([build])
    project.plan(
        "from stepup.core.api import step\n"
        'step("echo a > a.txt", out="a.txt")\n'
        'step("cat a.txt > b.txt", inp="a.txt", out="b.txt")\n'
    )
    try:
        result = project.build("-w0", "--redis", server.url, "--prefix", prefix, env=LEASE)
    finally:
        stop([worker])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "echo a > a.txt" in result.lines("SKIP")
    assert "cat a.txt > b.txt" in result.lines("SUCCESS")


def test_ctrl_c_lets_running_steps_finish_and_keeps_their_results(project: Project) -> None:
    project.plan(
        "from stepup.core.api import pool, step\n"
        'pool("one", 1)\n'
        'step("touch running; sleep 2; echo 1 > first.txt", out="first.txt", pool="one")\n'
        'step("echo 2 > second.txt", out="second.txt", pool="one")\n'
    )
    build = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w2"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal would make it
    )
    try:
        _wait_for(project.root / "running")
        os.killpg(build.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        text, _ = build.communicate(timeout=60)
    finally:
        stop([build])
    assert build.returncode == ReturnCode.INTERRUPTED | ReturnCode.DRAINED, text
    assert "INTERRUPT" in text
    assert (project.root / "first.txt").read_text() == "1\n"
    assert not (project.root / "second.txt").exists()
    assert "Traceback" not in text
    # What finished was recorded: the next build skips it and runs the rest.
    result = project.build("-w2")
    assert result.returncode == 0, result.stdout
    assert "touch running; sleep 2; echo 1 > first.txt" in result.lines("SKIP")
    assert result.lines("SUCCESS") == ["echo 2 > second.txt"]


def test_a_build_survives_a_redis_restart(tmp_path: Path, prefix: str) -> None:
    from stepup_dist.broker.server import EmbeddedServer

    server = EmbeddedServer(tmp_path / "srv")
    server.start()
    workers = [start_worker(server.url, prefix, env=LEASE) for _ in range(2)]
    project = Project(tmp_path / "p")
    log = tmp_path / "runs.log"
    stamp = "$(python3 -c 'import time; print(time.time())')"
    project.plan(
        "from stepup.core.api import pool, step\n"
        'pool("two", 2)\n'
        "for i in range(6):\n"
        f'    step(f"s={stamp}; touch started{{i}}; sleep 1; echo {{i}} > o{{i}}.txt; '
        f'echo {{i}} $s {stamp} >> {log}", out=f"o{{i}}.txt", pool="two")\n'
    )
    build = _build(project, server.url, prefix)
    try:
        _wait_for(project.root / "started1")
        server.stop()  # no persistence: queue, leases and inbox are gone
        time.sleep(1.0)
        server.start()
        text, _ = build.communicate(timeout=120)
    finally:
        stop([build, *workers])
        server.stop()
    assert build.returncode == 0, text
    assert "reconnected" in text
    for i in range(6):
        assert (project.root / f"o{i}.txt").read_text() == f"{i}\n"
    # Every step ran to completion; only those running when the server lost their leases
    # ran again (after a whole lease), and the pool never held more than 2.
    runs = [line.split() for line in log.read_text().splitlines()]
    done = [int(r[0]) for r in runs]
    assert set(done) == set(range(6)), runs
    assert len(done) <= 12, runs  # a step that finished as the server went may run twice
    spans = [("s", float(r[1]), float(r[2])) for r in runs]
    assert peak(spans) <= 2
    # Nothing recorded is lost: a second build skips everything.
    server.start()
    try:
        again = project.build("-w1", "--redis", server.url, "--prefix", prefix)
    finally:
        server.stop()
    assert again.returncode == 0, again.stdout
    assert again.lines("SUCCESS") == []


def test_a_server_that_stays_away_ends_the_build_with_a_message(
    tmp_path: Path, prefix: str
) -> None:
    from stepup_dist.broker.server import EmbeddedServer

    server = EmbeddedServer(tmp_path / "srv")
    server.start()
    worker = start_worker(server.url, prefix, env=LEASE)
    project = Project(tmp_path / "p")
    project.plan('from stepup.core.api import step\nstep("touch go; sleep 30")\n')
    env = {**LEASE}
    build = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w0", "--redis", server.url, "--prefix", prefix],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env, "STEPUP_DIST_RECONNECT": "3"},
    )
    try:
        _wait_for(project.root / "go")
        server.stop()
        out, err = build.communicate(timeout=120)
    finally:
        stop([build, worker])
        server.stop()
    assert build.returncode == ReturnCode.INTERNAL, out + err
    assert "gave up reconnecting" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


def test_garbage_in_the_planner_inbox_is_ignored_with_a_warning(
    project: Project, server, prefix: str, client
) -> None:  # type: ignore[no-untyped-def]
    from stepup_dist.broker.keys import Keys

    worker = start_worker(server.url, prefix, env=LEASE)
    project.plan(
        "from stepup.core.api import step\n"
        'step("touch go; sleep 1; echo ok > out.txt", out="out.txt")\n'
    )
    build = _build(project, server.url, prefix)
    try:
        _wait_for(project.root / "go")
        # The build's liveness key names it; its inbox may be empty (and so absent).
        (alive,) = client.keys(Keys(prefix).build_alive("*"))
        inbox = Keys(prefix).inbox(alive.decode().split(":")[-2])
        for junk in (b"\x00garbage", b"\x93\x01", b"\x81\xa1v\x02", b"\xc1" * 100):
            client.rpush(inbox, junk)
        text, _ = build.communicate(timeout=60)
    finally:
        stop([build, worker])
    assert build.returncode == 0, text
    assert text.count("WARNING") == 4
    assert "malformed message" in text
    assert (project.root / "out.txt").read_text() == "ok\n"


def test_a_step_never_runs_on_a_stale_input(project: Project) -> None:
    # a.txt changes behind the planner's back after its producer reported it: the consumer
    # (held back by a slow second input) must wait, then fail naming the file and the host.
    project.plan(
        "from stepup.core.api import step\n"
        'step("echo aaaa > a.txt; (sleep 0.3; echo bbbb > a.txt) &", out="a.txt")\n'
        'step("sleep 1.5; touch delay.txt", out="delay.txt")\n'
        'step("cat a.txt > b.txt", inp=["a.txt", "delay.txt"], out="b.txt")\n'
    )
    result = project.build("-w2", env={"STEPUP_DIST_FS_WAIT": "1"})
    assert result.returncode == ReturnCode.FAILED | ReturnCode.DRAINED, result.stdout
    assert result.lines("FAIL") == ["cat a.txt > b.txt"]
    assert "input a.txt is missing or differs from what was made, on " in result.stdout.lower()
    assert not (project.root / "b.txt").exists()


def _lose_job(client, keys, described: str, deadline: float) -> None:  # type: ignore[no-untyped-def]
    """Wait for the queued job whose description starts with `described`; make it vanish."""
    from stepup_dist.broker.keys import QUEUE_NAME

    queue = f"{keys.rq_prefix}:queue:{QUEUE_NAME}"
    while True:
        for job_id in client.lrange(queue, 0, -1):
            key = keys.rq_job(job_id.decode())
            if (client.hget(key, "description") or b"").decode().startswith(described):
                client.lrem(queue, 0, job_id)
                client.delete(key)
                return
        assert time.monotonic() < deadline, f"no job {described!r} was queued"
        time.sleep(0.02)


def test_lost_jobs_are_queued_again(project: Project, server, prefix: str, client) -> None:  # type: ignore[no-untyped-def]
    from stepup_dist.broker.keys import Keys

    keys = Keys(prefix)
    project.plan(
        "import time\nfrom stepup.core.api import step\n"
        'step("echo ok > out.txt", out="out.txt")\ntime.sleep(2)\n'
    )
    # A worker of the `steps` queue, as the planner sees one in the registry, that takes
    # nothing: the planner queues its jobs, which then wait for the test to lose them.
    idle = f"{keys.rq_prefix}:worker:idle-{prefix}"
    client.sadd(f"{keys.rq_prefix}:workers:steps", idle)
    client.hset(idle, "state", "idle")
    build = _build(project, server.url, prefix)
    worker = None
    try:
        deadline = time.monotonic() + 30
        # The hash check of plan.py vanishes first, then (while one worker is busy with the
        # plan for 2 s) the step's job, as if a worker had died holding each.
        _lose_job(client, keys, "hash check", deadline)
        worker = start_worker(server.url, prefix, env=LEASE)
        _lose_job(client, keys, "echo ok > out.txt", deadline)
        text, _ = build.communicate(timeout=60)
    finally:
        stop([build, *([worker] if worker else [])])
    assert build.returncode == 0, text
    assert "hash check 1 (its job was lost before it started (gone); asking again)" in text
    assert "its job was lost before it started (gone); running it again" in text
    assert (project.root / "out.txt").read_text() == "ok\n"


def test_a_planner_behind_its_inbox_loses_no_finished_step(
    project: Project, server, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    # A worker ends a step's run lease in the same atomic step that posts its report. A
    # planner stopped for a while finds more than one read (1000 messages) in its inbox; a
    # lease gone must then not count as lost while its report is still unread.
    steps = 2500
    workers = [start_worker(server.url, prefix, "--processes", "4")]
    try:
        project.plan(
            f"""
            from stepup.core.api import step
            for i in range({steps}):
                step(f"echo {{i}} >> runs.txt")
            """
        )
        build = start_build(project, server.url, prefix, {"STEPUP_DIST_LEASE": "10"})
        runs = project.root / "runs.txt"
        deadline = time.monotonic() + 60
        while not runs.exists() or len(runs.read_text().splitlines()) < 100:
            assert time.monotonic() < deadline, "the steps never started"
            time.sleep(0.02)
        build.send_signal(signal.SIGSTOP)
        time.sleep(4)  # within the 10-s lease: the planner is only slow, not gone
        build.send_signal(signal.SIGCONT)
        out, _ = build.communicate(timeout=120)
        assert build.returncode == 0, out
        assert "LOST" not in out
        done = runs.read_text().split()
        assert len(done) == steps  # each ran once
        assert len(set(done)) == steps
    finally:
        stop(workers)


def _read_until(proc: subprocess.Popen, status: str, texts: set[str], timeout: float = 60) -> str:
    """Lines of the build's output until a `status │ text` line came for each of `texts`."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen = ""
    left = set(texts)
    deadline = time.monotonic() + timeout
    while left:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        assert line is not None, f"the build ended before {status} {left}:\n{seen}"
        seen += line
        head, sep, rest = line.partition(" │ ")
        if sep and head.strip() == status:
            left.discard(rest.rsplit("  [", 1)[0])
    return seen


def test_a_step_reported_before_the_planner_was_killed_is_skipped_next_time(
    project: Project,
) -> None:
    # A finished step survives kill -9 of the planner at once: no wait for a periodic save.
    slow = f"sleep $(cat delay.txt) # {os.getpid()}"
    project.write("delay.txt", "30\n")
    project.plan(
        f"""
        from stepup.core.api import static, step
        static("delay.txt")
        step("echo a > a.txt", out="a.txt")
        step("{slow}", inp="delay.txt")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "STEPUP_DIST_REDIS_URL"}
    build = subprocess.Popen(
        [str(BIN / "stepup-dist"), "build", "-w2"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, **LEASE},
    )
    try:
        seen = _read_until(build, "SUCCESS", {"./plan.py", "echo a > a.txt"})
        build.send_signal(signal.SIGKILL)
        build.wait(15)
        assert "SUMMARY" not in seen
        project.write("delay.txt", "0\n")
        result = project.build("-w2", env=LEASE)
    finally:
        stop([build])
        for pid in processes_running(slow):
            # The slow step of the killed build, if its workers' watchdogs missed it: its
            # shell leads a session of its own.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    assert result.returncode == 0, result.stdout + result.stderr
    # The plan and A finished before the kill: both are skipped; B runs.
    assert result.lines("SKIP") == ["./plan.py", "echo a > a.txt"], result.stdout
    assert result.lines("SUCCESS") == [slow], result.stdout
    # Its final save holds everything: the journal is empty again.
    assert not (project.root / ".stepup/journal.mpk").exists()
