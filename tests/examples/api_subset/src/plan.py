#!/usr/bin/env python
from stepup.core.api import copy, getenv, glob, mkdir, plan, static, step

static("data/", "sub/", "sub/plan.py")
found = glob("data/*.txt")
mkdir("made/")
copy("data/in.txt", "made/")
step("cat in.txt > ../twice.txt; cat in.txt >> ../twice.txt", workdir="data/", inp="in.txt", out="../twice.txt")
value = getenv("STEPUP_DIST_TEST_VALUE", "unset")
step(f"echo {value} > env.txt", out="env.txt")
plan("sub/")
