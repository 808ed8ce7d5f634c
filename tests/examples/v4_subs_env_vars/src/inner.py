#!/usr/bin/env python3
from stepup.core.api import run, subs_env_vars

# ${VAR} in a path is filled in from the environment; the step depends on the variable
with subs_env_vars() as subs:
    source = subs("${V4_SUB}/in.txt")
run(f"cat {source} > substituted.txt", shell=True, inp=source, out="substituted.txt")
