"""Named globs: glob patterns whose `${*name}` wildcards must agree across patterns.

What `glob()` returns, as in StepUp: `glob("ch-${*ch}/sec-${*ch}-*.txt", ch="[0-9]")` matches
files whose two `${*ch}` parts are the same. A named wildcard matches `*` unless a keyword
gives it another pattern; it never crosses a `/`. With several patterns, a match is a
combination of values for every name that each pattern matched at least one file for.

Iterating over an `NGlobMulti` gives `NGlobMatch`es when there are named wildcards (with the
values as attributes and the files by index), and the matched paths otherwise. Paths are
`path.Path` objects (a `str` subclass), as StepUp's are, so a plan may write `m[0] / "x"`.
Directories end with a slash. This module only matches; it talks to nobody.
"""

import glob as _glob
import itertools
import os
import re
from collections.abc import Iterable, Iterator

from path import Path

__all__ = ("NGlobMatch", "NGlobMulti", "has_wildcards")

_TOKEN = re.compile(r"\$\{\*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}|\*\*|\*|\?|\[[^\]/]+\]")


def has_wildcards(pattern: str) -> bool:
    return _TOKEN.search(pattern) is not None


def _anonymous_regex(token: str) -> str:
    if token == "**":
        return ".*"
    if token == "*":
        return "[^/]*"
    if token == "?":
        return "[^/]"
    # A [set]: [!...] negates it as in fnmatch.
    inner = token[1:-1]
    if inner.startswith("!"):
        inner = "^" + inner[1:]
    return f"[{inner}]"


class _Pattern:
    """One pattern: the glob that finds candidates and the regex that checks the names."""

    def __init__(self, pattern: str, subs: dict[str, str], zero_dirs: bool = False):
        self.text = pattern
        self.names: tuple[str, ...] = ()
        self.anonymous = False
        glob_parts: list[str] = []
        regex_parts: list[str] = []
        seen: list[str] = []
        pieces = _pieces(pattern)
        skip_slash = False
        for i, (is_token, text) in enumerate(pieces):
            if not is_token:
                literal = text[1:] if skip_slash else text
                skip_slash = False
                glob_parts.append(_glob.escape(literal))
                regex_parts.append(re.escape(literal))
                continue
            after_text = pieces[i + 1][1] if i + 1 < len(pieces) else ""
            before_text = pieces[i - 1][1] if i > 0 else ""
            if (
                zero_dirs
                and text == "**"
                and after_text.startswith("/")
                and (before_text == "" or before_text.endswith("/"))
            ):
                # StepUp 4: `**/` matches zero or more folders (`sub/**/*.txt` has sub/a.txt).
                self.anonymous = True
                glob_parts.append("**/")
                regex_parts.append("(?:.*/)?")
                skip_slash = True
                continue
            name = text[3:-1] if text.startswith("${*") else None
            if name is None:
                self.anonymous = True
                glob_parts.append(text)
                regex = _anonymous_regex(text)
                # As StepUp: a `*` that is a whole path component matches a non-empty name.
                before = pieces[i - 1][1] if i > 0 else ""
                after = pieces[i + 1][1] if i + 1 < len(pieces) else ""
                if text == "*" and before.endswith("/") and (after == "" or after[0] == "/"):
                    regex = "[^/]+"
                regex_parts.append(regex)
                continue
            sub = subs.get(name, "*")
            if "/" in sub or "**" in sub:
                raise ValueError(f"the pattern of ${{*{name}}} may not cross folders: {sub!r}")
            if name in seen:
                regex_parts.append(f"(?P={name})")
            else:
                seen.append(name)
                regex_parts.append(f"(?P<{name}>{_sub_regex(sub)})")
            glob_parts.append(sub)
        self.names = tuple(seen)
        self.glob = "".join(glob_parts)
        regex = "".join(regex_parts)
        # A directory matched by a pattern without a trailing slash carries one.
        self.regex = re.compile(regex if pattern.endswith("/") else regex + "/?")
        self.results: dict[tuple[str, ...], set[Path]] = {}

    def extend(self, paths: Iterable[str]) -> None:
        for path in paths:
            m = self.regex.fullmatch(path)
            if m is not None:
                values = tuple(m.group(name) for name in self.names)
                self.results.setdefault(values, set()).add(Path(path))

    def search(self, root: str | None = None) -> None:
        found = []
        for match in _glob.iglob(self.glob, root_dir=root, recursive=True, include_hidden=True):
            full = match if root is None else os.path.join(root, match)
            slash = os.path.isdir(full) and not match.endswith("/")
            found.append(match + "/" if slash else match)
        self.extend(found)


def _sub_regex(sub: str) -> str:
    """The regex of a named wildcard's own pattern (anonymous wildcards only)."""
    parts, pos = [], 0
    for m in _TOKEN.finditer(sub):
        if m.group("name") is not None:
            raise ValueError(f"a named wildcard's pattern cannot hold another: {sub!r}")
        parts += [re.escape(sub[pos : m.start()]), _anonymous_regex(m.group())]
        pos = m.end()
    parts.append(re.escape(sub[pos:]))
    return "".join(parts)


