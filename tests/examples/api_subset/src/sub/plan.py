#!/usr/bin/env python
from stepup.core.api import step
step("cat ../data/in.txt > here.txt", inp="../data/in.txt", out="here.txt")
