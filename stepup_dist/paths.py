"""Path conventions shared by the plan API and the planner.

Paths in the graph are relative to the build's root (or absolute), normalized, and a
directory always ends with a slash. The root itself is `./`.
"""

import posixpath

__all__ = ("is_dir", "join", "norm", "parent", "step_key")


def norm(path: str) -> str:
    """Normalize a path, keeping (or adding, for `.`) the trailing slash of a directory."""
    if not isinstance(path, str) or path == "":
        raise ValueError(f"not a path: {path!r}")
    trailing = path.endswith("/") or path in (".", "..") or path.endswith(("/.", "/.."))
    result = posixpath.normpath(path)
    if result.startswith("//"):
        # POSIX keeps a leading double slash; on Linux it is just the root.
        result = "/" + result.lstrip("/")
    if result == ".":
        return "./"
    if trailing and not result.endswith("/"):
        result += "/"
    return result


def join(base: str, path: str) -> str:
    """Interpret `path` relative to the directory `base` (itself normalized)."""
    if posixpath.isabs(path):
        return norm(path)
    return norm(posixpath.join(base, path))


def is_dir(path: str) -> bool:
    return path.endswith("/")


def parent(path: str) -> str | None:
    """The directory holding `path`, or None for the root and for `/`."""
    stripped = path.rstrip("/")
    if stripped in ("", "."):
        return None
    if posixpath.basename(stripped) == "..":
        return stripped + "/../"
    head = posixpath.dirname(stripped)
    if head == "":
        return "./"
    return head if head.endswith("/") else head + "/"


def step_key(command: str, workdir: str) -> str:
    """The identity of a step, as StepUp shows it."""
    return command if workdir == "./" else f"{command}  # wd={workdir}"
