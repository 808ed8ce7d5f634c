"""`stepup.core.api` inside a stepup-dist build: the same names, served by stepup-dist."""

from stepup_dist.api import *  # noqa: F403
from stepup_dist.api import __all__  # noqa: F401
