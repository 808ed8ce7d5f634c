"""Path maps: parsing, component boundaries, longest prefix, and jobs put in local terms."""

from pathlib import Path

import pytest

from stepup_dist.config import load_config, step_environ, to_environ
from stepup_dist.errors import ConfigError
from stepup_dist.messages import CheckJob, FileState, RunJob
from stepup_dist.pathmap import PathMap, parse_path_map
from stepup_dist.worker.execute import WorkerContext, check_files, run_step


def pmap(*items: str) -> PathMap:
    problems: list[str] = []
    result = parse_path_map(items, problems)
    assert problems == []
    return result


def test_parse_normalizes_and_orders_longest_first() -> None:
    m = pmap("/home/u=/mnt/u/", "/home/u/proj/=/scratch//proj")
    assert m.pairs == (("/home/u/proj", "/scratch/proj"), ("/home/u", "/mnt/u"))
    assert m.text() == "/home/u/proj=/scratch/proj:/home/u=/mnt/u"
    assert not PathMap()


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ("/a", "is not PLANNER_PATH=LOCAL_PATH"),
        ("/a=", "is not PLANNER_PATH=LOCAL_PATH"),
        ("/a=/b=/c", "is not PLANNER_PATH=LOCAL_PATH"),
        ("a=/b", "both paths must be absolute"),
        ("/a=b", "both paths must be absolute"),
    ],
)
def test_bad_items(item: str, why: str) -> None:
    problems: list[str] = []
    parse_path_map([item], problems)
    assert len(problems) == 1
    assert why in problems[0]
    assert item in problems[0]


def test_same_planner_path_twice() -> None:
    problems: list[str] = []
    parse_path_map(["/a=/b", "/a/=/c"], problems)
    assert problems == ["path map '/a/=/c' (--path-map, STEPUP_DIST_PATH_MAP): /a is mapped twice"]
    problems = []
    parse_path_map(["/a=/b", "/a=/b"], problems)
    assert problems == []


def test_component_boundaries() -> None:
    m = pmap("/home/u/proj=/scratch/proj")
    assert m.to_local("/home/u/proj") == "/scratch/proj"
    assert m.to_local("/home/u/proj/") == "/scratch/proj/"
    assert m.to_local("/home/u/proj/a/b.txt") == "/scratch/proj/a/b.txt"
    assert m.to_local("/home/u/project2") is None
    assert m.to_local("/home/u/project2/x") is None
    assert m.to_local("/home/u") is None
    assert m.to_planner("/scratch/proj/x/") == "/home/u/proj/x/"
    assert m.to_planner("/scratch/project2/x") == "/scratch/project2/x"


def test_longest_prefix_wins_both_ways() -> None:
    m = pmap("/home/u=/mnt/home", "/home/u/proj=/fast/proj")
    assert m.to_local("/home/u/proj/x") == "/fast/proj/x"
    assert m.to_local("/home/u/other/x") == "/mnt/home/other/x"
    n = pmap("/a=/mnt", "/b=/mnt/b")
    assert n.to_planner("/mnt/b/x") == "/b/x"
    assert n.to_planner("/mnt/c/x") == "/a/c/x"


def test_slash_on_either_side() -> None:
    assert pmap("/=/mnt/host").to_local("/etc/x") == "/mnt/host/etc/x"
    assert pmap("/data=/").to_local("/data/x") == "/x"
    assert pmap("/data=/").to_local("/data") == "/"


def test_config_flag_wins_over_env_and_bad_values_are_one_error(tmp_path: Path) -> None:
    env = {"STEPUP_DIST_PATH_MAP": "/a=/b:/c=/d"}
    assert load_config(environ=env).path_map.pairs == (("/a", "/b"), ("/c", "/d"))
    assert load_config(path_map=["/x=/y"], environ=env).path_map.pairs == (("/x", "/y"),)
    with pytest.raises(ConfigError) as info:
        load_config(environ={"STEPUP_DIST_PATH_MAP": "/a:/b=c", "STEPUP_DIST_LEASE": "0"})
    message = str(info.value)
    assert "\n" not in message
    assert "'/a'" in message
    assert "'/b=c'" in message
    assert "lease" in message


