"""Factors: grid intensity, PUE, prices, embodied carbon, with provenance."""
