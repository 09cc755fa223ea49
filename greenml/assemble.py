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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from greenml.errors import ConfigError, warn
from greenml.factors.provenance import Factor
from greenml.factors.resolve import RunFactors
from greenml.footprint import J_PER_KWH, DeviceEnergy, Factors, Footprint, Work, compute
from greenml.ledger import zero_forever
from greenml.meters.gpu import averaging_window_s

if TYPE_CHECKING:
    from greenml.factors.hourly import HourlyIntensity
    from greenml.ledger import ChannelState


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
    work: Work | None = None  # what the training loop counted (None: nothing)


def with_durations(usage: Usage, duration_s: float, phase_durations: Mapping[str, float]) -> Usage:
    """``usage`` with the run's and each phase's duration set (the energies unchanged)."""
    phases = {
        name: Usage(phase_durations.get(name, 0.0), u.gpu_j, u.cpu_j, u.ram_j)
        for name, u in usage.phases.items()
    }
    return Usage(
        duration_s,
        usage.gpu_j,
        usage.cpu_j,
        usage.ram_j,
        MappingProxyType(phases),
        usage.devices,
        usage.measurement,
        usage.flags,
        usage.work,
    )


def with_work(usage: Usage, work: Work | None) -> Usage:
    """``usage`` with the work the training loop counted."""
    return usage if work is None else dataclasses.replace(usage, work=work)


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
        work=fp.work if fp.steps is not None else None,
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
        work=before.work if now.work is None else now.work.plus(before.work or Work()),
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
    memo: dict[str, Any] | None = None,
    peak_flops: Factor | None = None,
    work_phase: str | None = None,
) -> Footprint:
    """The footprint of ``usage`` under the factors ``rf`` (``grid`` decides the
    location-based intensity) and the hardware ``allocation``. ``extra_factors`` (an
    estimate's power model) are listed first among the footprint's factors. ``memo`` (a
    dict the caller keeps for one run, whose ``rf`` and ``allocation`` do not change)
    keeps what does not depend on the usage, so a run's snapshots stay cheap.

    The work the usage carries gives the per-unit figures and, with ``peak_flops`` (one
    GPU's), the model FLOPs utilisation over the time spent in ``work_phase`` (the
    training phase; the whole run if it has no such phase)."""
    memo = {} if memo is None else memo
    if grid is rf.grid and "factors" in memo:
        factors = memo["factors"]
    else:
        factors = factors_for(rf, grid=grid, instances_charged=allocation.instances_charged)
        if grid is rf.grid:
            memo["factors"] = factors

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
    embodied: float | None = None
    embodied_factors: tuple[Factor, ...] = ()
    if allocation.gpus_per_server is not None:
        if "embodied" not in memo:
            memo["embodied"] = _embodied_per_hour(rf, allocation)
        per_hour = memo["embodied"]
        if per_hour is not None:
            embodied = per_hour[0] * usage.duration_s / 3600.0
            embodied_factors = tuple(per_hour[1])
    return figures(
        usage,
        phases=phases,
        devices=usage.devices,
        flags=usage.flags,
        embodied_co2e_kg=embodied,
        factors_before=tuple(extra_factors),
        factors_after=embodied_factors,
        work=usage.work,
        peak_flops=peak_flops,
        gpus=len({d.key for d in usage.devices if d.kind == "gpu"}),
        work_duration_s=(
            usage.phases[work_phase].duration_s if work_phase in usage.phases else None
        ),
    )


def _embodied_per_hour(rf: RunFactors, allocation: Allocation) -> tuple[float, list[Factor]] | None:
    """Embodied kgCO2e per reserved hour of the allocation (amortisation is linear in
    time) and its factors; None, with a warning, when a user's table lacks an item."""
    from greenml.factors.hardware import embodied_kg

    assert allocation.gpus_per_server is not None
    try:
        return embodied_kg(
            allocation.gpus_per_server,
            1.0,
            share=allocation.server_share,
            servers=allocation.servers,
            table=rf.tables.embodied(),
        )
    except ConfigError as e:  # a user's embodied table that lacks an item
        warn(f"embodied carbon not computed: {e}")
        return None


# -- a run's ledger -> its usage ---------------------------------------------------------

_METHOD_RANK = {"counter": 0, "sampled": 1, "estimated": 2}


def _range_kwh(st: ChannelState) -> dict[str, float]:
    """The device's stated range in kWh, widened by the uncertainty of its last
    cumulative value and never excluding the estimate itself; empty without a range."""
    if st.low_j is None or st.high_j is None:
        return {}
    low = min(st.low_j - st.edge_j, st.energy_j)
    high = max(st.high_j + st.edge_j, st.energy_j)
    return {"energy_low_kwh": max(low, 0.0) / J_PER_KWH, "energy_high_kwh": high / J_PER_KWH}


