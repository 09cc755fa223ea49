"""Settings: arguments > GREENML_* env > [tool.greenml] > defaults, validated with clear errors."""

from __future__ import annotations

import pytest

from greenml.config import Settings, resolve, validate_phase_name
from greenml.errors import ConfigError


def test_defaults(tmp_path):
    assert resolve({}, environ={}, config_dir=tmp_path) == Settings()


def test_precedence_argument_env_toml(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname = 'x'\n\n[tool.greenml]\npue = 1.4\ninterval_s = 0.5\n"
        "grid_intensity_g_per_kwh = 50\n"
    )
    env = {"GREENML_PUE": "1.2", "GREENML_INTERVAL_S": "0.25"}
    s = resolve({"pue": 1.1}, environ=env, config_dir=tmp_path)
    assert (s.pue, s.interval_s, s.grid_intensity_g_per_kwh) == (1.1, 0.25, 50.0)


def test_greenml_toml(tmp_path):
    (tmp_path / "greenml.toml").write_text('location = "FR"\ngpu_ids = [0, "GPU-abc"]\n')
    s = resolve({}, environ={}, config_dir=tmp_path)
    assert s.location == "FR" and s.gpu_ids == (0, "GPU-abc")


def test_unknown_toml_key_names_the_file_and_valid_keys(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.greenml]\npeu = 1.2\n")
    said = r"pyproject.toml: unknown setting 'peu' \(did you mean 'pue'\?\)"
    with pytest.raises(ConfigError, match=said):
        resolve({}, environ={}, config_dir=tmp_path)


def test_bad_toml_value_names_where_it_came_from(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.greenml]\ninterval_s = -1\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.greenml\] interval_s = -1"):
        resolve({}, environ={}, config_dir=tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0,1", (0, 1)), ("GPU-1234, 2", ("GPU-1234", 2)), ([3], (3,)), (2, (2,))],
)
def test_gpu_ids_forms(tmp_path, value, expected):
    assert resolve({"gpu_ids": value}, environ={}, config_dir=tmp_path).gpu_ids == expected


@pytest.mark.parametrize("value", [[-1], ["cuda:0"], [True], "", 1.5])
def test_bad_gpu_ids(tmp_path, value):
    with pytest.raises(ConfigError, match="gpu_ids="):
        resolve({"gpu_ids": value}, environ={}, config_dir=tmp_path)


def test_env_gpu_ids_error_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="GREENML_GPU_IDS='0,x'"):
        resolve({}, environ={"GREENML_GPU_IDS": "0,x"}, config_dir=tmp_path)


def test_negative_prices_and_intensity(tmp_path):
    for key in ("grid_intensity_g_per_kwh", "price_usd_per_hour", "usd_per_kwh"):
        with pytest.raises(ConfigError, match=f"{key}=-3.*>= 0"):
            resolve({key: -3}, environ={}, config_dir=tmp_path)


def test_phase_names():
    assert validate_phase_name("eval-1.val set_2") == "eval-1.val set_2"
    for bad in ("", "a/b", "x" * 65, None, 3):
        with pytest.raises(ConfigError, match="phase name"):
            validate_phase_name(bad)


def test_recording_settings_defaults_and_sources(tmp_path):
    s = resolve({}, environ={}, config_dir=tmp_path)
    assert (s.log_to_mlflow, s.journal, s.journal_dir, s.log_interval_s) == (
        True,
        True,
        ".greenml/journal",
        30.0,
    )
    (tmp_path / "greenml.toml").write_text('experiment = "bert"\nlog_interval_s = 10\n')
    env = {"GREENML_LOG_TO_MLFLOW": "off", "GREENML_JOURNAL_DIR": "/var/greenml"}
    s = resolve({"run_name": "r1"}, environ=env, config_dir=tmp_path)
    assert (s.experiment, s.run_name, s.log_interval_s) == ("bert", "r1", 10.0)
    assert (s.log_to_mlflow, s.journal_dir) == (False, "/var/greenml")


@pytest.mark.parametrize(
    ("arguments", "environ", "message"),
    [
        ({"log_interval_s": 0}, {}, "log_interval_s=0 is invalid: it must be a number > 0"),
        ({}, {"GREENML_LOG_INTERVAL_S": "soon"}, "GREENML_LOG_INTERVAL_S='soon' is not a number"),
        (
            {},
            {"GREENML_JOURNAL": "maybe"},
            "GREENML_JOURNAL='maybe' is invalid: give true or false",
        ),
        ({"log_to_mlflow": "sometimes"}, {}, "log_to_mlflow='sometimes' is invalid"),
        ({"tracking_uri": "  "}, {}, "tracking_uri='  ' is invalid: give a non-empty string"),
    ],
)
def test_bad_recording_settings_name_the_value(tmp_path, arguments, environ, message):
    with pytest.raises(ConfigError) as e:
        resolve(arguments, environ=environ, config_dir=tmp_path)
    assert message in str(e.value)


def test_every_setting_is_documented_and_a_tracker_keyword():
    import inspect
    from pathlib import Path

    import greenml
    from greenml.config import NAMES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    first_cells = [line.split("|")[1] for line in doc.splitlines() if line.startswith("| `")]
    missing = [name for name in NAMES if not any(f"`{name}`" in c for c in first_cells)]
    assert missing == []
    keywords = inspect.signature(greenml.Tracker).parameters
    assert all(keywords[name].kind is inspect.Parameter.KEYWORD_ONLY for name in NAMES)


def test_an_unknown_keyword_suggests_the_setting():
    import greenml

    with pytest.raises(
        ConfigError, match=r"unknown setting 'locaton' \(did you mean 'location'\?\)"
    ):
        greenml.Tracker(locaton="FR", environ={})
