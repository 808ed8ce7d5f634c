"""`stepup.core.call` inside a stepup-dist build: `driver()` for scripts run by `call()`."""

from stepup_dist.call import *  # noqa: F403
from stepup_dist.call import __all__  # noqa: F401
