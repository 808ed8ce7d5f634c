#!/usr/bin/env python3
from stepup.core.call import driver


def total(inp: list[str], out: list[str], scale: int):
    with open(inp[0]) as fh:
        numbers = [int(word) for word in fh.read().split()]
    with open(out[0], "w") as fh:
        fh.write(f"{scale * sum(numbers)}\n")


def label(out: list[str], text: str, times: int):
    with open(out[0], "w") as fh:
        fh.write(text * times + "\n")


def plan_more(inp: list[str]):
    from stepup.core.api import call

    with open(inp[0]) as fh:
        count = len(fh.read().split())
    call("./tools.py", "label", out="planned.txt", text="n", times=count)


if __name__ == "__main__":
    driver()
