#!/usr/bin/env python3
from stepup.core.api import copy, static

static("doc.txt")
copy("doc.txt", "doc-copy.txt")
copy("doc.txt", "into/")
info = copy("doc.txt", "opt.txt", optional=True)
copy("opt.txt", "from-opt.txt")
copy("doc.txt", "never.txt", optional=True)
