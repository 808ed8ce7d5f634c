#!/usr/bin/env python3
from stepup.core.api import run, shq, static

# static() returns what it declared, relative to here, sorted; folders end with a slash
files = static("src/*.txt")
named = static("sub/${*name}.txt")
tree = static("data/")
literal = static("top.txt")
run(
    f"printf '%s\\n' {shq(files + named + tree + literal)} > declared.txt",
    shell=True,
    out="declared.txt",
)
# a file inside a static folder is an input without a static() of its own
run("cat data/deep/x.txt src/a.txt > joined.txt", shell=True,
    inp=["data/deep/x.txt", "src/a.txt"], out="joined.txt")
