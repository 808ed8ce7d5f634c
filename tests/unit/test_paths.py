"""Path conventions: normalized, root-relative, a directory always ends with a slash."""

import pytest

from stepup_dist.paths import is_dir, join, norm, parent


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a", "a"),
        ("./a", "a"),
        ("a/./b", "a/b"),
        ("a//b", "a/b"),
        ("a/b/../c", "a/c"),
        ("sub/", "sub/"),
        ("sub//", "sub/"),
        ("sub/.", "sub/"),
        ("sub/x/..", "sub/"),
        (".", "./"),
        ("./", "./"),
        ("a/..", "./"),
        ("a/../", "./"),
        ("..", "../"),
        ("../x", "../x"),
        ("/abs/x", "/abs/x"),
        ("/abs/dir/", "/abs/dir/"),
        ("/", "/"),
    ],
)
def test_norm(path: str, expected: str) -> None:
    assert norm(path) == expected


@pytest.mark.parametrize("bad", ["", None, 5, b"a"])
def test_norm_rejects_non_paths(bad: object) -> None:
    with pytest.raises(ValueError, match="not a path"):
        norm(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["a", "a/b/", "./", "../", "/x/y", "/"])
def test_norm_is_idempotent(path: str) -> None:
    assert norm(norm(path)) == norm(path)


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("./", "a", "a"),
        ("./", "sub/", "sub/"),
        ("sub/", "a", "sub/a"),
        ("sub/", "../a", "a"),
        ("sub/", "..", "./"),
        ("sub/", ".", "sub/"),
        ("sub/", "deep/", "sub/deep/"),
        ("sub/", "/abs/a", "/abs/a"),
        ("sub/", "/abs//d/", "/abs/d/"),
        ("a/b/", "../../..", "../"),
    ],
)
def test_join(base: str, path: str, expected: str) -> None:
    assert join(base, path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a", "./"),
        ("sub/", "./"),
        ("sub/a", "sub/"),
        ("sub/deep/", "sub/"),
        ("a/b/c", "a/b/"),
        ("/abs", "/"),
        ("/abs/x", "/abs/"),
        ("/abs/dir/", "/abs/"),
        ("../x", "../"),
        ("./", None),
        ("/", None),
    ],
)
def test_parent(path: str, expected: str | None) -> None:
    assert parent(path) == expected


def test_parent_always_returns_a_directory() -> None:
    for path in ["a", "a/b", "a/b/", "/x", "/x/y/"]:
        result = parent(path)
        assert result is not None
        assert is_dir(result)
        assert result == norm(result)


def test_is_dir() -> None:
    assert is_dir("sub/")
    assert is_dir("./")
    assert not is_dir("sub")


def test_leading_double_slash_is_the_root() -> None:
    assert norm("//a") == "/a"
    assert norm("///a/b/") == "/a/b/"


def test_parent_of_parent_directories() -> None:
    assert parent("../") == "../../"
    assert parent("../../x") == "../../"
