"""Variable files and JSON arguments (stepup_dist.varfiles), as loadns, dumpns and call use them."""

import dataclasses
import enum
import json
import os
import pathlib
from types import SimpleNamespace

import attrs
import pytest
from path import Path

from stepup_dist.varfiles import dump_variables, load_variables, structure, unstructure


def test_files_load_in_order_and_later_ones_win(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.json").write_text('{"x": 1, "y": "json"}')
    (tmp_path / "b.toml").write_text('y = "toml"\nz = [1, 2]\n')
    (tmp_path / "c.yaml").write_text("z: [3]\nw: yaml\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/d.py").write_text(
        "from path import Path\nv = 5\n_hidden = 1\ndata = Path('data.csv')\n"
    )
    found = load_variables(
        [str(tmp_path / n) for n in ("a.json", "b.toml", "c.yaml", "sub/d.py")], str(tmp_path)
    )
    assert {k: found[k] for k in ("x", "y", "z", "w", "v")} == {
        "x": 1,
        "y": "toml",
        "z": [3],
        "w": "yaml",
        "v": 5,
    }
    assert "_hidden" not in found
    # A Path of a Python file is relative to that file's folder, given back from dir_out.
    assert found["data"] == "sub/data.csv"
    assert isinstance(found["data"], Path)


def test_a_python_file_runs_in_its_folder_and_imports_its_neighbours(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "helper_for_vars.py").write_text("VALUE = 'from helper'\n")
    (tmp_path / "vars.py").write_text(
        "from helper_for_vars import VALUE\nwith open('local.txt') as fh:\n    text = fh.read()\n"
    )
    (tmp_path / "local.txt").write_text("local\n")
    found = load_variables([str(tmp_path / "vars.py")])
    assert (found["VALUE"], found["text"]) == ("from helper", "local\n")


@pytest.mark.parametrize("name", ["vars.txt", "vars"])
def test_an_unknown_suffix_is_refused(tmp_path: pathlib.Path, name: str) -> None:
    (tmp_path / name).write_text("x = 1\n")
    with pytest.raises(ValueError, match="unsupported variable file format"):
        load_variables([str(tmp_path / name)])


def test_a_json_file_must_hold_a_mapping(tmp_path: pathlib.Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="mapping"):
        load_variables([str(tmp_path / "list.json")])


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_dumped_variables_load_back(tmp_path: pathlib.Path, suffix: str) -> None:
    data = SimpleNamespace(inp=[Path("a.txt")], n=3, nested={"k": (1, 2)}, flag=None)
    path = str(tmp_path / f"args{suffix}")
    dump_variables(path, data)
    assert load_variables([path]) == {
        "inp": ["a.txt"],
        "n": 3,
        "nested": {"k": [1, 2]},
        "flag": None,
    }


def test_dumping_to_toml_or_pickle_is_refused(tmp_path: pathlib.Path) -> None:
    for name in ("args.toml", "args.pkl", "args"):
        with pytest.raises(ValueError, match="unsupported file format"):
            dump_variables(str(tmp_path / name), {"x": 1})
        assert not (tmp_path / name).exists()


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: float
    label: str = ""


@attrs.define
class Box:
    corner: Point
    paths: list[Path]
    _tag: str = "t"


def test_unstructure_makes_json_values() -> None:
    value = {
        "path": Path("a/b.txt"),
        "pure": pathlib.PurePosixPath("c.txt"),
        "tuple": (1, "x"),
        "set": {"b", "a"},
        "color": Color.RED,
        "box": Box(Point(1.0, "p"), [Path("x")]),
        "ns": SimpleNamespace(k=1),
    }
    plain = unstructure(value)
    assert json.loads(json.dumps(plain)) == plain
    assert plain == {
        "path": "a/b.txt",
        "pure": "c.txt",
        "tuple": [1, "x"],
        "set": ["a", "b"],
        "color": "red",
        "box": {"corner": {"x": 1.0, "label": "p"}, "paths": ["x"], "_tag": "t"},
        "ns": {"k": 1},
    }
    assert type(plain["path"]) is str


def test_unstructure_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match="cannot pass a object"):
        unstructure({"x": object()})


def test_structure_follows_the_hints() -> None:
    paths = structure(["a.txt", "b.txt"], list[Path])
    assert paths == ["a.txt", "b.txt"]
    assert all(isinstance(p, Path) for p in paths)
    assert structure(3, float) == 3.0
    assert isinstance(structure(3, float), float)
    assert structure(None, int | None) is None
    assert structure("5", int | None) == 5
    assert structure([1, "2"], tuple[int, ...]) == (1, 2)
    assert structure(["a", "a"], set[str]) == {"a"}
    assert structure({"1": [0.5]}, dict[int, list[float]]) == {1: [0.5]}
    assert structure("red", Color) is Color.RED
    box = structure({"corner": {"x": 2}, "paths": ["p"], "tag": "u"}, Box)
    assert box == Box(Point(2.0), [Path("p")], "u")
    assert isinstance(box.paths[0], Path)


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("abc", int),
        ([1], str),
        ("ab", list[str]),
        ({"y": 1}, Point),
        ("yes", bool),
        ([1, 2, 3], tuple[int, int]),
        ("green", Color),
    ],
)
def test_structure_refuses_a_value_that_does_not_fit(value: object, hint: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        structure(value, hint)


def test_a_python_file_sees_here_and_root_of_its_folder(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A step in static/ renders with ../vars/v.py: getenv(..., back=True) in the file must
    # give paths relative to vars/, where it runs (the API reads HERE).
    (tmp_path / "vars").mkdir()
    (tmp_path / "vars/v.py").write_text(
        "import os\nhere = os.environ['HERE']\nroot = os.environ['ROOT']\n"
    )
    monkeypatch.setenv("STEPUP_ROOT", str(tmp_path))
    monkeypatch.setenv("HERE", "static")
    monkeypatch.setenv("ROOT", "..")
    found = load_variables([str(tmp_path / "vars/v.py")])
    assert (found["here"], found["root"]) == ("vars", "..")
    assert (os.environ["HERE"], os.environ["ROOT"]) == ("static", "..")
