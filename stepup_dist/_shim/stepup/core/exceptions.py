"""`stepup.core.exceptions` inside a stepup-dist build: what StepUp 4's plan API raises."""

from stepup_dist.api import AmendWhileHoldingError, InputNotFoundError, PathError, StepUpError

__all__ = ("AmendWhileHoldingError", "InputNotFoundError", "PathError", "StepUpError")