def test_steps_get_the_map_for_their_api_calls() -> None:
    config = load_config(path_map=["/a=/b"], environ={})
    assert to_environ(config)["STEPUP_DIST_PATH_MAP"] == "/a=/b"
    assert step_environ(config)["STEPUP_DIST_PATH_MAP"] == "/a=/b"
    assert "STEPUP_DIST_PATH_MAP" not in to_environ(load_config(environ={}))


def test_planner_args_maps_absolute_paths_back() -> None:
    m = pmap("/home/u/proj=/scratch/proj")
    args = {
        "command": "cat /scratch/proj/x",
        "workdir": "sub/",
        "inp": ["/scratch/proj/a.txt", "b.txt", "/usr/share/dict"],
        "out": ["/scratch/proj/out/"],
        "paths": ["/scratch/proj/s.txt", "/scratch/proj/tree/"],
        "trees": ["/scratch/proj/tree/"],
        "prefix": "/scratch/proj/graph",
    }
    assert m.planner_args(args) == {
        "command": "cat /scratch/proj/x",  # commands are not rewritten
        "workdir": "sub/",
        "inp": ["/home/u/proj/a.txt", "b.txt", "/usr/share/dict"],
        "out": ["/home/u/proj/out/"],
        "paths": ["/home/u/proj/s.txt", "/home/u/proj/tree/"],
        "trees": ["/home/u/proj/tree/"],  # StepUp 4's static folders
        "prefix": "/home/u/proj/graph",  # of graph()
    }
    assert PathMap().planner_args(args) is args


def _ctx(m: PathMap) -> WorkerContext:
    return WorkerContext("node7", "w1", {}, path_map=m)


def test_run_step_works_in_the_local_folder_and_reports_in_planner_terms(
    tmp_path: Path,
) -> None:
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    m = pmap(f"/planner/proj={local}", f"/planner/data={tmp_path}/data")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("x")
    job = RunJob(
        "b",
        "s",
        1,
        'echo "$STEPUP_ROOT $PWD" > here.txt; cp ../../data/in.txt ../../data/copy.txt',
        "/planner/proj",
        "sub/",
        {},
        ["sub/here.txt", "/planner/data/copy.txt"],
    )
    result = run_step(job, _ctx(m))
    assert result.returncode == 0, result.stderr + result.error
    assert (local / "sub" / "here.txt").read_text() == f"{local} {local}/sub\n"
    assert set(result.out_states) == {"sub/here.txt", "/planner/data/copy.txt"}


def test_uncovered_root_is_refused_and_never_run(tmp_path: Path) -> None:
    m = pmap(f"/planner/proj={tmp_path}")
    job = RunJob("b", "s", 1, "touch ran.txt", str(tmp_path), "./", {}, [])
    result = run_step(job, _ctx(m))
    assert result.returncode == -1
    assert result.error == (
        f"refused: root {tmp_path} is under no --path-map of w1 on node7 (maps /planner/proj)"
    )
    assert not (tmp_path / "ran.txt").exists()


def test_check_files_in_local_terms(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    m = pmap(f"/planner/proj={tmp_path}")
    checked = check_files(
        CheckJob("b", 1, "/planner/proj", ["a.txt", "/planner/proj/a.txt", "no"], [None] * 3),
        _ctx(m),
    )
    assert checked.error == ""
    first, second, third = checked.states
    assert isinstance(first, FileState)
    assert first == second
    assert third is None
    refused = check_files(CheckJob("b", 2, "/elsewhere", ["a.txt"], [None]), _ctx(m))
    assert refused.states == []
    assert "/elsewhere is under no --path-map" in refused.error
