#!/usr/bin/env python3
from path import Path

from stepup.core.api import get_job_i, plan, run, static, subs_env_vars

static("data/in.txt", "inner.py")
# the path package (a StepUp 4 dependency) is importable in a plan
here = Path("data") / "in.txt"
run(f"cp {here} copied.txt", inp=here, out="copied.txt")
# a job number is an int in both tools (its value is the tool's own)
assert isinstance(get_job_i(), int)
plan("V4_SUB=data ./inner.py")
