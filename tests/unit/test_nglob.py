"""Named globs (stepup_dist.nglob): what a plan's glob() matches and how it groups matches."""

from pathlib import Path

import pytest

from stepup_dist.nglob import NGlobMulti


def _tree(root: Path, *paths: str) -> None:
    for rel in paths:
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rel)


def test_named_wildcards_agree_across_patterns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, "a1.txt", "a2.txt", "b1.txt", "b3.txt")
    monkeypatch.chdir(tmp_path)
    ngm = NGlobMulti(["a${*n}.txt", "b${*n}.txt"])
    ngm.glob()
    matches = list(ngm)
    assert [m.n for m in matches] == ["1"]
    assert matches[0].files == ["a1.txt", "b1.txt"]
    # files() lists every match of every pattern, consistent or not.
    assert ngm.files() == ("a1.txt", "a2.txt", "b1.txt", "b3.txt")


def test_a_name_repeated_in_one_pattern_must_repeat_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, "ch-1/sec-1-a.txt", "ch-1/sec-2-b.txt", "ch-2/sec-2-c.txt")
    monkeypatch.chdir(tmp_path)
    ngm = NGlobMulti(["ch-${*ch}/sec-${*ch}-${*name}.txt"], {"ch": "[0-9]"})
    ngm.glob()
    assert [(m.ch, m.name) for m in ngm] == [("1", "a"), ("2", "c")]
    assert [m.single for m in ngm] == ["ch-1/sec-1-a.txt", "ch-2/sec-2-c.txt"]


def test_directories_end_with_a_slash_and_paths_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, "ch-1-intro/", "ch-2-theory/", "other.txt")
    monkeypatch.chdir(tmp_path)
    ngm = NGlobMulti(["ch-${*ch}-${*name}/"], {"ch": "[0-9]"})
    ngm.glob()
    first = next(iter(ngm))
    assert (first.ch, first.name, first[0]) == ("1", "intro", "ch-1-intro/")
    assert first[0] / "x.txt" == "ch-1-intro/x.txt"


def test_without_names_it_iterates_over_sorted_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, "b.txt", "a.txt", "sub/c.txt")
    monkeypatch.chdir(tmp_path)
    ngm = NGlobMulti(["*.txt", "**/*.txt"])
    ngm.glob()
    assert list(ngm) == ["a.txt", "b.txt", "sub/c.txt"]
    empty = NGlobMulti(["*.csv"])
    empty.glob()
    assert not empty
    assert list(empty) == []


def test_a_star_between_slashes_matches_a_name_not_nothing() -> None:
    # As in StepUp: "sub/*" matches "sub/other/" but not "sub/" itself; "**" may be empty.
    outs = ["sub/", "sub/other/", "sub/other/foo/", "sub/other/foo/text"]
    one = NGlobMulti(["sub/*"])
    one.extend(outs)
    assert one.single() == "sub/other/"
    deep = NGlobMulti(["sub/other/**"])
    deep.extend(outs)
    assert deep.files() == ("sub/other/", "sub/other/foo/", "sub/other/foo/text")


def test_a_recursive_wildcard_matches_no_folder_only_in_stepup_4s_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path, "sub/a.txt", "sub/deeper/b.txt", "top.txt")
    monkeypatch.chdir(tmp_path)
    v1 = NGlobMulti(["sub/**/*.txt"])
    v1.glob()
    assert v1.files() == ("sub/deeper/b.txt",)
    v4 = NGlobMulti(["sub/**/*.txt"], zero_dirs=True)
    v4.glob()
    assert v4.files() == ("sub/a.txt", "sub/deeper/b.txt")
    lead = NGlobMulti(["**/*.txt"], zero_dirs=True)
    lead.glob()
    assert lead.files() == ("sub/a.txt", "sub/deeper/b.txt", "top.txt")
    # Named wildcards after it still agree, and `x**/` is no recursive wildcard.
    named = NGlobMulti(["**/${*n}.txt"], zero_dirs=True)
    named.extend(["a.txt", "s/a.txt", "b.txt"])
    assert sorted(m.n for m in named) == ["a", "b"]
    assert not NGlobMulti(["x**/a"], zero_dirs=True).may_match("a")
