#!/usr/bin/env python3
from stepup.core.api import call, static

static("tools.py", "numbers.txt")
# keyword arguments travel to the function (inline JSON, or an args file)
call("./tools.py", "total", inp="numbers.txt", out="total.txt", scale=2)
call("./tools.py", "label", out="label.txt", args_file="label-args.json", text="hi", times=3)
call("./tools.py", "plan_more", planning=True, inp="numbers.txt")
