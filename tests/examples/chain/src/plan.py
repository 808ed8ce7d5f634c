#!/usr/bin/env python
from stepup.core.api import mkdir, static, step

static("words.txt")
mkdir("out/")
step("sort words.txt > out/sorted.txt", inp=["words.txt", "out/"], out="out/sorted.txt")
step("uniq -c sorted.txt > counts.txt", workdir="out/", inp="sorted.txt", out="counts.txt")
step("wc -l < ${inp} > ${out}", inp="out/counts.txt", out="out/n.txt")
