"""Footprint: plain arithmetic on frozen dataclasses.

IT energy (GPU + CPU + RAM, as measured) x PUE = facility energy; facility energy x grid
intensity = CO2e; instance price x hours (or electricity price x kWh) = cost. Every
factor used is carried in :attr:`Footprint.factors` with its source, year and licence, so
each printed number traces back to where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any

from greenml.factors.provenance import Factor

J_PER_KWH = 3.6e6

__all__ = ["DeviceEnergy", "Factor", "Factors", "Footprint", "Work", "compute"]


@dataclass(frozen=True)
class Work:
    """The work a run did, as its training loop counted it: optimizer steps, and the
    samples, tokens and floating-point operations processed where they are known
    (``None``: never counted, as opposed to zero)."""

    steps: int = 0
    samples: float | None = None
    tokens: float | None = None
    flops: float | None = None

    def plus(self, other: Work) -> Work:
        """This work and ``other`` together (a resumed job's parts)."""

        def add(a: float | None, b: float | None) -> float | None:
            return None if a is None and b is None else (a or 0.0) + (b or 0.0)

        return Work(
            self.steps + other.steps,
            add(self.samples, other.samples),
            add(self.tokens, other.tokens),
            add(self.flops, other.flops),
        )


def _per(figure: float | None, amount: float | None, scale: float) -> float | None:
    """``figure`` per ``amount`` times ``scale``; None where either is unknown or the
    amount is zero."""
    if figure is None or not amount:
        return None
    return figure * scale / amount


@dataclass(frozen=True)
class DeviceEnergy:
    """The energy of one measured device and how it was obtained."""

    key: str
    kind: str  # gpu | cpu | ram
    name: str
    method: str  # counter | sampled | estimated
    energy_kwh: float  # IT energy attributed to this job (after any MIG share)
    index: int | None = None
    uuid: str | None = None
    power_limit_w: float | None = None
    share: float = 1.0
    simulated: bool = False
    read_errors: int = 0
    lost: bool = False
    extrapolated_s: float = 0.0  # seconds filled by extrapolation rather than readings
    implausible_readings: int = 0  # absurd, negative or NaN readings dropped
    bridged_s: float = 0.0  # seconds of a counter fault (reset, jump, stuck) bridged with power
    details: tuple[tuple[str, str], ...] = ()
    #: Where exactness is impossible (a GPU without an energy counter), the range the
    #: energy lies in; None where the method is exact to its documented bound (counters)
    #: or is a model flagged ``estimated``.
    energy_low_kwh: float | None = None
    energy_high_kwh: float | None = None


@dataclass(frozen=True, repr=False)
class Footprint:
    """What a tracked run (or one of its phases) used and emitted. Units in the names.

    ``gpu/cpu/ram_energy_kwh`` are IT energy; ``energy_kwh`` is facility energy (IT x
    PUE). ``co2e_kg`` is location-based, ``co2e_market_kg`` market-based. A figure whose
    factor is not known is ``None``, never a guess; ``flags`` says why.
    """

    duration_s: float
    energy_kwh: float
    gpu_energy_kwh: float
    cpu_energy_kwh: float
    ram_energy_kwh: float
    pue: float | None = None
    grid_intensity_g_per_kwh: float | None = None
    co2e_kg: float | None = None
    co2e_market_kg: float | None = None
    cost_usd: float | None = None
    phases: Mapping[str, Footprint] = field(default_factory=lambda: MappingProxyType({}))
    devices: tuple[DeviceEnergy, ...] = ()
    measurement: str = "estimated"
    flags: tuple[str, ...] = ()
    factors: tuple[Factor, ...] = ()
    location: str | None = None
    instance_type: str | None = None
    scope: str | None = None  # scope2 (own hardware) | scope3-cat1 (cloud), GHG Protocol
    #: SCI view (ISO/IEC 21031): the hardware's embodied emissions amortised over the
    #: reserved time. Never part of co2e_kg / co2e_market_kg (the GHG-inventory figures).
    embodied_co2e_kg: float | None = None
    final: bool = True
    #: The work counted (``run.step``, a framework callback): steps, samples, tokens and
    #: FLOPs; ``None`` where never counted. Whole-run figures: phases carry none.
    steps: int | None = None
    samples: float | None = None
    tokens: float | None = None
    flops: float | None = None
    #: Model FLOPs utilisation: ``flops`` / (training time x GPUs x the GPUs' peak dense
    #: throughput, the ``gpu_peak_flops`` factor); None where either is unknown.
    mfu: float | None = None

    # -- intensity per unit of work (facility energy, location-based CO2e) ---------------

    @property
    def energy_wh_per_1k_samples(self) -> float | None:
        return _per(self.energy_kwh, self.samples, 1e6)

    @property
    def co2e_g_per_1k_samples(self) -> float | None:
        return _per(self.co2e_kg, self.samples, 1e6)

    @property
    def energy_wh_per_1m_tokens(self) -> float | None:
        return _per(self.energy_kwh, self.tokens, 1e9)

    @property
    def co2e_g_per_1m_tokens(self) -> float | None:
        return _per(self.co2e_kg, self.tokens, 1e9)

    @property
    def energy_wh_per_pflop(self) -> float | None:
        return _per(self.energy_kwh, self.flops, 1e18)

    @property
    def work(self) -> Work:
        return Work(self.steps or 0, self.samples, self.tokens, self.flops)

    @property
    def sci_co2e_kg(self) -> float | None:
        """SCI per run: location-based operational CO2e + embodied (ISO/IEC 21031:2024)."""
        if self.co2e_kg is None or self.embodied_co2e_kg is None:
            return None
        return self.co2e_kg + self.embodied_co2e_kg

    @property
    def it_energy_kwh(self) -> float:
        return self.gpu_energy_kwh + self.cpu_energy_kwh + self.ram_energy_kwh

    def __repr__(self) -> str:
        """One line with the headline figures; the parts (phases, devices, factors) by
        name or count. ``to_dict()`` has everything."""

        def num(x: float | None) -> str:
            return "None" if x is None else f"{x:.6g}"

        parts = [
            f"energy_kwh={num(self.energy_kwh)}",
            f"co2e_kg={num(self.co2e_kg)}",
            f"co2e_market_kg={num(self.co2e_market_kg)}",
            f"cost_usd={num(self.cost_usd)}",
            f"duration_s={num(self.duration_s)}",
            f"location={self.location!r}",
            f"measurement={self.measurement!r}",
        ]
        if self.instance_type is not None:
            parts.append(f"instance_type={self.instance_type!r}")
        if self.phases:
            parts.append(f"phases={list(self.phases)!r}")
        parts.append(f"devices={[d.key for d in self.devices]!r}")
        parts.append(f"factors={[f.name for f in self.factors]!r}")
        if self.flags:
            parts.append(f"flags={list(self.flags)!r}")
        if not self.final:
            parts.append("final=False")
        return f"Footprint({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (phases nested, factors and devices as lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "phases":
                value = {name: fp.to_dict() for name, fp in value.items()}
            elif f.name in ("devices", "factors"):
                value = [asdict(v) for v in value]
            elif f.name == "flags":
                value = list(value)
            out[f.name] = value
        for name in INTENSITIES:  # derived, for readers of footprint.json
            out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Footprint:
        """The footprint that :meth:`to_dict` gave ``data``, read back from JSON or not
        (phases as Footprints, devices as :class:`DeviceEnergy`, factors as
        :class:`Factor`). ``data`` may also be a whole ``greenml/footprint.json``
        (:func:`greenml.schema.footprint_document`): its greenml version and run id are
        not part of the footprint and are left out, as is any key that is no field here
        (a document from a later greenml still reads). A field a document from an earlier
        greenml lacks takes its default; a missing figure is a ``ValueError``."""

        def known(kind: type, d: Mapping[str, Any]) -> dict[str, Any]:
            names = {f.name for f in fields(kind)}
            return {k: v for k, v in d.items() if k in names}

        try:
            kw = known(cls, data)
            kw["phases"] = MappingProxyType(
                {str(n): cls.from_dict(p) for n, p in dict(kw.get("phases") or {}).items()}
            )
            devices = []
            for d in kw.get("devices") or ():
                dev = known(DeviceEnergy, d)
                dev["details"] = tuple(tuple(pair) for pair in dev.get("details") or ())
                devices.append(DeviceEnergy(**dev))
            kw["devices"] = tuple(devices)
            kw["factors"] = tuple(Factor(**known(Factor, f)) for f in kw.get("factors") or ())
            kw["flags"] = tuple(kw.get("flags") or ())
            return cls(**kw)
        except (TypeError, AttributeError) as e:
            raise ValueError(f"not a greenml footprint ({e})") from e


#: The per-unit-of-work figures derived from a footprint (properties of Footprint).
INTENSITIES = (
    "energy_wh_per_1k_samples",
    "co2e_g_per_1k_samples",
    "energy_wh_per_1m_tokens",
    "co2e_g_per_1m_tokens",
    "energy_wh_per_pflop",
)


@dataclass(frozen=True)
class Factors:
    """The factors a footprint is computed with; ``None`` where unknown."""

    pue: Factor | None = None
    grid_intensity: Factor | None = None  # g/kWh, location-based
    market_intensity: Factor | None = None  # g/kWh, market-based
    price_per_hour: Factor | None = None  # USD/h for the instance
    price_per_kwh: Factor | None = None  # USD/kWh of facility energy
    price_share: float = 1.0  # share of the instance the job used

    def used(self) -> tuple[Factor, ...]:
        return tuple(
            f
            for f in (
                self.pue,
                self.grid_intensity,
                self.market_intensity,
                self.price_per_hour,
                self.price_per_kwh,
            )
            if f is not None
        )


def compute(
    *,
    duration_s: float,
    gpu_j: float,
    cpu_j: float,
    ram_j: float,
    factors: Factors,
    phases: Mapping[str, Footprint] | None = None,
    devices: tuple[DeviceEnergy, ...] = (),
    measurement: str = "estimated",
    flags: tuple[str, ...] = (),
    location: str | None = None,
    instance_type: str | None = None,
    scope: str | None = None,
    final: bool = True,
    embodied_co2e_kg: float | None = None,
    factors_before: tuple[Factor, ...] = (),
    factors_after: tuple[Factor, ...] = (),
    work: Work | None = None,
    peak_flops: Factor | None = None,
    gpus: int = 0,
    work_duration_s: float | None = None,
) -> Footprint:
    """Turn measured joules into a :class:`Footprint` with the given factors (listed
    after ``factors_before`` and before ``factors_after``, which the figures do not
    use: an estimate's power model, the embodied-carbon factors).

    ``work`` (counted by the training loop) gives the per-unit figures; with the GPUs'
    ``peak_flops`` (per GPU, FLOP/s), ``gpus`` and the time the work took
    (``work_duration_s``: the training phase), the model FLOPs utilisation."""
    gpu_kwh, cpu_kwh, ram_kwh = gpu_j / J_PER_KWH, cpu_j / J_PER_KWH, ram_j / J_PER_KWH
    pue = factors.pue.value if factors.pue is not None else None
    energy_kwh = (gpu_kwh + cpu_kwh + ram_kwh) * (pue if pue is not None else 1.0)
    flag_list = list(flags)
    if pue is None:
        flag_list.append("pue_not_applied")

    intensity = factors.grid_intensity.value if factors.grid_intensity is not None else None
    co2e = co2e_market = None
    if intensity is not None:
        co2e = energy_kwh * intensity / 1000.0
        market = factors.market_intensity.value if factors.market_intensity else intensity
        co2e_market = energy_kwh * market / 1000.0
    else:
        flag_list.append("no_grid_intensity")

    cost = None
    if factors.price_per_hour is not None:
        cost = factors.price_per_hour.value * duration_s / 3600.0 * factors.price_share
    elif factors.price_per_kwh is not None:
        cost = factors.price_per_kwh.value * energy_kwh
    else:
        flag_list.append("no_price")

    mfu = None
    counted: dict[str, Any] = {}
    if work is not None:
        counted = {
            "steps": work.steps,
            "samples": work.samples,
            "tokens": work.tokens,
            "flops": work.flops,
        }
        seconds = duration_s if work_duration_s is None else work_duration_s
        if work.flops and peak_flops is not None and gpus > 0 and seconds > 0:
            mfu = work.flops / (seconds * gpus * peak_flops.value)
    used = factors.used()
    if mfu is not None and peak_flops is not None:
        used = (*used, peak_flops)
    return Footprint(
        duration_s=duration_s,
        energy_kwh=energy_kwh,
        gpu_energy_kwh=gpu_kwh,
        cpu_energy_kwh=cpu_kwh,
        ram_energy_kwh=ram_kwh,
        pue=pue,
        grid_intensity_g_per_kwh=intensity,
        co2e_kg=co2e,
        co2e_market_kg=co2e_market,
        cost_usd=cost,
        phases=MappingProxyType(dict(phases or {})),
        devices=devices,
        measurement=measurement,
        flags=tuple(dict.fromkeys(flag_list)),
        factors=(*factors_before, *used, *factors_after),
        location=location,
        instance_type=instance_type,
        scope=scope,
        final=final,
        embodied_co2e_kg=embodied_co2e_kg,
        mfu=mfu,
        **counted,
    )
