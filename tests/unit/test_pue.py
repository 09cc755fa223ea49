"""Default PUE per provider, each with its published source and year."""

from __future__ import annotations

import pytest

from greenml.errors import ConfigError
from greenml.factors.pue import default_pue, load_pue_table


@pytest.mark.parametrize(
    ("provider", "value", "year"),
    [("aws", 1.14, 2025), ("gcp", 1.10, 2024), ("azure", 1.18, 2024), (None, 1.56, 2024)],
)
def test_defaults_by_provider(provider, value, year):
    f = default_pue(provider, "us-east-1")
    assert (f.name, f.value, f.year, f.unit) == ("pue", value, year, "ratio")
    assert f.source and f.licence


def test_every_row_has_provenance_and_a_possible_value():
    for row in load_pue_table().values():
        assert row.source and row.licence and 2015 <= row.year <= 2026
        assert 1.0 < row.pue < 3.0  # 1.0 only ever comes from the user


def test_unknown_provider():
    with pytest.raises(ConfigError, match="no default PUE for provider 'ibm'"):
        default_pue("ibm")
