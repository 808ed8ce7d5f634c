#!/usr/bin/env python3
from stepup.core.api import render_jinja, static

static("letter.txt", "vars.json", "vars.py", "paper.tex")
# variables from a dict
render_jinja("letter.txt", {"name": "Ada", "items": ["pen", "ink"]}, "letter-ada.txt")
# from files, with a dict taking precedence; a folder as destination
render_jinja("letter.txt", "vars.json", "vars.py", {"name": "Bob"}, "out/")
# latex mode (angle brackets), chosen by the .tex extension
render_jinja("paper.tex", {"title": "On Steps"}, "paper-out.tex")
