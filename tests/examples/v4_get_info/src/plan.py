#!/usr/bin/env python3
from stepup.core.api import run, static

static("sub/report.py", "sub/in.txt", "top.txt")
run("./report.py", workdir="sub/", inp=["in.txt", "../top.txt"], env="V4_INFO_VAR",
    out=["info.txt", "../up.txt"], vol="tmp.log")
