#!/usr/bin/env python3
from stepup.core.api import getenv, run, shq

word = getenv("V4_WORD")
missing = getenv("V4_NOT_SET", "fallback")
folder = getenv("V4_DIR", path=True)
folders = getenv("V4_DIRS", multi=True)
back = getenv("V4_BACK", back=True)
lines = [word, missing, folder, *folders, back, type(folder).__name__]
run(f"printf '%s\\n' {shq(lines)} > values.txt", shell=True, out="values.txt")
run(f"cat {back} > back-copy.txt", shell=True, inp=back, out="back-copy.txt")
