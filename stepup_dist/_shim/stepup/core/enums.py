"""`stepup.core.enums` inside a stepup-dist build: StepUp 4's `Need`, for `step(need=...)`."""

from stepup_dist.api import Need

__all__ = ("Need",)
