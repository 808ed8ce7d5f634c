#!/usr/bin/env python3
from stepup.core.api import graph, run

run("echo data > data.txt", shell=True, out="data.txt")
run("cp data.txt copy.txt", inp="data.txt", out="copy.txt")
# writes graph.txt and graph.dot in the build's top folder (their text is the tool's own)
graph("graph")
