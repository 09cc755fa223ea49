"""Location strings, local-only detection, and no silent guess."""

from __future__ import annotations

import pytest

from greenml.errors import ConfigError
from greenml.factors import location


@pytest.mark.parametrize(
    ("text", "zone"), [("FR", "FR"), ("fra", "FRA"), ("US-CA", "US-CA"), ("se-3", "SE-3")]
)
def test_countries_and_subdivisions(text, zone):
    loc = location.parse(text)
    assert (loc.zone, loc.provider, loc.assumed) == (zone, None, False)


def test_cloud_region_maps_to_its_grid_zone():
    loc = location.parse("aws:us-east-1")
    assert (loc.provider, loc.region, loc.zone) == ("aws", "us-east-1", "US-VA")
    assert location.parse("gcp:europe-north2").zone == "SE-3"


def test_unknown_region_suggests_close_names():
    with pytest.raises(ConfigError, match=r"us-east-7.*us-east-1"):
        location.parse("aws:us-east-7")


@pytest.mark.parametrize("text", ["", "   ", "mars", "aws", "ibm:us-south", "F"])
def test_bad_location_strings(text):
    with pytest.raises(ConfigError, match="location="):
        location.parse(text)


def test_detected_from_cloud_sdk_environment_only():
    loc = location.resolve(None, environ={"AWS_DEFAULT_REGION": "eu-north-1"})
    assert (loc.provider, loc.region, loc.origin) == ("aws", "eu-north-1", "AWS_DEFAULT_REGION")
    assert loc.zone == "SE-3"
    # AWS_REGION wins over AWS_DEFAULT_REGION, as in the AWS SDKs.
    both = {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "eu-north-1"}
    assert location.resolve(None, environ=both).zone == "US-OR"


def test_explicit_location_wins_over_detection():
    loc = location.resolve("DE", environ={"AWS_REGION": "us-east-1"})
    assert loc.zone == "DE" and loc.origin == "argument"


def test_unknown_location_is_an_error_unless_assumption_allowed():
    with pytest.raises(ConfigError, match=r"location is unknown.*allow_assumed_location=True"):
        location.resolve(None, environ={})
    loc = location.resolve(None, environ={}, allow_assumed=True)
    assert loc.assumed and loc.zone == "WORLD"
