#!/usr/bin/env python3
import sys

with open(sys.argv[1]) as fh:
    lines = fh.read().split()
with open(sys.argv[2], "w") as fh:
    fh.write(f"{len(lines)} words\n")
