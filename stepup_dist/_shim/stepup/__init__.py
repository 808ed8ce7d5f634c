"""Compatibility shim, on PYTHONPATH only for steps run by stepup-worker.

Plans written for StepUp import `stepup.core.api`; inside a stepup-dist build that name must
reach `stepup_dist.api`. The package path is extended so that other `stepup.*` modules of a
real StepUp installation stay importable.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
