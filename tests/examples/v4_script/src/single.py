#!/usr/bin/env python3
from stepup.core.script import driver


def info():
    return {"out": "single.txt"}


def run(out):
    with open(out, "w") as fh:
        fh.write("single\n")


if __name__ == "__main__":
    driver()
