"""`stepup.core.script` inside a stepup-dist build: StepUp's script protocol (`driver`)."""

from stepup_dist.script import *  # noqa: F403
from stepup_dist.script import __all__  # noqa: F401
