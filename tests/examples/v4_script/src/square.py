#!/usr/bin/env python3
from stepup.core.script import driver


def cases():
    yield 2
    yield 3


CASE_FMT = "n{}"


def case_info(n: int):
    return {"out": f"square-{n}.txt", "n": n}


def run(out, n):
    with open(out, "w") as fh:
        fh.write(f"{int(n) ** 2}\n")


if __name__ == "__main__":
    driver()
