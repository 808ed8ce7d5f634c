"""Every plan StepUp 1.3.1 runs, stepup-dist runs the same: StepUp's own cases, compared.

Each case of StepUp 1.3.1's `tests/cases/` with a root `plan.py` runs in a fresh copy under
StepUp (`stepup -n -w 2`) and under stepup-dist (`stepup-dist build -w2`); the test passes
when both leave the same files with the same contents (`.stepup/` and `__pycache__/` aside).
StepUp comes from PyPI at test time (see stepup_cases.py), cached between runs. Without PyPI
the tests are skipped, saying why; under CI=true they fail instead.

A case known to differ is marked xfail(strict=True), its reason naming what stepup-dist
lacks: once that is built, the case passes, the strict mark turns it into a failure, and
the mark must go. The count line at the end of the run comes from conftest.py.
"""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.differential.stepup_cases import (
    CASES,
    Reference,
    Unreachable,
    compare,
    reference,
)

KNOWN_DIFFERENCES: dict[str, str] = {}
"""Cases that still differ, and what stepup-dist lacks for each."""


def _param(case: str) -> object:
    reason = KNOWN_DIFFERENCES.get(case)
    if reason is None:
        return case
    return pytest.param(
        case,
        marks=pytest.mark.xfail(
            strict=True,
            reason=f"stepup-dist lacks {reason}; when this case passes, remove its entry",
        ),
    )


@pytest.fixture(scope="session")
def stepup() -> Reference:
    try:
        return reference()
    except Unreachable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs StepUp from PyPI: {exc}")
        pytest.skip(str(exc))


def test_cases_are_the_ones_with_a_root_plan(stepup: Reference) -> None:
    found = sorted(p.parent.name for p in Path(stepup.cases).glob("*/plan.py"))
    assert found == sorted(CASES)


def test_known_differences_are_cases() -> None:
    assert set(KNOWN_DIFFERENCES) <= set(CASES)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case_leaves_the_files_stepup_leaves(
    stepup: Reference, case: str, record_property: Callable[[str, object], None]
) -> None:
    expected, got, unstable = compare(stepup, case)
    if unstable:
        record_property("stepup_case", "left out")
        pytest.skip(f"{case} is left out: {unstable}")
    same = expected.same(got)
    record_property("stepup_case", "same" if same else "different")
    assert same, f"{case}:\n{expected.diff(got)}\n--- stepup-dist output:\n{got.output}"
