"""One way from energy to figures: :func:`assemble` turns what a job used (measured by a
run's ledger, or modelled by ``greenml estimate``) and its resolved factors into a
:class:`~greenml.footprint.Footprint`. Runs and estimates both come through here, so they
can never compute CO2e, cost or embodied carbon two ways.

- :class:`Usage`: IT energy per kind (J) and time, per phase, with the devices behind it;
- :class:`Allocation`: how much hardware the job is charged for: the instances (whole ones,
  or the share of one) for the cost, and the servers with their GPUs for embodied carbon;
- :func:`factors_for`: grid intensity (the resolved one, or the hourly-weighted one a run
  computes at its end), market-based intensity, PUE and price, in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from greenml.errors import ConfigError, warn
from greenml.factors.provenance import Factor
from greenml.factors.resolve import RunFactors
from greenml.footprint import J_PER_KWH, DeviceEnergy, Factors, Footprint, compute


@dataclass(frozen=True)
class Usage:
    """What a job used, before any factor: IT energy in joules, and its duration."""

    duration_s: float
    gpu_j: float
    cpu_j: float = 0.0
    ram_j: float = 0.0
    phases: Mapping[str, Usage] = field(default_factory=lambda: MappingProxyType({}))
    devices: tuple[DeviceEnergy, ...] = ()
    measurement: str = "estimated"
    flags: tuple[str, ...] = ()


def usage_of(fp: Footprint) -> Usage:
    """The IT energy and time behind a footprint (PUE and factors taken off again)."""
    j = J_PER_KWH
    return Usage(
        duration_s=fp.duration_s,
        gpu_j=fp.gpu_energy_kwh * j,
        cpu_j=fp.cpu_energy_kwh * j,
        ram_j=fp.ram_energy_kwh * j,
        phases=MappingProxyType({name: usage_of(p) for name, p in fp.phases.items()}),
        measurement=fp.measurement,
    )


def combined(now: Usage, before: Usage) -> Usage:
    """A resumed job: what it uses now plus what it used ``before`` (a checkpoint's
    footprint), phase by phase; the devices and measurement are today's, flagged
    ``resumed``."""
    phases = dict(now.phases)
    for name, u in before.phases.items():
        mine = phases.get(name)
        phases[name] = u if mine is None else combined(mine, u)
    return dataclasses.replace(
        now,
        duration_s=now.duration_s + before.duration_s,
        gpu_j=now.gpu_j + before.gpu_j,
        cpu_j=now.cpu_j + before.cpu_j,
        ram_j=now.ram_j + before.ram_j,
        phases=MappingProxyType(phases),
        flags=tuple(dict.fromkeys((*now.flags, "resumed"))),
    )


@dataclass(frozen=True)
class Allocation:
    """The hardware the job is charged for.

    ``instances_charged`` multiplies the instance's hourly price: whole instances (2 for
    16 GPUs on 8-GPU machines) or the share of one (0.5 for 4 of its 8 GPUs).
    ``gpus_per_server``, ``servers`` and ``server_share`` allocate embodied carbon (SCI:
    RR/ToR); ``gpus_per_server=None`` means the hardware is unknown and so is its embodied
    carbon."""

    instances_charged: float = 1.0
    gpus_per_server: int | None = None
    servers: int = 1
    server_share: float = 1.0


def factors_for(rf: RunFactors, *, grid: Factor | None, instances_charged: float) -> Factors:
    """The factors of a footprint: ``grid`` is the location-based intensity (the
    resolved one, or an hourly-weighted one); market-based follows from it and the run's
    market inputs (GHG Protocol Scope 2)."""
    from greenml.factors.hourly import market_intensity

    market = market_intensity(grid, **rf.market) if grid is not None else None  # type: ignore[arg-type]
    return Factors(
        pue=rf.pue,
        grid_intensity=grid,
        market_intensity=market,
        price_per_hour=rf.price_per_hour,
        price_per_kwh=rf.price_per_kwh,
        price_share=instances_charged,
    )


def assemble(
    usage: Usage,
    rf: RunFactors,
    allocation: Allocation,
    *,
    grid: Factor | None,
    location: str | None,
    instance_type: str | None,
    final: bool = True,
    extra_factors: tuple[Factor, ...] = (),
) -> Footprint:
    """The footprint of ``usage`` under the factors ``rf`` (``grid`` decides the
    location-based intensity) and the hardware ``allocation``. ``extra_factors`` (an
    estimate's power model) are listed first among the footprint's factors."""
    from greenml.factors.hardware import embodied_kg

    factors = factors_for(rf, grid=grid, instances_charged=allocation.instances_charged)

    def figures(u: Usage, **more: object) -> Footprint:
        return compute(
            duration_s=u.duration_s,
            gpu_j=u.gpu_j,
            cpu_j=u.cpu_j,
            ram_j=u.ram_j,
            factors=factors,
            measurement=usage.measurement,
            location=location,
            instance_type=instance_type,
            scope=rf.scope,
            final=final,
            **more,  # type: ignore[arg-type]
        )

    phases = {name: figures(u) for name, u in usage.phases.items()}
    fp = figures(usage, phases=phases, devices=usage.devices, flags=usage.flags)
    embodied: float | None = None
    embodied_factors: list[Factor] = []
    if allocation.gpus_per_server is not None:
        try:
            embodied, embodied_factors = embodied_kg(
                allocation.gpus_per_server,
                usage.duration_s / 3600.0,
                share=allocation.server_share,
                servers=allocation.servers,
                table=rf.tables.embodied(),
            )
        except ConfigError as e:  # a user's embodied table that lacks an item
            warn(f"embodied carbon not computed: {e}")
    return dataclasses.replace(
        fp,
        embodied_co2e_kg=embodied,
        factors=tuple(extra_factors) + fp.factors + tuple(embodied_factors),
    )
