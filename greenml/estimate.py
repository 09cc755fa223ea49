"""Estimate a planned (or published) training run: kWh, CO2e and dollars, with factors.

The same arithmetic as a measured run (:func:`greenml.footprint.compute`), fed by a power
model instead of meters: IT energy = GPUs x average power per GPU x hours, where the power
is the user's ``power_w`` or the board power (TDP) of the GPU model, an upper bound for a
busy GPU. ``energy_kwh`` skips the power model, so that a published calculation can be
reproduced with the paper's own energy, PUE and grid factor.

Instances. With ``instance_type``, the price table says which GPUs the instance carries
(model and count, the same in every region), and:

- ``gpu`` defaults to the instance's board and ``count`` to all its GPUs: renting the
  instance costs the whole machine. A ``gpu`` of another family than the instance's is an
  error; a bare family name (``A100``) means the instance's board of that family; another
  board of the same family (``A100-SXM4-40GB`` for an 80 GB instance) is a warning, and the
  named board's power is used;
- more GPUs than one instance carries take ``ceil(count / GPUs per instance)`` whole
  instances: the cost is instances x hours x price and the embodied carbon that of as many
  servers; the energy is that of the ``count`` GPUs used;
- fewer GPUs than the instance carries are charged their share, ``count / GPUs per
  instance``, of its price and embodied carbon (the convention of measured runs); the
  estimate says so in its ``notes``.

``price_usd_per_hour`` replaces the table's price of one instance (without an instance, it
is the hourly price of the job's hardware). Without an instance, embodied carbon is that of
one server holding the ``count`` GPUs.

The figures keep full float precision; ``greenml estimate --format json`` rounds them to
12 significant digits for display (no input has more than 6).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from greenml.config import PYTHON, Settings, Voice
from greenml.errors import ConfigError, warn
from greenml.factors.provenance import Factor
from greenml.factors.resolve import RunFactors, resolve_run_factors
from greenml.footprint import J_PER_KWH, Footprint

if TYPE_CHECKING:
    from greenml.factors.hardware import GpuSpec
    from greenml.factors.prices import InstancePrice


@dataclass(frozen=True)
class Hardware:
    """What an estimate's energy, cost and embodied carbon are for."""

    gpu_count: int
    gpu_model: str | None  # the board whose power is used, else the instance's GPU name
    gpu_power_w: float | None  # average draw per GPU; None when energy_kwh replaces the model
    instance_type: str | None = None
    gpus_per_instance: int | None = None  # None: not in the price table
    instances: int = 1  # instances rented (whole, when the GPUs fill more than one)
    instance_share: float = 1.0  # of one instance, when the GPUs are fewer than it carries

    @property
    def instances_charged(self) -> float:
        """Instances paid for: whole instances, or the share of one."""
        return self.instances * self.instance_share

    def describe(self) -> str:
        """``16 x A100 SXM4 40GB at 400 W on 2 x p4d.24xlarge (8 GPUs each)``."""
        if self.gpu_model is not None:
            gpus = f"{self.gpu_count} x {self.gpu_model}"
        else:
            gpus = f"{self.gpu_count} GPU{'s' if self.gpu_count != 1 else ''}"
        if self.gpu_power_w is not None:
            gpus += f" at {self.gpu_power_w:g} W"
        if self.instance_type is None:
            return gpus
        if self.gpus_per_instance is None:
            return f"{gpus} on {self.instance_type}"
        if self.instance_share < 1:
            return f"{gpus} on {_share_text(self)} {self.instance_type}"
        return (
            f"{gpus} on {self.instances} x {self.instance_type} "
            f"({self.gpus_per_instance} GPUs each)"
        )


def _share_text(hw: Hardware) -> str:
    return f"{hw.gpu_count}/{hw.gpus_per_instance} of one"


@dataclass(frozen=True)
class Estimate:
    location: str | None
    footprint: Footprint
    it_energy_kwh: float
    reasons: tuple[str, ...]  # why a figure is missing
    hardware: Hardware | None = None
    notes: tuple[str, ...] = ()  # choices the figures rest on (the share of an instance...)

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
            "hardware": dataclasses.asdict(self.hardware) if self.hardware else None,
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
            "notes": list(self.notes),
        }


