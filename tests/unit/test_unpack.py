"""The differential tests' unpacking of StepUp's sdist refuses members that leave the target.

It runs on whatever Python runs the suite; under `.ci/run` that is the oldest the machine
offers (Debian's 3.11.2, which has no `extractall(filter=)`).
"""

import io
import tarfile
from pathlib import Path

import pytest

from tests.differential.stepup_cases import unpack


def _tar(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            data = b"x" if member.isfile() else b""
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_unpacks_files_folders_and_inner_links(tmp_path: Path) -> None:
    folder = tarfile.TarInfo("pkg/sub")
    folder.type = tarfile.DIRTYPE
    archive = _tar(
        tmp_path / "ok.tar.gz",
        folder,
        _file("pkg/sub/a.txt"),
        _link("pkg/b.txt", "sub/a.txt"),
        _link("pkg/c.txt", "pkg/sub/a.txt", tarfile.LNKTYPE),
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(archive, dest)
    assert (dest / "pkg/sub/a.txt").read_bytes() == b"x"
    assert (dest / "pkg/b.txt").is_symlink()
    assert (dest / "pkg/b.txt").read_bytes() == b"x"
    assert (dest / "pkg/c.txt").read_bytes() == b"x"


@pytest.mark.parametrize(
    "member",
    [
        _file("../x"),
        _file("pkg/../../x"),
        _file("/tmp/stepup-dist-unpack-escape"),
        _link("pkg/out", "../../outside"),
        _link("pkg/abs", "/etc/passwd"),
        _link("pkg/hard", "../outside", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out"],
)
def test_refuses_members_that_leave_the_target(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", _file("pkg/fine.txt"), member)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ValueError, match=r"outside|leaves"):
        unpack(archive, dest)
    # Nothing is written before every member has been checked.
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "outside").exists()


def test_refuses_devices(tmp_path: Path) -> None:
    device = tarfile.TarInfo("pkg/dev")
    device.type = tarfile.CHRTYPE
    archive = _tar(tmp_path / "dev.tar.gz", device)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ValueError, match="not a file"):
        unpack(archive, dest)
