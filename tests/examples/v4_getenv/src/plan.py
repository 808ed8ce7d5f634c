#!/usr/bin/env python3
from stepup.core.api import plan, static

static("inner/plan.py", "a/", "b/")
# the variables are set for the inner plan only, by VAR=value before its command
plan("V4_WORD=plum V4_DIR=a V4_DIRS=a:b V4_BACK=b/f.txt ./plan.py", workdir="inner/")