def _pieces(pattern: str) -> list[tuple[bool, str]]:
    """The pattern as (is_wildcard, text) pieces, literal text and wildcards alternating."""
    pieces, pos = [], 0
    for m in _TOKEN.finditer(pattern):
        pieces += [(False, pattern[pos : m.start()]), (True, m.group())]
        pos = m.end()
    pieces.append((False, pattern[pos:]))
    return pieces


class NGlobMatch:
    """One consistent combination: the values of the named wildcards and the files."""

    def __init__(self, mapping: dict[str, str], files: list[Path | list[Path]]):
        self._mapping = mapping
        self._files = files

    def __getitem__(self, index: int) -> Path | list[Path]:
        return self._files[index]

    def __getattr__(self, name: str) -> str:
        try:
            return self.__dict__["_mapping"][name]
        except KeyError:
            raise AttributeError(f"'NGlobMatch' object has no attribute {name!r}") from None

    def __repr__(self) -> str:
        return f"NGlobMatch({self._mapping!r}, {self._files!r})"

    @property
    def mapping(self) -> dict[str, str]:
        """The value of each named wildcard."""
        return self._mapping

    @property
    def files(self) -> list[Path | list[Path]]:
        """Per pattern: the file (no anonymous wildcards) or the sorted list of files."""
        return self._files

    @property
    def single(self) -> Path:
        """The only file of the match; ValueError when there are none or several."""
        files: list[Path] = []
        for item in self._files:
            files.extend(item if isinstance(item, list) else [item])
        if len(files) != 1:
            raise ValueError(f"{len(files)} files matched, not one.")
        return files[0]


class NGlobMulti:
    """The matches of several patterns, consistent in their named wildcards."""

    def __init__(
        self,
        patterns: Iterable[str],
        subs: dict[str, str] | None = None,
        *,
        zero_dirs: bool = False,
    ):
        """With `zero_dirs`, `**/` also matches no folder at all, as in StepUp 4 (in StepUp
        1.x, `**` between slashes matches at least one)."""
        if isinstance(patterns, str):
            raise TypeError("The patterns argument cannot be a string")
        subs = dict(subs or {})
        self.zero_dirs = zero_dirs
        self._patterns = [_Pattern(str(p), subs, zero_dirs) for p in patterns]
        names: list[str] = []
        for p in self._patterns:
            names.extend(n for n in p.names if n not in names)
        self._names = tuple(sorted(names))

    @classmethod
    def from_patterns(
        cls, patterns: Iterable[str], subs: dict[str, str] | None = None
    ) -> "NGlobMulti":
        return cls(patterns, subs)

    @property
    def patterns(self) -> list[str]:
        return [p.text for p in self._patterns]

    @property
    def used_names(self) -> tuple[str, ...]:
        return self._names

    def glob(self, root: str | None = None) -> None:
        """Add what the patterns match on disk (relative paths: in `root`, or here)."""
        for p in self._patterns:
            p.search(root)

    def extend(self, paths: Iterable[str]) -> None:
        """Add the given paths that match."""
        if isinstance(paths, str):
            raise TypeError("The paths argument cannot be a string.")
        paths = list(paths)
        for p in self._patterns:
            p.extend(paths)

    @property
    def results(self) -> dict[tuple[str, ...], list[set[Path]]]:
        """Values of the names (sorted by name) -> the set of files of each pattern."""
        results: dict[tuple[str, ...], list[set[Path]]] = {}
        for combo in itertools.product(*(p.results.items() for p in self._patterns)):
            mapping: dict[str, str] = {}
            consistent = True
            for p, (values, _) in zip(self._patterns, combo, strict=True):
                for name, value in zip(p.names, values, strict=True):
                    if mapping.setdefault(name, value) != value:
                        consistent = False
            if consistent:
                key = tuple(mapping[name] for name in self._names)
                results[key] = [paths for _, paths in combo]
        return results

    def matches(self) -> Iterator[NGlobMatch]:
        for values, path_sets in sorted(self.results.items()):
            files: list[Path | list[Path]] = [
                sorted(paths) if p.anonymous else min(paths)
                for p, paths in zip(self._patterns, path_sets, strict=True)
            ]
            yield NGlobMatch(dict(zip(self._names, values, strict=True)), files)

    def files(self) -> tuple[Path, ...]:
        """Every file any pattern matched, sorted (consistent or not)."""
        result: set[Path] = set()
        for p in self._patterns:
            for paths in p.results.values():
                result.update(paths)
        return tuple(sorted(result))

    def single(self) -> Path:
        files = self.files()
        if len(files) != 1:
            raise ValueError(f"There are {len(files)} matches, not just one.")
        return files[0]

    def may_match(self, path: str) -> bool:
        """Whether one of the patterns matches the path (consistent names or not)."""
        return any(p.regex.fullmatch(path) for p in self._patterns)

    def __bool__(self) -> bool:
        return bool(self.results)

    def __iter__(self) -> Iterator[Path | NGlobMatch]:
        if self._names:
            return self.matches()
        return iter(self.files())

    def __len__(self) -> int:
        return len(self.results) if self._names else len(self.files())