# --- inputs ---------------------------------------------------------------------------


def _check_number(
    voice: Voice, key: str, value: float | None, rule: str, *, minimum: float, strict: bool
) -> None:
    """``value`` (if given) is a finite number above ``minimum`` (``strict``) or at least it."""
    if value is None:
        return
    what = voice.given(key, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} is not a number; give {rule}")
    if not math.isfinite(value):
        raise ConfigError(f"{what} is invalid: give a finite number, {rule}")
    if value < minimum or (strict and value == minimum):
        raise ConfigError(f"{what} is invalid: give {rule}")


def _check_inputs(
    voice: Voice,
    *,
    count: int | None,
    hours: float,
    power_w: float | None,
    energy_kwh: float | None,
    pue: float | None,
    grid_intensity_g_per_kwh: float | None,
    price_usd_per_hour: float | None,
) -> None:
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ConfigError(
            f"{voice.given('count', count)} is invalid: give a whole number of GPUs >= 1"
        )
    _check_number(voice, "hours", hours, "wall-clock hours > 0", minimum=0, strict=True)
    _check_number(
        voice, "power_w", power_w, "the average draw per GPU in W, > 0", minimum=0, strict=True
    )
    _check_number(
        voice, "energy_kwh", energy_kwh, "IT energy in kWh, >= 0", minimum=0, strict=False
    )
    _check_number(
        voice,
        "pue",
        pue,
        "a PUE >= 1.0 (facility energy / IT energy; 1.0 when the facility's energy is "
        "already metered)",
        minimum=1.0,
        strict=False,
    )
    _check_number(
        voice,
        "grid_intensity_g_per_kwh",
        grid_intensity_g_per_kwh,
        "gCO2e per kWh, >= 0",
        minimum=0,
        strict=False,
    )
    _check_number(
        voice,
        "price_usd_per_hour",
        price_usd_per_hour,
        "USD per hour, >= 0",
        minimum=0,
        strict=False,
    )


# --- the instance and its GPUs ------------------------------------------------------------


