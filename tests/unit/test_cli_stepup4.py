"""StepUp 4's command line in stepup-dist's: how `-w` is told apart, `-j`, the phase file
that `wait` and `rebuild` read, and the return-code bits of an outcome."""

import os
from pathlib import Path

import click
import pytest

from stepup_dist.cli import phase
from stepup_dist.cli.build import return_code
from stepup_dist.cli.commands import _Jobs, build
from stepup_dist.errors import ReturnCode
from stepup_dist.planner.core import Outcome


def _parsed(*args: str) -> dict:
    ctx = build.make_context("build", list(args))
    return ctx.params


@pytest.mark.parametrize(
    ("args", "workers", "watch", "targets"),
    [
        (["-w4"], 4, None, ()),
        (["-w", "4"], 4, None, ()),
        (["-j", "1", "-w"], None, True, ()),
        (["-w", "-j", "1"], None, True, ()),
        (["-w", "-e"], None, True, ()),
        (["out.txt", "-j", "1", "-w"], None, True, ("out.txt",)),
        (["--workers", "2", "--watch"], 2, True, ()),
        (["-n"], None, False, ()),
        (["-w", "--", "-w"], None, True, ("-w",)),
    ],
)
def test_w_is_watch_alone_and_workers_before_a_number(
    args: list[str], workers: int | None, watch: bool | None, targets: tuple
) -> None:
    params = _parsed(*args)
    assert params["workers"] == workers
    assert params["watch"] is watch
    assert params["targets"] == targets


def test_jobs_whole_or_a_share_of_the_cpus() -> None:
    jobs = _Jobs()
    assert jobs.convert("3", None, None) == 3
    assert jobs.convert("0.5", None, None) == max(1, int(0.5 * (os.cpu_count() or 1)))
    for bad in ("0", "-1", "two", "1.5e999", "nan"):
        with pytest.raises(click.BadParameter):
            jobs.convert(bad, None, None)


def test_the_phase_file_of_a_watching_build(tmp_path: Path) -> None:
    (tmp_path / ".stepup").mkdir()
    assert phase.read(tmp_path) is None
    writer = phase.PhaseWriter(tmp_path, "b1")
    writer.set(phase="watching", runs=1, code=0)
    seen = phase.read(tmp_path)
    assert seen is not None
    assert (seen.build, seen.phase, seen.runs, seen.rebuilds) == ("b1", "watching", 1, 0)
    writer.set(rebuilds=1)
    assert phase.read(tmp_path).rebuilds == 1  # type: ignore[union-attr]
    writer.close()
    assert phase.read(tmp_path) is None


def test_a_phase_file_left_by_a_dead_build_is_no_phase(tmp_path: Path) -> None:
    (tmp_path / ".stepup").mkdir()
    writer = phase.PhaseWriter(tmp_path, "b1")
    writer.phase = phase.Phase("b1", "watching", pid=2**22 + 12345, host=writer.phase.host)
    writer.set()
    assert phase.read(tmp_path) is None


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (Outcome(succeeded=2), ReturnCode.OK),
        (Outcome(failed=["a"], interrupted=True, failure_drain=True), 36),
        (Outcome(failed=["a"], stuck=["b waits"]), 20),
        (Outcome(stuck=["b waits"]), ReturnCode.PENDING),
        (Outcome(interrupted=True, signalled=True, stuck=["b"]), 34),
        (Outcome(interrupted=True), ReturnCode.DRAINED),
        (Outcome(plan_errors=["two steps"]), ReturnCode.FAILED),
        (Outcome(warnings=["1 target(s) not made"]), ReturnCode.WARNING),
    ],
)
def test_return_code_bits_of_an_outcome(outcome: Outcome, code: int) -> None:
    assert return_code(outcome) == code


def test_step_logs_are_clipped_and_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stepup_dist.cli import steplog

    logs = steplog.StepLogs(tmp_path)
    big = "x" * (steplog.MAX_STREAM * 2)
    for i in range(5):
        logs.write({"step": f"step {i}", "stdout": steplog._clip(big), "ended": i})
        os.utime(logs.path(f"step {i}"), (i, i))
    (entry,) = [e for e in logs.entries() if e["step"] == "step 0"]
    assert len(entry["stdout"]) < steplog.MAX_STREAM + 100
    assert "characters left out" in entry["stdout"]
    monkeypatch.setattr(steplog, "MAX_LOGS", 3)
    logs.prune()
    assert [e["step"] for e in logs.entries()] == ["step 2", "step 3", "step 4"]
    assert "step 3" in steplog.show(tmp_path, "step 3")
