"""`stepup.core.nglob` inside a stepup-dist build: named globs, as `glob()` returns them."""

from stepup_dist.nglob import *  # noqa: F403
from stepup_dist.nglob import __all__  # noqa: F401
