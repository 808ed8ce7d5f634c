#!/usr/bin/env python3
from stepup.core.api import copy, run, static

static("lock.sh")
# the build offers two "licence" units (stepup.toml): at most two of these run at once
for i in range(4):
    run(f"./lock.sh {i}", out=f"r{i}.txt", resources="licence:1")
run("echo both > both.txt", shell=True, out="both.txt", resources={"licence": 2})
copy("r0.txt", "r0-copy.txt", resources="licence")
