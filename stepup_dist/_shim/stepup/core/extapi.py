"""`stepup.core.extapi` inside a stepup-dist build: helpers for StepUp extensions."""

from stepup_dist.extapi import *  # noqa: F403
from stepup_dist.extapi import __all__  # noqa: F401
