"""Estimate a planned (or published) training run: kWh, CO2e and dollars, with factors.

The same arithmetic as a measured run (:func:`greenml.footprint.compute`), fed by a power
model instead of meters: IT energy = GPUs x average power per GPU x hours, where the power
is the user's ``power_w`` or the board power (TDP) of the GPU model, an upper bound for a
busy GPU. ``energy_kwh`` skips the power model, so that a published calculation can be
reproduced with the paper's own energy, PUE and grid factor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from greenml.errors import ConfigError
from greenml.factors.provenance import Factor
from greenml.factors.resolve import resolve_run_factors
from greenml.footprint import Factors, Footprint, compute


@dataclass(frozen=True)
class Estimate:
    location: str | None
    footprint: Footprint
    it_energy_kwh: float
    reasons: tuple[str, ...]  # why a figure is missing

    def to_dict(self) -> dict[str, Any]:
        fp = self.footprint
        return {
            "location": self.location,
            "energy_kwh": fp.energy_kwh,
            "it_energy_kwh": self.it_energy_kwh,
            "co2e_kg": fp.co2e_kg,
            "co2e_market_kg": fp.co2e_market_kg,
            "cost_usd": fp.cost_usd,
            "grid_intensity_g_per_kwh": fp.grid_intensity_g_per_kwh,
            "pue": fp.pue,
            "scope": fp.scope,
            "embodied_co2e_kg": fp.embodied_co2e_kg,
            "sci_co2e_kg": fp.sci_co2e_kg,
            "factors": [
                {
                    "name": f.name,
                    "value": f.value,
                    "unit": f.unit,
                    "source": f.source,
                    "year": f.year,
                    "licence": f.licence,
                    "note": f.note,
                }
                for f in fp.factors
            ],
            "flags": list(fp.flags),
            "reasons": list(self.reasons),
        }


def it_energy(
    *,
    gpu: str | None,
    count: int,
    hours: float,
    power_w: float | None,
    energy_kwh: float | None,
    gpus: Any = None,
) -> tuple[float, list[Factor]]:
    """IT energy in kWh and the factors behind it."""
    if energy_kwh is not None:
        if energy_kwh < 0:
            raise ConfigError(f"--energy-kwh {energy_kwh!r} must be >= 0")
        return energy_kwh, [
            Factor("energy", energy_kwh, "kWh", source="user-supplied", note="power model skipped")
        ]
    if count < 1:
        raise ConfigError(f"--count {count!r} must be a whole number of GPUs >= 1")
    if not hours > 0:
        raise ConfigError(f"--hours {hours!r} must be > 0")
    if power_w is not None:
        if not power_w > 0:
            raise ConfigError(f"--power-w {power_w!r} must be > 0 (average watts per GPU)")
        power = Factor("gpu_power", power_w, "W", source="user-supplied", note="average per GPU")
    elif gpu is not None:
        from greenml.factors.hardware import find_gpu, gpu_power_factor

        power = gpu_power_factor(find_gpu(gpu, table=gpus))
    else:
        raise ConfigError("give --gpu (its board power is used), --power-w or --energy-kwh")
    return power.value * count * hours / 1000.0, [power]


def estimate(
    *,
    location: str | None,
    gpu: str | None = None,
    count: int = 1,
    hours: float = 1.0,
    power_w: float | None = None,
    energy_kwh: float | None = None,
    pue: float | None = None,
    grid_intensity_g_per_kwh: float | None = None,
    instance_type: str | None = None,
    price_usd_per_hour: float | None = None,
    allow_assumed_location: bool = False,
    tables_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Estimate:
    """One estimate (see the module docstring)."""
    rf = resolve_run_factors(
        location=location,
        allow_assumed_location=allow_assumed_location,
        grid_intensity_g_per_kwh=grid_intensity_g_per_kwh,
        hourly_intensity_csv=None,
        pue=pue,
        price_usd_per_hour=price_usd_per_hour,
        usd_per_kwh=None,
        instance_type=instance_type,
        instance_share=None,
        scope=None,
        tables_dir=tables_dir,
        environ=environ if environ is not None else {},
    )
    kwh, energy_factors = it_energy(
        gpu=gpu,
        count=count,
        hours=hours,
        power_w=power_w,
        energy_kwh=energy_kwh,
        gpus=rf.tables.gpus(),
    )
    share = 1.0
    reasons = []
    if rf.gpu_count_on_instance is not None:
        from greenml.factors.prices import job_share

        share = job_share(count, rf.gpu_count_on_instance)
    if rf.price_per_hour is None:
        reasons.append("cost: no --instance or --price-usd-per-hour given")
    from greenml.factors.hourly import market_intensity

    factors = Factors(
        pue=rf.pue,
        grid_intensity=rf.grid,
        market_intensity=market_intensity(rf.grid) if rf.grid is not None else None,
        price_per_hour=rf.price_per_hour,
        price_share=share,
    )
    fp = compute(
        duration_s=hours * 3600.0,
        gpu_j=kwh * 3.6e6,
        cpu_j=0.0,
        ram_j=0.0,
        factors=factors,
        flags=rf.flags,
        location=(rf.location.text or rf.location.zone) if rf.location else None,
        instance_type=instance_type,
        scope=rf.scope,
    )
    from greenml.factors.hardware import embodied_kg

    embodied: float | None = None
    embodied_factors: list[Factor] = []
    if energy_kwh is None:
        server_gpus = rf.gpu_count_on_instance or count
        embodied, embodied_factors = embodied_kg(
            server_gpus, hours, share=min(1.0, count / server_gpus), table=rf.tables.embodied()
        )
    else:
        reasons.append("embodied: the hardware is unknown when --energy-kwh replaces the model")
    fp = dataclasses.replace(
        fp,
        factors=tuple(energy_factors) + fp.factors + tuple(embodied_factors),
        embodied_co2e_kg=embodied,
    )
    return Estimate(fp.location, fp, kwh, tuple(reasons))


def compare(base: Estimate, locations: Sequence[str], **kwargs: Any) -> list[Estimate]:
    """The same job in other locations (same energy model; each place's own factors).
    The instance is priced in each region where it has a price; elsewhere cost is None."""
    out = []
    for loc in locations:
        kw = dict(kwargs)
        try:
            out.append(estimate(location=loc, **kw))
        except ConfigError as e:
            if kw.get("instance_type") is None:
                raise
            # The instance may not exist or have no price there: compare energy and CO2e.
            kw["instance_type"] = None
            alt = estimate(location=loc, **kw)
            reason = f"cost: {kwargs['instance_type']} not priced for {loc} ({e})"
            out.append(Estimate(alt.location, alt.footprint, alt.it_energy_kwh, (reason,)))
    return out
