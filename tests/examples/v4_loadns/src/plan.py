#!/usr/bin/env python3
from stepup.core.api import loadns, run, static

static("settings.json", "more.toml", "extra.yaml", "paths.py", "make.py")
ns = loadns("settings.json", "more.toml", "extra.yaml", "paths.py")
run(f"echo {ns.name} {ns.count} {ns.colour} {ns.data} > loaded.txt", shell=True,
    out="loaded.txt")
run("./make.py", out=[], vol=[])
