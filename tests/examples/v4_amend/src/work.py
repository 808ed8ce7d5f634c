#!/usr/bin/env python3
from stepup.core.api import amend

# declared while running: an extra input, an extra output and a volatile file
amend(inp="second.txt", out="extra.txt", vol="scratch.log")
with open("first.txt") as f1, open("second.txt") as f2:
    text = f1.read() + f2.read()
with open("result.txt", "w") as fh:
    fh.write(text)
with open("extra.txt", "w") as fh:
    fh.write(text.upper())
with open("scratch.log", "w") as fh:
    fh.write("scratch\n")
