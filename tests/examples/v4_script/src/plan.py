#!/usr/bin/env python3
from stepup.core.api import script, static

static("square.py", "single.py")
script("square.py")
script("single.py", step_info="single-info.json")
