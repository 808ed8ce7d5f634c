#!/usr/bin/env python3
from stepup.core.api import run

# runs in sub/: paths are relative to it
run("cp ../config.txt config-copy.txt", inp="../config.txt", out="config-copy.txt")