def usage_from_ledger(
    states: Mapping[str, ChannelState],
    *,
    duration_s: float,
    phase_durations: Mapping[str, float],
    phase_names: Sequence[str],
    flags: Sequence[str] = (),
) -> Usage:
    """A run's usage from its ledger's channel states: IT energy per kind and phase, each
    device with its method and troubles, and the flags they raise (``device_lost:<key>``,
    ``read_errors:<key>``, ``implausible_readings:<key>``, ``counter_bridged:<key>``,
    ``zero_readings:<key>``, ``estimated:<kind>``) after ``flags``."""
    out_flags = list(flags)
    devices = []
    per_kind = {"gpu": 0.0, "cpu": 0.0, "ram": 0.0}
    phase_kind: dict[str, dict[str, float]] = {}
    for st in states.values():
        ch = st.channel
        per_kind[ch.kind] += st.energy_j
        for name, j in st.phase_j.items():
            phase_kind.setdefault(name, {"gpu": 0.0, "cpu": 0.0, "ram": 0.0})[ch.kind] += j
        devices.append(
            DeviceEnergy(
                key=ch.key,
                kind=ch.kind,
                name=ch.name,
                method=ch.method,
                energy_kwh=st.energy_j / J_PER_KWH,
                index=ch.index,
                uuid=ch.uuid,
                power_limit_w=ch.power_limit_w,
                share=ch.share,
                simulated=ch.simulated,
                read_errors=st.errors,
                lost=st.lost_at_s is not None,
                extrapolated_s=st.extrapolated_s,
                implausible_readings=st.implausible,
                bridged_s=st.bridged_s,
                details=ch.details,
                **_range_kwh(st),
            )
        )
        if st.low_j is not None and averaging_window_s(ch) is None:
            out_flags.append(f"part_time_power:{ch.key}")
        if st.gap_s > 0:
            out_flags.append(f"read_gaps:{ch.key}")
        if st.lost_at_s is not None:
            out_flags.append(f"device_lost:{ch.key}")
        if st.errors:
            out_flags.append(f"read_errors:{ch.key}")
        if st.implausible:
            out_flags.append(f"implausible_readings:{ch.key}")
        if st.bridges:
            out_flags.append(f"counter_bridged:{ch.key}")
        if zero_forever(st):
            out_flags.append(f"zero_readings:{ch.key}")
        if ch.method == "estimated":
            out_flags.append(f"estimated:{ch.kind}")
    phases = {}
    for name in phase_names:
        j = phase_kind.get(name, {"gpu": 0.0, "cpu": 0.0, "ram": 0.0})
        phases[name] = Usage(phase_durations.get(name, 0.0), j["gpu"], j["cpu"], j["ram"])
    return Usage(
        duration_s=duration_s,
        gpu_j=per_kind["gpu"],
        cpu_j=per_kind["cpu"],
        ram_j=per_kind["ram"],
        phases=MappingProxyType(phases),
        devices=tuple(devices),
        measurement=measurement_of(devices),
        flags=tuple(out_flags),
    )


def measurement_of(devices: Sequence[DeviceEnergy]) -> str:
    """The run's ``greenml.measurement`` tag: ``simulated`` if any device was simulated;
    else the weakest method among the GPUs, or among all devices when there is no GPU."""
    if any(d.simulated for d in devices):
        return "simulated"
    pool = [d for d in devices if d.kind == "gpu"] or list(devices)
    if not pool:
        return "estimated"
    return max((_method(d) for d in pool), key=lambda m: _METHOD_RANK.get(m, 3))


def _method(d: DeviceEnergy) -> str:
    """A device's method as measured: a counter some of whose time was bridged with power
    readings (a reset, a stuck counter) is only ``sampled`` for the run."""
    return "sampled" if d.method == "counter" and d.bridged_s > 0 else d.method


def hourly_grid(
    table: HourlyIntensity,
    states: Mapping[str, ChannelState],
    *,
    epoch_offset_s: float,
    start_s: float,
    end_s: float,
) -> Factor | None:
    """The energy-weighted intensity of the hours a run's energy was used in: each stretch
    of each channel's power series, placed in wall-clock time (monotonic + offset)."""
    intervals = [
        (
            p.t_start_s + epoch_offset_s,
            p.t_end_s + epoch_offset_s,
            p.power_w * (p.t_end_s - p.t_start_s),
        )
        for st in states.values()
        for p in st.series.points
    ]
    total_j = sum(st.energy_j for st in states.values())
    if not intervals and total_j > 0:
        intervals = [(start_s + epoch_offset_s, end_s + epoch_offset_s, total_j)]
    if not intervals:
        return None
    return table.factor(table.weighted(intervals))


def peak_flops_for(
    devices: Sequence[DeviceEnergy], rf: RunFactors, precision: str
) -> Factor | None:
    """One GPU's peak dense tensor throughput at ``precision`` (the ``gpu_peak_flops``
    factor, for MFU) when the run's GPUs are all one board the GPU table knows; None
    otherwise (no GPU, mixed boards, a board without the figure)."""
    from greenml.factors.hardware import find_gpu, peak_flops_factor

    names = {d.name for d in devices if d.kind == "gpu"}
    if len(names) != 1:
        return None
    try:
        spec = find_gpu(names.pop(), table=rf.tables.gpus())
    except ConfigError:
        return None
    return peak_flops_factor(spec, precision)


def allocation_for(rf: RunFactors, gpus_measured: int) -> Allocation:
    """The hardware a run is charged for. On a cloud instance: ``instance_share`` if
    given, else GPUs measured / GPUs on the instance, for the cost and the server's
    embodied carbon alike; a run that measures no GPU there gives no basis for a share
    and is charged the whole instance (what was rented). Elsewhere: the GPUs measured."""
    if rf.gpu_count_on_instance is not None:
        from greenml.factors.prices import job_share

        share = job_share(gpus_measured or None, rf.gpu_count_on_instance, rf.share_override)
        return Allocation(share, rf.gpu_count_on_instance, server_share=share)
    return Allocation(rf.share_override or 1.0, gpus_measured)
