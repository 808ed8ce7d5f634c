#!/usr/bin/env python3
from stepup.core.api import dumpns, loadns

ns = loadns("settings.json")
ns.count += 1
# dumpns amends the step with its file as an output
dumpns("dumped.json", ns)
dumpns("dumped.yaml", {"name": ns.name, "list": [1, 2]})
