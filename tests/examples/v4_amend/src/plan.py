#!/usr/bin/env python3
from stepup.core.api import run, static

static("work.py", "first.txt", "second.txt")
run("./work.py", inp="first.txt", out="result.txt")
