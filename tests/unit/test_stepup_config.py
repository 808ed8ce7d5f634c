"""StepUp 4's [build] settings as `stepup-dist build` reads them (cli/stepup_config.py)."""

from pathlib import Path

import pytest

from stepup_dist.cli.stepup_config import read_settings
from stepup_dist.config import parse_resources
from stepup_dist.errors import ConfigError, UserError


def test_later_files_and_then_the_environment_win_per_resource(tmp_path: Path) -> None:
    (tmp_path / "stepup.toml").write_text('[build]\nresources = "cpu:4,gpu:1"\njobs = 3\n')
    (tmp_path / "pyproject.toml").write_text('[tool.stepup.build]\nresources = "gpu:2,mem"\n')
    (tmp_path / "stepup-local.toml").write_text('[build]\nresources = "mem:8"\n')
    settings = read_settings(tmp_path, {"STEPUP_BUILD_RESOURCES": "cpu:0"})
    assert settings.resources == {"cpu": 0, "gpu": 2, "mem": 8}
    assert settings.jobs == 3
    assert settings.warnings == []


def test_jobs_with_a_decimal_point_is_a_share_of_the_cpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert read_settings(tmp_path, {"STEPUP_BUILD_JOBS": "0.5"}).jobs == 4
    assert read_settings(tmp_path, {"STEPUP_BUILD_JOBS": "2"}).jobs == 2
    with pytest.raises(UserError, match="jobs = '-1'"):
        read_settings(tmp_path, {"STEPUP_BUILD_JOBS": "-1"})


def test_every_other_build_setting_is_one_warning_naming_its_source(tmp_path: Path) -> None:
    (tmp_path / ".stepup.toml").write_text("[build]\nforkserver = true\n[clean]\ncommit = 1\n")
    settings = read_settings(tmp_path, {"STEPUP_BUILD_WATCH": "1", "STEPUP_ROOT": "/x"})
    only = "stepup-dist reads only resources, jobs and the settings of build's flags"
    assert settings.warnings == [
        f"ignoring StepUp's build setting forkserver = True ({tmp_path / '.stepup.toml'}): " + only,
        "ignoring StepUp's build setting watch = '1' (the environment, STEPUP_BUILD_*): "
        + only
        + "; give build --watch",
    ]


def test_the_settings_of_build_s_flags_are_read(tmp_path: Path) -> None:
    (tmp_path / "stepup.toml").write_text("[build]\nkeep_going = true\ndefer_cap = 3\n")
    settings = read_settings(tmp_path, {"STEPUP_BUILD_CLEAN": "0"}, flags=("gpu:2",))
    assert settings.warnings == []
    assert settings.switches == {"keep_going": True, "defer_cap": 3, "clean": False}
    assert settings.resources == {"gpu": 2}
    with pytest.raises(UserError, match="keep_going = 'maybe'"):
        read_settings(tmp_path, {"STEPUP_BUILD_KEEP_GOING": "maybe"})


def test_a_file_that_is_no_toml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "stepup.toml").write_text("[build\n")
    with pytest.raises(UserError, match="cannot read StepUp's settings in"):
        read_settings(tmp_path, {})


def test_resources_as_stepup_4_writes_them() -> None:
    assert parse_resources("gpu, cpu:2", bare=True) == {"gpu": 1, "cpu": 2}
    assert parse_resources("gpu:0", zero=True) == {"gpu": 0}
    with pytest.raises(ConfigError):
        parse_resources("gpu")  # a worker's --resources says how many
    with pytest.raises(ConfigError):
        parse_resources("gpu:0")
