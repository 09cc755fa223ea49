"""Meters: read hardware, return cumulative joules or power per device (see ``base``)."""
