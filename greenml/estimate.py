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
    from greenml.plan import Plan


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
            gpus = f"{self.gpu_count:,} x {self.gpu_model}"
        else:
            gpus = f"{self.gpu_count:,} GPU{'s' if self.gpu_count != 1 else ''}"
        if self.gpu_power_w is not None:
            gpus += f" at {self.gpu_power_w:g} W"
        if self.instance_type is None:
            return gpus
        if self.gpus_per_instance is None:
            return f"{gpus} on {self.instance_type}"
        if self.instance_share < 1:
            return f"{gpus} on {_share_text(self)} {self.instance_type}"
        return (
            f"{gpus} on {self.instances:,} x {self.instance_type} "
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
    plan: Plan | None = None  # a plan from model size: FLOPs -> hours and GPUs
    hours: float = 1.0  # the wall-clock hours the figures are for

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
            "hours": self.hours,
            "hardware": dataclasses.asdict(self.hardware) if self.hardware else None,
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "factors": [
                {
                    "name": f.name,
                    "value": f.value,
                    "unit": f.unit,
                    "source": f.source,
                    "year": f.year,
                    "licence": f.licence,
                    "note": f.note,
                    **({"as_of": f.as_of} if f.as_of else {}),
                    **({"basis": f.basis} if f.basis else {}),
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
    instance_type: str,
    prices: Sequence[InstancePrice],
    voice: Voice,
    priced: bool,
    location: str | None = None,
) -> list[InstancePrice]:
    """The price table's rows for ``instance_type`` in any region; an instance the table
    does not have is an error unless the user gave its price (``priced``). The error
    suggests the closest names of the location's provider (and region) when the location
    is a cloud region, else of every provider."""
    from greenml.factors.prices import PROVIDERS, closest_names, same_instance
    from greenml.factors.tables import in_tables_dir

    rows = [p for p in prices if same_instance(p, instance_type)]
    if rows or priced:
        return rows
    provider, _, region = (location or "").partition(":")
    provider = provider.strip().lower()
    pool = [p for p in prices if p.provider == provider] if provider in PROVIDERS else []
    hint = closest_names(instance_type, pool or list(prices), region.strip() or None)
    if instance_type.startswith("n1-") and "+" not in instance_type:
        attached = sorted(
            {p.instance_type for p in prices if p.instance_type.startswith(instance_type + "+")},
            key=lambda name: ("+T4:" not in name, name),
        )
        if attached:
            hint = (
                f"an N1 VM is priced with its attached GPUs, e.g. {', '.join(attached[:4])}"
                " (VM + GPU:count)."
            )
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
    hours: float | None = None,
    power_w: float | None = None,
    energy_kwh: float | None = None,
    pue: float | None = None,
    grid_intensity_g_per_kwh: float | None = None,
    instance_type: str | None = None,
    price_usd_per_hour: float | None = None,
    pricing: str = "on-demand",
    flops: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    mfu: float | None = None,
    precision: str = "bf16",
    allow_assumed_location: bool = False,
    tables_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    voice: Voice = PYTHON,
    unpriced: str = "error",
) -> Estimate:
    """One estimate (see the module docstring). ``count=None``: all the instance's GPUs,
    else 1; ``hours=None``: 1 h, or, in a plan from model size (``flops``, or ``params``
    and ``tokens``; :mod:`greenml.plan`), the time the FLOPs take. ``pricing`` picks the
    table's ``"on-demand"`` or ``"spot"`` price. A GPU without an instance at a cloud
    location is priced on that region's cheapest instance carrying it. ``voice`` names the
    inputs in errors the way the user gave them (keywords, or the flags of ``greenml
    estimate``). ``unpriced="reason"`` turns an instance with no price at the location into
    a missing cost with its reason, rather than an error."""
    from greenml import plan as plan_mod
    from greenml.assemble import Allocation, Usage, assemble
    from greenml.factors.prices import check_pricing
    from greenml.factors.tables import tables

    if unpriced not in ("error", "reason"):
        raise ValueError(f"unpriced={unpriced!r}: use 'error' or 'reason'")
    planned = plan_mod.check_inputs(flops=flops, params=params, tokens=tokens, mfu=mfu, voice=voice)
    pricing = check_pricing(pricing, voice.option("pricing").rstrip("="))
    _check_inputs(
        voice,
        count=count,
        hours=1.0 if hours is None else hours,
        power_w=power_w,
        energy_kwh=energy_kwh,
        pue=pue,
        grid_intensity_g_per_kwh=grid_intensity_g_per_kwh,
        price_usd_per_hour=price_usd_per_hour,
    )
    if planned and energy_kwh is not None:
        raise ConfigError(
            f"{voice.given('energy_kwh', energy_kwh)} replaces the power model, but a plan from "
            "model size computes the energy from the GPUs' time: leave one out"
        )
    t = tables(tables_dir, voice=voice)
    t.validate()  # the folder and its files, named in the user's terms, before anything else
    rows: list[InstancePrice] = []
    if instance_type is not None:
        rows = _instance_rows(
            instance_type, t.prices(), voice, price_usd_per_hour is not None, location
        )
        if rows:
            instance_type = rows[0].instance_type  # the table's spelling (Azure: any case)

    plan = None
    if planned:
        plan = _plan(
            gpu=gpu,
            rows=rows,
            count=count,
            hours=hours,
            flops=flops,
            params=params,
            tokens=tokens,
            mfu=mfu,
            precision=precision,
            gpus=t.gpus(),
            voice=voice,
        )
        count, hours = plan.gpu_count, plan.hours
    elif hours is None:
        hours = 1.0

    def factors_for(instance: str | None) -> RunFactors:
        settings = Settings(
            location=location,
            allow_assumed_location=allow_assumed_location,
            grid_intensity_g_per_kwh=grid_intensity_g_per_kwh,
            pue=pue,
            price_usd_per_hour=price_usd_per_hour,
            pricing=pricing,
            instance_type=instance,
            tables_dir=tables_dir,
        )
        return resolve_run_factors(
            settings, environ=environ if environ is not None else {}, voice=voice
        )

    reasons: list[str] = []
    notes: list[str] = []
    if (
        instance_type is None
        and gpu is not None
        and price_usd_per_hour is None
        and energy_kwh is None
    ):
        place = factors_for(None).location
        if place is not None and place.provider is not None and place.region is not None:
            picked, why = _region_instance(
                gpu, count or 1, place.provider, place.region, pricing, t, voice
            )
            if picked is not None:
                instance_type = picked.instance_type
                rows = [picked]
                notes.append(why)
            else:
                reasons.append(why)
    try:
        rf = factors_for(instance_type)
    except ConfigError as e:
        if unpriced == "error" or instance_type is None or price_usd_per_hour is not None:
            raise
        rf = factors_for(None)  # a bad place still raises; an unpriced instance does not
        reasons.append(f"cost: {instance_type} not priced for {location} ({e})")

    row = _pick_row(rows, rf) if rows else None
    hw, energy_factors, hw_notes = _hardware(
        gpu=gpu,
        count=count,
        power_w=power_w,
        energy_kwh=energy_kwh,
        instance_type=instance_type,
        row=row,
        gpus=t.gpus(),
        voice=voice,
    )
    notes += hw_notes
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
    plan_factors = plan.factors if plan is not None else ()
    fp = assemble(
        Usage(duration_s=hours * 3600.0, gpu_j=kwh * J_PER_KWH, flags=rf.flags),
        rf,
        allocation,
        grid=rf.grid,
        location=(rf.location.text or rf.location.zone) if rf.location else None,
        instance_type=instance_type,
        extra_factors=(*plan_factors, *energy_factors),
    )
    return Estimate(fp.location, fp, kwh, tuple(reasons), hw, tuple(notes), plan, hours)


def _plan(
    *,
    gpu: str | None,
    rows: list[InstancePrice],
    count: int | None,
    hours: float | None,
    flops: float | None,
    params: float | None,
    tokens: float | None,
    mfu: float | None,
    precision: str,
    gpus: Sequence[GpuSpec],
    voice: Voice,
) -> Plan:
    """The plan from model size on the GPU named by ``gpu`` or by the instance."""
    from greenml.factors.hardware import (
        PEAK_PRECISIONS,
        find_gpu,
        find_instance_gpu,
        other_board_advice,
        peak_flops_factor,
    )
    from greenml.plan import make_plan

    if precision not in PEAK_PRECISIONS:
        raise ConfigError(
            f"{voice.given('precision', precision)} is invalid: use one of "
            f"{', '.join(PEAK_PRECISIONS)}"
        )
    if gpu is not None:
        board = find_gpu(gpu, table=gpus, voice=voice)
    elif rows:
        board = find_instance_gpu(rows[0].gpu_model, table=gpus)
        if board is None:
            raise ConfigError(
                f"{voice.given('instance_type', rows[0].instance_type)} carries "
                f"{rows[0].gpu_model}, which greenml's GPU table has no peak FLOP/s for: "
                f"give {voice.set('gpu', '<model>')} of a board it has, or "
                f"{other_board_advice(voice)}"
            )
    else:
        raise ConfigError(
            f"a plan from model size needs the GPU, for its peak FLOP/s: give "
            f"{voice.set('gpu', '<model>')} or {voice.set('instance_type', '<type>')}"
        )
    peak = peak_flops_factor(board, precision)
    if peak is None:
        with_peak = [b.model for b in gpus if peak_flops_factor(b, precision) is not None]
        raise ConfigError(
            f"{voice.given('gpu', gpu or board.model)}: the GPU table gives no {precision} "
            f"peak for {board.model}, so its time cannot be planned; boards with one: "
            f"{', '.join(with_peak)} (or add {precision}_dense_tflops to your gpus.csv)"
        )
    if count is None and hours is None and rows:
        count = rows[0].gpu_count  # the whole instance's GPUs
    if getattr(board, PEAK_PRECISIONS[precision]) is None:
        precision = "fp16"  # peak_flops_factor's stand-in for BF16 (its note says so)
    return make_plan(
        flops=flops,
        params=params,
        tokens=tokens,
        mfu=mfu,
        peak=peak,
        gpu_model=board.model,
        precision=precision,
        count=count,
        hours=hours,
        voice=voice,
    )


def _region_instance(
    gpu: str, count: int, provider: str, region: str, pricing: str, t: Any, voice: Voice
) -> tuple[InstancePrice | None, str]:
    """The cheapest instance of ``provider`` in ``region`` carrying ``count`` x ``gpu``, and
    a note saying so; or None and the reason (with the regions where it is sold)."""
    from greenml.factors.hardware import gpu_family
    from greenml.options import cheapest, named

    board, family_only, test = named(gpu, t.gpus(), voice)
    found = cheapest(t.prices(), test, count, pricing=pricing, providers=[provider])
    what = f"{board.model}" if not family_only else gpu_family(board.model).upper()
    if (provider, region) in found:
        row, n = found[(provider, region)]
        return row, (
            f"priced as {n:,} x {row.instance_type} ({row.gpu_count} x {row.gpu_model} each), "
            f"the {provider} instance in {region} that carries {count:,} x {what} for the "
            f"lowest {pricing} price; give {voice.set('instance_type', '<type>')} for another"
        )
    elsewhere = sorted(region for p, region in found if p == provider)
    sold = (
        f"{provider} sells it ({pricing}) in {', '.join(elsewhere)}"
        if elsewhere
        else f"no {provider} instance in the price table carries it ({pricing})"
    )
    return None, f"cost: no {provider} instance in {region} carries {what}; {sold}"


def compare(
    base: Estimate,
    locations: Sequence[str],
    *,
    gpu: str | None = None,
    count: int | None = None,
    hours: float | None = None,
    power_w: float | None = None,
    energy_kwh: float | None = None,
    instance_type: str | None = None,
    price_usd_per_hour: float | None = None,
    pricing: str = "on-demand",
    allow_assumed_location: bool = False,
    tables_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    voice: Voice = PYTHON,
) -> list[Estimate]:
    """The same job in other locations: the same GPUs (``base``'s), for ``base``'s hours,
    each place's own grid intensity and PUE. In a cloud region that does not sell the
    instance (another provider's, or not offered there), the job is priced on the region's
    cheapest instance carrying the same GPUs; where none does, the cost is None, with the
    reason. ``locations`` may name a provider (``aws``) or ``all``: every region of it (of
    all) where the GPUs are sold."""
    hw = base.hardware
    if count is None and hw is not None:
        count = hw.gpu_count
    hours = base.hours
    board = gpu if gpu is not None else (hw.gpu_model if hw is not None else None)
    places = expand_places(
        locations, board, count or 1, pricing, tables_dir=tables_dir, voice=voice
    )
    if board is not None and not _known_board(board, tables_dir, voice):
        board = None  # a board the GPU table lacks: no equivalent instance can be found
    out = []
    for loc in places:
        own = instance_type
        if (
            own is not None
            and board is not None
            and price_usd_per_hour is None
            and not _sells(own, loc, pricing, tables_dir, voice)
        ):
            own = None  # the same GPUs on this region's own instance
        out.append(
            estimate(
                location=loc,
                gpu=board if own is None and price_usd_per_hour is None else gpu,
                count=count,
                hours=hours,
                power_w=power_w,
                energy_kwh=energy_kwh,
                instance_type=own,
                price_usd_per_hour=price_usd_per_hour,
                pricing=pricing,
                allow_assumed_location=allow_assumed_location,
                tables_dir=tables_dir,
                environ=environ,
                voice=voice,
                unpriced="reason",
            )
        )
    return out


def _known_board(name: str, tables_dir: str | None, voice: Voice) -> bool:
    from greenml.factors.hardware import find_gpu
    from greenml.factors.tables import tables

    try:
        find_gpu(name, table=tables(tables_dir, voice=voice).gpus(), voice=voice)
    except ConfigError:
        return False
    return True


def _sells(
    instance_type: str, location: str, pricing: str, tables_dir: str | None, voice: Voice
) -> bool:
    """Whether the price table prices ``instance_type`` at cloud ``location``."""
    from greenml.factors.tables import tables

    provider, _, region = location.partition(":")
    provider = provider.strip().lower()
    name = instance_type.lower()
    return any(
        p.provider == provider
        and p.region == region.strip()
        and p.pricing == pricing
        and p.instance_type.lower() == name
        for p in tables(tables_dir, voice=voice).prices()
    )


def expand_places(
    locations: Sequence[str],
    gpu: str | None,
    count: int,
    pricing: str,
    *,
    tables_dir: str | None = None,
    voice: Voice = PYTHON,
) -> list[str]:
    """``locations`` with ``all`` and bare provider names (``aws``) replaced by every
    region of theirs where ``count`` x ``gpu`` are sold (each once, in order)."""
    from greenml.factors.prices import PROVIDERS

    out: list[str] = []
    for loc in locations:
        key = loc.strip().lower()
        if key == "all" or key in PROVIDERS:
            if gpu is None:
                raise ConfigError(
                    f"{voice.given('location', loc)}: every region where the GPUs are sold "
                    f"needs the GPU: give {voice.set('gpu', '<model>')} or "
                    f"{voice.set('instance_type', '<type>')}"
                )
            providers = PROVIDERS if key == "all" else (key,)
            regions = sold_in(gpu, count, pricing, providers, tables_dir=tables_dir, voice=voice)
            if not regions:
                raise ConfigError(
                    f"{voice.given('location', loc)}: no instance in the price table carries "
                    f"{count} x {gpu} with a {pricing} price"
                )
            out += [r for r in regions if r not in out]
        elif loc not in out:
            out.append(loc)
    return out


def sold_in(
    gpu: str,
    count: int,
    pricing: str,
    providers: Sequence[str],
    *,
    tables_dir: str | None = None,
    voice: Voice = PYTHON,
) -> list[str]:
    """``provider:region`` of every region where an instance carries ``gpu``."""
    from greenml.factors.tables import tables
    from greenml.options import cheapest, named

    t = tables(tables_dir, voice=voice)
    _, _, test = named(gpu, t.gpus(), voice)
    found = cheapest(t.prices(), test, count, pricing=pricing, providers=providers)
    return [f"{p}:{r}" for p, r in sorted(found)]
