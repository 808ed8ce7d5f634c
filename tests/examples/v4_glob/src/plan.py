#!/usr/bin/env python3
from stepup.core.api import glob, run, static

# glob() declares nothing: the folder is declared static first
static("ch/")
# named wildcards: one match per chapter, with its captures
for m in glob("ch/${*part}-${*lang}.txt", lang="[a-z][a-z]"):
    run(f"cat {m.single} > out-{m.part}.{m.lang}", shell=True, inp=m.single,
        out=f"out-{m.part}.{m.lang}")
# anonymous wildcards give path objects; single() asserts one match
readme = glob("ch/READ*").single()
run(f"cp {readme} readme-copy.txt", inp=readme, out="readme-copy.txt")
if not glob("ch/missing-*.txt"):
    run("echo none > missing.txt", shell=True, out="missing.txt")
