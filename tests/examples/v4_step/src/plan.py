#!/usr/bin/env python3
from stepup.core.api import static, step

static("in.txt")
# shell=False (the default): no shell, the command is split into words
step("cp in.txt plain.txt", inp="in.txt", out="plain.txt")
# shell=True, with a duration hint
step("cat in.txt in.txt > twice.txt", shell=True, inp="in.txt", out="twice.txt", duration=2.5)
# env_overrides: set for the step's process only
step(
    'echo "$COLOUR $SHAPE" > overrides.txt',
    shell=True,
    out="overrides.txt",
    env_overrides={"COLOUR": "green", "SHAPE": "circle"},
)
# env: the step depends on the variable's value (unset here)
step("echo ${V4_STEP_UNSET:-unset} > env.txt", shell=True, env="V4_STEP_UNSET", out="env.txt")
