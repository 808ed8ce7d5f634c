#!/usr/bin/env python3
from stepup.core.api import run, static

static("words.txt", "count.py", "greet.sh")
# shell=True: pipes and redirections
run("sort words.txt | uniq > sorted.txt", shell=True, inp="words.txt", out="sorted.txt")
# a local executable as the first word is an input by itself
run("./count.py sorted.txt count.txt", inp="sorted.txt", out="count.txt")
# VAR=value before the command: set for this step only
run("GREETING=hello ./greet.sh greet.txt", out="greet.txt")
# workdir that does not exist yet: made before the step runs
run("cp ../words.txt copy.txt", workdir="made/", inp="../words.txt", out="copy.txt")
# optional: runs only because a later step needs its output
run("tr a-z A-Z < words.txt > upper.txt", shell=True, inp="words.txt", out="upper.txt",
    optional=True)
run("wc -l < upper.txt > upper-lines.txt", shell=True, inp="upper.txt", out="upper-lines.txt")
run("echo never > unused.txt", shell=True, out="unused.txt", optional=True)
