"""Every test runs in a folder of its own, so nothing lands in the checkout.

That folder holds a ``greenml.toml`` turning MLflow logging and the journal off: tests of
measurement and factors should not each create an MLflow store. The settings file is the
lowest-precedence source, so a test that passes ``log_to_mlflow=True`` (or uses the
``plain_cwd`` fixture) gets the real behaviour.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def own_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path_factory.mktemp("cwd")
    (cwd / "greenml.toml").write_text("log_to_mlflow = false\njournal = false\n")
    monkeypatch.chdir(cwd)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    for name in ("GREENML_LOG_TO_MLFLOW", "GREENML_JOURNAL", "GREENML_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    return cwd


@pytest.fixture
def plain_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder: greenml's defaults, MLflow's local store and the journal
    land here."""
    cwd = tmp_path_factory.mktemp("plain")
    monkeypatch.chdir(cwd)
    return cwd
