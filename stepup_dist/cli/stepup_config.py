"""StepUp 4's build settings, as far as they mean something to `stepup-dist build`.

StepUp 4 reads its `[build]` settings from these files, later ones winning, then from
`STEPUP_BUILD_<NAME>` variables (`stepup config` shows them)::

    /etc/stepup.toml, ~/.config/stepup.toml, ROOT/.stepup.toml, ROOT/stepup.toml,
    ROOT/pyproject.toml ([tool.stepup.build]), ROOT/stepup-local.toml

`stepup-dist build` reads these:

- `resources` (`"cpu:4,gpu:1"`; a name alone is one unit, 0 units is none): what the build
  may use at once. Each name becomes a limit of this build, a plan pool of that size, that
  steps with `resources=` take units of, beside the cluster pool of that name if there is
  one and the units of a host that offers it (`planner/pools.py`). Later sources win per
  name, as in StepUp.
- `jobs`: the number of local workers when `-w` is not given (a number with a decimal
  point is a share of the CPUs, as in StepUp).
- the switches that `build` has as flags too (`keep_going`, `clean`, `fix_epoch`,
  `progress`, `duration`, `explain_rerun`, `defer_cap`): defaults that a flag overrides.

Every other `[build]` setting is ignored, each with a one-line warning: they steer StepUp's
own director (its watcher, its SQLite database, its forkserver, ...). Other sections are
other StepUp tools' and are not read.
"""

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import parse_resources
from ..errors import ConfigError, UserError

__all__ = ("READ", "StepUpSettings", "read_settings")

SWITCHES = ("keep_going", "clean", "fix_epoch", "progress", "duration", "explain_rerun")
"""The `[build]` settings that are booleans, each a flag of `build` too."""

READ = ("resources", "jobs", "defer_cap", *SWITCHES)
"""The `[build]` settings stepup-dist reads; it ignores the others with a warning."""


@dataclass(frozen=True)
class StepUpSettings:
    resources: dict[str, int] = field(default_factory=dict)
    """Build-level limits (name -> units), merged over every source."""
    jobs: int | None = None
    """Local workers to start when `-w` is not given; None: not set."""
    warnings: list[str] = field(default_factory=list)
    """One line per setting that is ignored, naming where it was set."""
    switches: dict[str, bool | int] = field(default_factory=dict)
    """The `SWITCHES` and `defer_cap` that are set (name -> value)."""


def _files(root: Path) -> list[Path]:
    return [
        Path("/etc/stepup.toml"),
        Path("~/.config/stepup.toml").expanduser(),
        root / ".stepup.toml",
        root / "stepup.toml",
        root / "pyproject.toml",
        root / "stepup-local.toml",
    ]


def _build_section(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"cannot read StepUp's settings in {path}: {exc}") from None
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("stepup", {})
    section = data.get("build") if isinstance(data, dict) else None
    return section if isinstance(section, dict) else None


def _jobs(raw: object, where: str) -> int:
    text = str(raw).strip()
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"StepUp's build setting jobs = {raw!r} ({where}) is no number") from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"StepUp's build setting jobs = {raw!r} ({where}) must be > 0")
    if "." in text:  # as StepUp: a share of the CPUs
        value *= os.cpu_count() or 1
    return max(1, round(value))


def read_settings(
    root: Path, environ: Mapping[str, str] | None = None, *, flags: tuple[str, ...] = ()
) -> StepUpSettings:
    """StepUp 4's `[build]` settings for the project in `root`; `flags`: the values of
    `build --resources`, merged last."""
    env = os.environ if environ is None else environ
    sources: list[tuple[str, dict[str, Any]]] = []
    for path in _files(root):
        section = _build_section(path)
        if section:
            sources.append((str(path), section))
    from_env = {
        name.removeprefix("STEPUP_BUILD_").lower(): value
        for name, value in env.items()
        if name.startswith("STEPUP_BUILD_") and value
    }
    if from_env:
        sources.append(("the environment, STEPUP_BUILD_*", from_env))
    for value in flags:
        sources.append(("build --resources", {"resources": value}))
    resources: dict[str, int] = {}
    jobs = None
    warnings = []
    switches: dict[str, bool | int] = {}
    for where, section in sources:
        for key, value in section.items():
            if key == "resources":
                try:
                    resources.update(parse_resources(str(value), bare=True, zero=True))
                except ConfigError as exc:
                    raise UserError(f"StepUp's build setting {exc} ({where})") from None
            elif key == "jobs":
                jobs = _jobs(value, where)
            elif key in SWITCHES:
                switches[key] = _switch(key, value, where)
            elif key == "defer_cap":
                switches[key] = _defer_cap(value, where)
            else:
                instead = "give build --watch" if key in ("watch", "watch_first") else ""
                warnings.append(
                    f"ignoring StepUp's build setting {key} = {value!r} ({where}): "
                    f"stepup-dist reads only resources, jobs and the settings of build's flags"
                    f"{'; ' * bool(instead)}{instead}"
                )
    return StepUpSettings(resources, jobs, warnings, switches)


def _switch(key: str, raw: object, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UserError(f"StepUp's build setting {key} = {raw!r} ({where}) is not true or false")


def _defer_cap(raw: object, where: str) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"StepUp's build setting defer_cap = {raw!r} ({where}) must be >= 1")
    return value
