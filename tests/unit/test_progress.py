"""The status line: rendering, ETA, truncation, and how it shares the terminal with output."""

import io
import time
from types import SimpleNamespace

import pytest

from stepup_dist.cli.console import ConsoleReporter
from stepup_dist.cli.status_line import (
    ERASE,
    LiveReporter,
    format_duration,
    render_status,
    truncate,
)
from stepup_dist.messages import StepDone
from stepup_dist.planner.graph import Step, StepStatus
from stepup_dist.planner.progress import count as _count
from stepup_dist.planner.progress import estimate_eta
from stepup_dist.planner.store import Record
from stepup_dist.status import Census, Counts, PoolWatch


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-3, "0s"), (44.6, "45s"), (60, "1m00s"), (185, "3m05s"), (7380, "2h03m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_eta_divides_the_work_among_the_workers() -> None:
    assert estimate_eta([10.0, 10.0, 10.0, 10.0], [], workers=2) == 20.0
    # Never sooner than the longest step.
    assert estimate_eta([30.0, 1.0], [], workers=4) == 30.0
    # Running steps count what is left of them; one past its time is nearly done.
    assert estimate_eta([], [(10.0, 4.0), (5.0, 9.0)], workers=1) == 6.0


def test_eta_guesses_unknown_steps_from_the_known_ones() -> None:
    assert estimate_eta([None, 4.0], [], workers=1) == 8.0
    assert estimate_eta([None, None], [], workers=2, measured=[3.0]) == 3.0
    assert estimate_eta([None], [(None, 1.0)], workers=1) is None
    assert estimate_eta([], [], workers=3) == 0.0


def test_eta_counts_only_the_share_of_undecided_steps_that_runs() -> None:
    assert estimate_eta([], [], 1, undecided=[10.0, 10.0], run_share=0.25) == 5.0
    assert estimate_eta([], [], 1, undecided=[10.0, 10.0], run_share=0.0) == 0.0
    assert estimate_eta([2.0], [], 1, undecided=[None], run_share=0.5) == 3.0


def test_render_counts_only() -> None:
    line = render_status(Counts(12, 3, 40, 5, 1), None, None, 200)
    assert line == "12 done · 3 running · 40 queued · 5 skipped · 1 failed"


def test_render_everything() -> None:
    census = Census(3, 1, (("test", 2, 2), ("matlab", 1, None)))
    line = render_status(Counts(1, 2, 3, 0, 0, pending=7), census, 65.2, 200)
    assert line == (
        "1 done · 2 running · 3 queued · 7 pending · 0 skipped · 0 failed │ ETA 1m05s"
        " │ workers 3 busy · 1 idle │ pools test 2/2 · matlab 1/?"
    )


def test_render_cuts_to_the_width() -> None:
    census = Census(3, 1, (("test", 2, 2),))
    line = render_status(Counts(12, 3, 40, 5, 1), census, 5, 40)
    assert line == "12 done · 3 running · 40 queued · 5 sk…"
    assert len(line) == 39


def test_truncate() -> None:
    assert truncate("abcdef", 7) == "abcdef"
    assert truncate("abcdef", 6) == "abcd…"
    assert truncate("abcdef", 0) == "…"


def _result(status_ok: bool = True) -> StepDone:
    return StepDone(
        "b", "k", 1, 0 if status_ok else 3, 0.1, "h", "w", "hello\n", "", {}, ""
    )  # fmt: skip


def _step() -> Step:
    return Step("echo hi", "echo hi", "./", [], [], [], [], None, None)


def test_quiet_prints_only_problems_and_the_summary() -> None:
    out = io.StringIO()
    rep = ConsoleReporter(out, quiet=True)
    rep.line("START", "echo hi", "h")
    rep.done(_step(), _result(), "SUCCESS")
    rep.line("SKIP", "other")
    rep.done(_step(), _result(status_ok=False), "FAIL")
    rep.line("SUMMARY", "1 succeeded")
    text = out.getvalue()
    assert "START" not in text
    assert "SUCCESS" not in text
    assert "SKIP" not in text
    assert "      FAIL │ echo hi  [h]\n" in text
    assert "Command exited with status 3" in text
    assert "hello\n" in text  # the failed step's output
    assert text.endswith("   SUMMARY │ 1 succeeded\n")


def test_live_output_goes_above_the_status_line() -> None:
    out = io.StringIO()
    rep = LiveReporter(out, width=lambda: 80)
    rep.line("START", "echo hi", "h")
    rep.line("SUCCESS", "echo hi", "h")
    status = "0 done · 0 running · 0 queued · 0 skipped · 0 failed"
    assert out.getvalue() == (
        f"     START │ echo hi  [h]\n{status}{ERASE}   SUCCESS │ echo hi  [h]\n{status}"
    )
    rep.close()
    assert out.getvalue().endswith(status + ERASE)
    # Once closed (before the summary), lines are plain again.
    rep.line("SUMMARY", "done")
    assert out.getvalue().endswith(ERASE + "   SUMMARY │ done\n")


def _planner() -> SimpleNamespace:
    """What the status line reads of a planner: graph, records, running steps, pools."""
    statuses = {
        "a": StepStatus.SUCCEEDED,
        "b": StepStatus.SKIPPED,
        "c": StepStatus.QUEUED,  # running
        "d": StepStatus.QUEUED,
        "e": StepStatus.WAITING_POOL,
        "f": StepStatus.PENDING,
        "g": StepStatus.CHECKING,
        "h": StepStatus.FAILED,
    }
    steps = {}
    for key, status in statuses.items():
        step = Step(key, key, "./", [], [], [], [], "lic" if key == "e" else None, None)
        step.status = status
        steps[key] = step

    def record(duration: float) -> Record:
        return Record("k", "./", [], [], [], [], [[]] * 4, None, None, b"", duration=duration)

    old = {"c": record(10.0), "d": record(4.0), "f": record(6.0), "z": record(2.0)}
    return SimpleNamespace(
        graph=SimpleNamespace(steps=steps),
        old_records=old,
        records={"a": record(1.0)},
        jobs=SimpleNamespace(running={"c"}, hosts={}),
        pools={"test": 2},
        build="b1",
    )


def test_counts_and_eta_from_the_planner() -> None:
    planner = _planner()
    counts, eta, pools = _count(planner, {"c": 100.0}, workers=2, now=103.0)  # type: ignore[arg-type]
    assert counts == Counts(done=1, running=1, queued=3, skipped=1, failed=1, pending=1)
    assert pools == [PoolWatch("test", 2), PoolWatch("lic", 0)]
    # Must run: d (4 s), e (unknown: the mean of 10, 4, 6, 2 and 1 = 4.6). Running: c, 7 s
    # left. Undecided f (6 s), g (never run: 4.6) and z (2 s, not declared yet), counted
    # as 5 of the 6 decided steps are: a, h, c, d and e ran, b was skipped.
    left = 4.0 + 4.6 + 7.0 + 5 / 6 * (6.0 + 4.6 + 2.0)
    assert eta == pytest.approx(left / 2)


def test_counts_taken_between_rounds_show_with_the_next_line() -> None:
    out = io.StringIO()
    rep = LiveReporter(out, width=lambda: 200)
    rep._planner = _planner()  # type: ignore[assignment]
    rep.tick()
    assert out.getvalue() == ""  # counting draws nothing; the thread or the next line does
    rep._next_count = float("inf")  # a graph too large to count again so soon
    rep.line("WARNING", "something")
    text = out.getvalue()
    assert text.startswith("   WARNING │ something\n1 done · 1 running · 3 queued · 1 pending")
    assert "│ ETA " in text


def test_a_missing_grant_is_told_once_and_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stepup_dist.cli import status_line
    from stepup_dist.errors import GrantMissing

    monkeypatch.setattr(status_line, "POLL", 0.0)
    reads = []

    def read(build: str, pools: list) -> Census:
        reads.append(build)
        raise GrantMissing("cannot read the workers and pools: the Redis user lacks a grant")

    out = io.StringIO()
    rep = LiveReporter(out, width=lambda: 200)
    planner = _planner()
    rep.watch(planner, read)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 10
        while rep._refused is None and time.monotonic() < deadline:
            time.sleep(0.01)
        rep.tick()
        rep.tick()
        time.sleep(0.2)  # a few redraws of the thread: none reads the server again
    finally:
        rep.close()
    assert reads == ["b1"]
    warnings = [line for line in out.getvalue().split("\n") if "WARNING" in line]
    assert len(warnings) == 1, out.getvalue()
    assert warnings[0].endswith(
        "WARNING │ the status line shows no workers and pools: cannot read the workers and "
        "pools: the Redis user lacks a grant"
    )
