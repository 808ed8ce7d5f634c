"""`stepup.core.api` inside a stepup-dist build: the same names, served by stepup-dist.

StepUp's basic calls come from `stepup_dist.api`, its composite ones (`call`, `script`,
`render_jinja`, `loadns`, `dumpns`) from `stepup_dist.api_tools`.
"""

from stepup_dist.api import *  # noqa: F403

# Not in StepUp 4's __all__, but importable from its stepup.core.api all the same.
from stepup_dist.api import (  # noqa: F401
    AmendWhileHoldingError,
    EnvSubstitutor,
    InputNotFoundError,
    Need,
    PathError,
    StepInfo,
    StepUpError,
)
from stepup_dist.api import __all__ as _basic
from stepup_dist.api_tools import *  # noqa: F403
from stepup_dist.api_tools import __all__ as _tools

__all__ = tuple(sorted({*_basic, *_tools}))