def _instance_rows(
    instance_type: str, prices: Sequence[InstancePrice], voice: Voice, priced: bool
) -> list[InstancePrice]:
    """The price table's rows for ``instance_type`` in any region; an instance the table
    does not have is an error unless the user gave its price (``priced``)."""
    rows = [p for p in prices if p.instance_type == instance_type]
    if rows or priced:
        return rows
    import difflib

    from greenml.factors.tables import in_tables_dir

    known = sorted({p.instance_type for p in prices})
    close = difflib.get_close_matches(instance_type, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"it has {', '.join(known)}."
    raise ConfigError(
        f"{voice.given('instance_type', instance_type)} is not in the price table: {hint} "
        f"For another instance give its price with "
        f"{voice.set('price_usd_per_hour', '<USD per hour>')} and its GPUs with "
        f"{voice.set('count', '<GPUs>')}, or add it to "
        f"{in_tables_dir('instance_prices.csv', voice)}"
    )


def _pick_row(rows: list[InstancePrice], rf: RunFactors) -> InstancePrice:
    """The row of the run's provider and region if there is one, else of its provider, else
    any (an instance's GPUs are the same in every region)."""
    loc = rf.location
    if loc is None:
        return rows[0]
    return min(rows, key=lambda p: (p.provider != loc.provider, p.region != loc.region))


def _hardware(
    *,
    gpu: str | None,
    count: int | None,
    power_w: float | None,
    energy_kwh: float | None,
    instance_type: str | None,
    row: InstancePrice | None,
    gpus: Sequence[GpuSpec],
    voice: Voice,
) -> tuple[Hardware, list[Factor], list[str]]:
    """The GPUs modelled, the factor of their power, and notes on the choices made."""
    from greenml.factors.hardware import (
        find_gpu,
        find_instance_gpu,
        gpu_family,
        gpu_power_factor,
        normalise_name,
        other_board_advice,
    )

    notes: list[str] = []
    per = row.gpu_count if row is not None else None
    inst_board = find_instance_gpu(row.gpu_model, table=gpus) if row is not None else None
    carries = f"{instance_type} carries {per} x {row.gpu_model}" if row is not None else ""
    board = None
    if gpu is not None:
        board = find_gpu(gpu, table=gpus, voice=voice)
        if row is not None and gpu_family(board.model) != gpu_family(row.gpu_model):
            raise ConfigError(
                f"{voice.given('gpu', gpu)} is the {board.model} board, but "
                f"{voice.given('instance_type', instance_type)} carries {per} x "
                f"{row.gpu_model}: leave out {voice.option('gpu')} to use the instance's "
                f"GPUs, or give {voice.set('power_w', '<W per GPU>')} to model another draw"
            )
        if inst_board is not None and normalise_name(gpu) == gpu_family(inst_board.model):
            board = inst_board  # a bare family name ("A100"): the instance's board of it
        elif inst_board is not None and inst_board != board:
            warn(
                f"{voice.given('gpu', gpu)} is the {board.model} board ({board.tdp_w:g} W), but "
                f"{carries} ({inst_board.model}, {inst_board.tdp_w:g} W): the estimate uses "
                f"{board.model}'s power; leave out {voice.option('gpu')} to use the "
                "instance's board"
            )
    elif row is not None:
        board = inst_board
        if board is None and power_w is None and energy_kwh is None:
            raise ConfigError(
                f"{voice.given('instance_type', instance_type)} carries {per} x "
                f"{row.gpu_model}, a board greenml's GPU table has no power figure for: "
                f"{other_board_advice(voice)}"
            )
    if count is None:
        count = per or 1
        if row is None and instance_type is not None:
            notes.append(
                f"{instance_type} is not in the price table, so its GPUs are unknown: "
                f"1 GPU is modelled (give {voice.set('count', '<GPUs>')})"
            )

    if energy_kwh is not None:
        power: Factor | None = None
        factors = [
            Factor("energy", energy_kwh, "kWh", source="user-supplied", note="power model skipped")
        ]
    elif power_w is not None:
        power = Factor("gpu_power", power_w, "W", source="user-supplied", note="average per GPU")
        factors = [power]
    elif board is not None:
        power = gpu_power_factor(board)
        factors = [power]
    else:
        raise ConfigError(
            f"nothing to estimate the energy from: give {voice.set('gpu', '<model>')} (its "
            f"board power is used), {voice.set('power_w', '<W per GPU>')}, "
            f"{voice.set('energy_kwh', '<kWh>')} or {voice.set('instance_type', '<type>')} "
            "(its GPUs)"
        )

    instances, share = 1, 1.0
    if per is not None:
        if count >= per:
            instances = -(-count // per)
            if count % per:
                notes.append(
                    f"{count} GPUs take {instances} x {instance_type} ({instances * per} GPUs): "
                    f"whole instances are charged; the energy is that of the {count} GPUs used"
                )
        else:
            share = count / per
            notes.append(
                f"cost and embodied carbon: {count}/{per} of one {instance_type} is charged "
                f"(the job's share of its GPUs); give {voice.set('count', str(per))} to charge "
                "the whole machine"
            )
    if board is not None:
        model: str | None = board.model
    else:
        model = row.gpu_model if row is not None else None
    hw = Hardware(
        gpu_count=count,
        gpu_model=model,
        gpu_power_w=power.value if power is not None else None,
        instance_type=instance_type,
        gpus_per_instance=per,
        instances=instances,
        instance_share=share,
    )
    return hw, factors, notes


# --- the estimate -------------------------------------------------------------------------


def estimate(
    *,
    location: str | None,
    gpu: str | None = None,
    count: int | None = None,
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
    voice: Voice = PYTHON,
    unpriced: str = "error",
) -> Estimate:
    """One estimate (see the module docstring). ``count=None``: all the instance's GPUs,
    else 1. ``voice`` names the inputs in errors the way the user gave them (keywords, or
    the flags of ``greenml estimate``). ``unpriced="reason"`` turns an instance with no
    price at the location into a missing cost with its reason, rather than an error."""
    from greenml.assemble import Allocation, Usage, assemble
    from greenml.factors.tables import tables

    if unpriced not in ("error", "reason"):
        raise ValueError(f"unpriced={unpriced!r}: use 'error' or 'reason'")
    _check_inputs(
        voice,
        count=count,
        hours=hours,
        power_w=power_w,
        energy_kwh=energy_kwh,
        pue=pue,
        grid_intensity_g_per_kwh=grid_intensity_g_per_kwh,
        price_usd_per_hour=price_usd_per_hour,
    )
    t = tables(tables_dir, voice=voice)
    t.validate()  # the folder and its files, named in the user's terms, before anything else
    rows: list[InstancePrice] = []
    if instance_type is not None:
        rows = _instance_rows(instance_type, t.prices(), voice, price_usd_per_hour is not None)

    def factors_for(instance: str | None) -> RunFactors:
        settings = Settings(
            location=location,
            allow_assumed_location=allow_assumed_location,
            grid_intensity_g_per_kwh=grid_intensity_g_per_kwh,
            pue=pue,
            price_usd_per_hour=price_usd_per_hour,
            instance_type=instance,
            tables_dir=tables_dir,
        )
        return resolve_run_factors(
            settings, environ=environ if environ is not None else {}, voice=voice
        )

    reasons: list[str] = []
    try:
        rf = factors_for(instance_type)
    except ConfigError as e:
        if unpriced == "error" or instance_type is None or price_usd_per_hour is not None:
            raise
        rf = factors_for(None)  # a bad place still raises; an unpriced instance does not
        reasons.append(f"cost: {instance_type} not priced for {location} ({e})")

    row = _pick_row(rows, rf) if rows else None
    hw, energy_factors, notes = _hardware(
        gpu=gpu,
        count=count,
        power_w=power_w,
        energy_kwh=energy_kwh,
        instance_type=instance_type,
        row=row,
        gpus=t.gpus(),
        voice=voice,
    )
    if energy_kwh is not None:
        kwh = energy_kwh
    else:
        assert hw.gpu_power_w is not None
        kwh = hw.gpu_power_w * hw.gpu_count * hours / 1000.0
    if rf.price_per_hour is None and not reasons:
        reasons.append(
            f"cost: no {voice.option('instance_type').rstrip('=')} or "
            f"{voice.option('price_usd_per_hour').rstrip('=')} given"
        )
    if hw.gpus_per_instance is not None:
        allocation = Allocation(
            hw.instances_charged, hw.gpus_per_instance, hw.instances, hw.instance_share
        )
    elif energy_kwh is None:
        allocation = Allocation(hw.instances_charged, hw.gpu_count)
    else:
        allocation = Allocation(hw.instances_charged)  # the hardware, so embodied, unknown
        reasons.append(
            f"embodied: the hardware is unknown when {voice.option('energy_kwh').rstrip('=')} "
            f"replaces the power model (give {voice.option('instance_type').rstrip('=')} "
            "for it)"
        )
    fp = assemble(
        Usage(duration_s=hours * 3600.0, gpu_j=kwh * J_PER_KWH, flags=rf.flags),
        rf,
        allocation,
        grid=rf.grid,
        location=(rf.location.text or rf.location.zone) if rf.location else None,
        instance_type=instance_type,
        extra_factors=tuple(energy_factors),
    )
    return Estimate(fp.location, fp, kwh, tuple(reasons), hw, tuple(notes))


def compare(
    base: Estimate,
    locations: Sequence[str],
    *,
    gpu: str | None = None,
    count: int | None = None,
    hours: float = 1.0,
    power_w: float | None = None,
    energy_kwh: float | None = None,
    instance_type: str | None = None,
    price_usd_per_hour: float | None = None,
    allow_assumed_location: bool = False,
    tables_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    voice: Voice = PYTHON,
) -> list[Estimate]:
    """The same job in other locations: the same hardware (``base``'s GPUs), each place's
    own grid intensity and PUE. The instance is priced in each region where it has a
    price; elsewhere the cost is None, with the reason."""
    if count is None and base.hardware is not None:
        count = base.hardware.gpu_count
    return [
        estimate(
            location=loc,
            gpu=gpu,
            count=count,
            hours=hours,
            power_w=power_w,
            energy_kwh=energy_kwh,
            instance_type=instance_type,
            price_usd_per_hour=price_usd_per_hour,
            allow_assumed_location=allow_assumed_location,
            tables_dir=tables_dir,
            environ=environ,
            voice=voice,
            unpriced="reason",
        )
        for loc in locations
    ]
