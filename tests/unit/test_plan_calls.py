"""What one API call message carries: itself, or the calls of a batch."""

import pytest

from stepup_dist.errors import PlanError
from stepup_dist.planner.plan_calls import calls_of


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
