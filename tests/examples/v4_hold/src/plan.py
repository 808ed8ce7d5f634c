#!/usr/bin/env python3
from stepup.core.api import hold, run, static

static("work.sh")
# nothing in the block starts before the block ends; nested blocks release with the outer one
with hold():
    run("./work.sh short 0.1", out="short.txt", duration=0.1)
    with hold():
        run("./work.sh medium 0.2", out="medium.txt", duration=0.2)
    run("./work.sh long 0.3", out="long.txt", duration=0.3)
run("cat short.txt medium.txt long.txt > all.txt", shell=True,
    inp=["short.txt", "medium.txt", "long.txt"], out="all.txt")
