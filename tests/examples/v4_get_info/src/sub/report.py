#!/usr/bin/env python3
from stepup.core.api import get_info

info = get_info()
lines = [
    f"command: {info.command}",
    f"workdir: {info.workdir}",
    f"inp: {sorted(info.inp)}",
    f"env: {info.env}",
    f"out: {info.out}",
    f"vol: {info.vol}",
    f"types: {type(info.inp[0]).__name__} {isinstance(info.inp[0], str)}",
]
with open("info.txt", "w") as fh:
    fh.write("\n".join(lines) + "\n")
with open("../up.txt", "w") as fh:
    fh.write("up\n")
with open("tmp.log", "w") as fh:
    fh.write("log\n")
