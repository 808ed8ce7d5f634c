"""`stepup.core.api` inside a stepup-dist build: the same names, served by stepup-dist."""

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
    __all__,
)
