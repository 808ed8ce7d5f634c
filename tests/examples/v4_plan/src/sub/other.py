#!/usr/bin/env python3
import sys

from stepup.core.api import run

run(f"echo {sys.argv[1]} > sub/arg.txt", shell=True, out="sub/arg.txt")
