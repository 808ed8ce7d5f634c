"""The script protocol's case strings: CASE_FMT.format(...) read back (stepup_dist.script)."""

import pytest

from stepup_dist.script import parse_case


@pytest.mark.parametrize(
    ("fmt", "args", "kwargs"),
    [
        ("{:+03.1f}", [-5.0], {}),
        ("{:+03.1f}", [7.0], {}),
        ("{}_{}", ["a", "b"], {}),
        ("n={n:d} x={x:.2e} s={s}", [], {"n": -12, "x": 1.5e-3, "s": "word"}),
        ("{1:d}-{0:d}", [3, 4], {}),
    ],
)
def test_a_formatted_case_reads_back(fmt: str, args: list, kwargs: dict) -> None:
    text = fmt.format(*args, **kwargs)
    got_args, got_kwargs = parse_case(fmt, text)
    assert fmt.format(*got_args, **got_kwargs) == text
    assert (got_args, got_kwargs) == (args, kwargs)


def test_a_string_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="Could not parse"):
        parse_case("{:d}.txt", "x.txt")
