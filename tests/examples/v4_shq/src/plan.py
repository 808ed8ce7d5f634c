#!/usr/bin/env python3
from stepup.core.api import run, shq, static, step

static("with space.txt", "plain.txt")
# shq quotes paths for a shell command
names = ["with space.txt", "plain.txt"]
run(f"cat {shq(names)} > joined.txt", shell=True, inp=names, out="joined.txt")
run(f"echo {shq('it' + chr(39) + 's here')} > quoted.txt", shell=True, out="quoted.txt")
# a callable command gets the step's own paths (a CommandArg)
run(lambda inp, out: f"cp {shq(inp)} {shq(out)}", inp="plain.txt", out="from-callable.txt")
step(lambda out: f"echo made {shq(out)} > {shq(out)}", shell=True, out="step-callable.txt")
run(lambda inp, out: f"cat {shq(inp)} > {shq(out)}", shell=True, inp=["plain.txt"],
    out=["out dir/sub file.txt"])
