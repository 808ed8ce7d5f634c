#!/usr/bin/env python3
from stepup.core.api import plan, static

static("sub/plan.py", "sub/other.py", "config.txt")
# 4.x: plan(command, *, inp=, workdir=, ...) runs a planning script in workdir
plan("./plan.py", workdir="sub/", inp="../config.txt")
# a planning script with an argument, run here
plan("sub/other.py fruit")
