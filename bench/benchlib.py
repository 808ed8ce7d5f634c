"""What every benchmark script here needs: the executables, the machine, how busy it is."""

import os
import platform
import pstats
import shutil
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

__all__ = ("categorize", "find_exe", "find_stepup_dist", "machine", "machine_busy")


def find_exe(name: str) -> Path | None:
    """`name` installed beside this interpreter (a venv's bin/), else on PATH, else None."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def find_stepup_dist(script: str) -> Path:
    exe = find_exe("stepup-dist")
    if exe is None:
        sys.exit(f"{script}: no stepup-dist next to {sys.executable} nor on PATH")
    return exe


def machine(extra: str = "") -> str:
    """Two lines describing the machine and the software measured."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    try:
        version = metadata.version("stepup-dist")
    except metadata.PackageNotFoundError:
        version = "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: nproc {usable} (cpu_count {os.cpu_count()}), {platform.machine()}, "
        f"{platform.system()} {platform.release()}, load average {load}\n"
        f"python {platform.python_version()} ({sys.executable}), stepup-dist {version}{extra}"
    )


def machine_busy() -> float:
    """Seconds of CPU time that the whole machine has spent busy (all cores, /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def categorize(
    stats: pstats.Stats, categories: Sequence[tuple[str, Sequence[str]]]
) -> dict[str, float]:
    """A profile's own (tottime) seconds by category: the first whose needles occur in a
    function's file name or name; the rest is "other (Python, stdlib)"."""
    spent: dict[str, float] = {}
    for (filename, _, func), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename} {func}"
        name = "other (Python, stdlib)"
        for category, needles in categories:
            if any(needle in where for needle in needles):
                name = category
                break
        spent[name] = spent.get(name, 0.0) + tottime
    return spent
