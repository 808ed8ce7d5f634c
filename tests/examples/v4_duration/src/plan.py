#!/usr/bin/env python3
from stepup.core.api import run, static

static("work.sh")
# duration= hints: with more ready steps than workers, the longest remaining path goes first
with_hint = [("a", 0.1), ("b", 0.1), ("c", 0.1), ("long", 0.6)]
for name, seconds in with_hint:
    run(f"./work.sh {name} {seconds}", out=f"{name}.txt", duration=seconds * 10)
run("cat a.txt b.txt c.txt long.txt > all.txt", shell=True,
    inp=["a.txt", "b.txt", "c.txt", "long.txt"], out="all.txt", duration=0.1)
