"""Where a job's GPUs are sold: in each provider and region, the cheapest way to rent them.

For ``count`` GPUs of one board (or of boards alike in power and peak: ``A100`` takes the
40 GB and 80 GB SXM4 boards; see :func:`matches`), each
(provider, region) of the price table offers instances carrying that board. Renting is by
whole instances, so ``n`` instances of a type with ``g`` GPUs each carry ``count`` GPUs when
``n = ceil(count / g)``; the option of a region is, among the instance types needing the
fewest instances (the GPUs of a multi-GPU job in as few machines as possible), the one with
the lowest ``n x price``. Each option's CO2e uses the region's own grid intensity and its provider's
PUE, so the cheapest and the lowest-CO2e place are named among the regions where the GPU is
actually sold (never a region that has no such instance).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from greenml.config import PYTHON, Voice
from greenml.errors import ConfigError

if TYPE_CHECKING:
    from greenml.factors.hardware import GpuSpec
    from greenml.factors.prices import InstancePrice
    from greenml.factors.provenance import Factor


@dataclass(frozen=True)
class Option:
    """One region's cheapest way to rent the job's GPUs, and its footprint."""

    provider: str
    region: str
    instance: InstancePrice
    instances: int
    hours: float
    it_energy_kwh: float
    pue: float | None = None
    grid_intensity_g_per_kwh: float | None = None
    reasons: tuple[str, ...] = ()
    factors: tuple[Factor, ...] = field(default=(), compare=False)

    @property
    def location(self) -> str:
        return f"{self.provider}:{self.region}"

    @property
    def cost_usd(self) -> float:
        return self.instances * self.instance.usd_per_hour * self.hours

    @property
    def energy_kwh(self) -> float | None:
        return None if self.pue is None else self.it_energy_kwh * self.pue

    @property
    def co2e_kg(self) -> float | None:
        if self.energy_kwh is None or self.grid_intensity_g_per_kwh is None:
            return None
        return self.energy_kwh * self.grid_intensity_g_per_kwh / 1000.0

    def to_dict(self) -> dict[str, Any]:
        from greenml.factors.prices import staleness

        p = self.instance
        return {
            "location": self.location,
            "instance_type": p.instance_type,
            "instances": self.instances,
            "gpus_per_instance": p.gpu_count,
            "gpu_model": p.gpu_model,
            "pricing": p.pricing,
            "usd_per_hour": p.usd_per_hour,
            "price_as_of": p.as_of.isoformat(),
            "price_stale": staleness(p, datetime.date.today()),
            "price_source": p.source,
            "cost_usd": self.cost_usd,
            "energy_kwh": self.energy_kwh,
            "co2e_kg": self.co2e_kg,
            "pue": self.pue,
            "grid_intensity_g_per_kwh": self.grid_intensity_g_per_kwh,
            "reasons": list(self.reasons),
        }


def matches(board: GpuSpec, family_only: bool, gpus: Sequence[GpuSpec]) -> Any:
    """A test of a price row's ``gpu_model``: its board is ``board``, or, with
    ``family_only`` (the user named a bare family, ``A100``), a board of the same family
    with the same power and peak throughput (the A100 SXM4 40GB and 80GB), so that one
    energy figure holds for every option. A board of the family that differs (the H100 NVL
    beside the H100 SXM) is not the same job."""
    from greenml.factors.hardware import find_instance_gpu, gpu_family

    family = gpu_family(board.model)
    cache: dict[str, bool] = {}

    def test(gpu_model: str) -> bool:
        if gpu_model not in cache:
            found = find_instance_gpu(gpu_model, table=gpus)
            if found is None:
                cache[gpu_model] = False
            elif family_only:
                cache[gpu_model] = gpu_family(found.model) == family and _alike(found, board)
            else:
                cache[gpu_model] = found == board
        return cache[gpu_model]

    return test


def named(gpu: str, gpus: Sequence[GpuSpec], voice: Voice = PYTHON) -> tuple[GpuSpec, bool, Any]:
    """The board ``gpu`` names, whether it was a bare family name (``A100``), and the test
    of a price row's ``gpu_model`` for it (:func:`matches`). An unknown name is a
    ConfigError naming it."""
    from greenml.factors.hardware import find_gpu, gpu_family, normalise_name

    board = find_gpu(gpu, table=gpus, voice=voice)
    family_only = normalise_name(gpu) == gpu_family(board.model)
    return board, family_only, matches(board, family_only, gpus)


def _alike(a: GpuSpec, b: GpuSpec) -> bool:
    return (a.tdp_w, a.bf16_dense_tflops, a.fp16_dense_tflops, a.fp8_dense_tflops) == (
        b.tdp_w,
        b.bf16_dense_tflops,
        b.fp16_dense_tflops,
        b.fp8_dense_tflops,
    )


def _score(row: InstancePrice, n: int) -> tuple[int, float, str]:
    return (n, n * row.usd_per_hour, row.instance_type)


def cheapest(
    rows: Iterable[InstancePrice],
    test: Any,
    count: int,
    *,
    pricing: str,
    providers: Iterable[str] | None = None,
    places: Iterable[tuple[str, str]] | None = None,
) -> dict[tuple[str, str], tuple[InstancePrice, int]]:
    """Per (provider, region): the row carrying the GPUs (``test``) in the fewest whole
    instances (a multi-GPU job wants its GPUs in one machine where it can), the cheapest of
    those, and how many instances. ``providers`` or ``places`` restrict where to look."""
    wanted = set(providers) if providers is not None else None
    spots = set(places) if places is not None else None
    best: dict[tuple[str, str], tuple[InstancePrice, int]] = {}
    for row in rows:
        if row.pricing != pricing or not test(row.gpu_model):
            continue
        key = (row.provider, row.region)
        if wanted is not None and row.provider not in wanted:
            continue
        if spots is not None and key not in spots:
            continue
        n = math.ceil(count / row.gpu_count)
        old = best.get(key)
        if old is None or _score(row, n) < _score(*old):
            best[key] = (row, n)
    return best


def options(
    gpu: str,
    *,
    count: int,
    hours: float,
    it_energy_kwh: float,
    pricing: str,
    tables_dir: str | None,
    gpus: Sequence[GpuSpec],
    rows: Sequence[InstancePrice],
    providers: Iterable[str] | None = None,
    places: Iterable[tuple[str, str]] | None = None,
    environ: Mapping[str, str] | None = None,
    voice: Voice = PYTHON,
) -> list[Option]:
    """Every region's option for ``count`` x the board ``gpu`` names (see the module
    docstring), cheapest first."""
    from greenml.config import Settings
    from greenml.factors.resolve import resolve_run_factors

    _, _, test = named(gpu, gpus, voice)
    found = cheapest(rows, test, count, pricing=pricing, providers=providers, places=places)
    out = []
    for (provider, region), (row, n) in found.items():
        reasons: list[str] = []
        pue = intensity = None
        factors: tuple[Factor, ...] = ()
        try:
            rf = resolve_run_factors(
                Settings(location=f"{provider}:{region}", tables_dir=tables_dir),
                environ=environ if environ is not None else {},
            )
        except ConfigError as e:
            reasons.append(f"CO2e: {e}")
        else:
            pue = rf.pue.value if rf.pue is not None else None
            intensity = rf.grid.value if rf.grid is not None else None
            factors = tuple(f for f in (rf.pue, rf.grid) if f is not None)
        out.append(
            Option(
                provider,
                region,
                row,
                n,
                hours,
                it_energy_kwh,
                pue,
                intensity,
                tuple(reasons),
                factors,
            )
        )
    out.sort(key=lambda o: (o.cost_usd, o.location))
    return out


def sold_nowhere(board: GpuSpec, pricing: str, rows: Sequence[InstancePrice]) -> str:
    """Why no option was found: which pricing lists the board, if any."""
    kinds = sorted({r.pricing for r in rows if r.gpu_model})
    return f"no instance in the price table carries {board.model} with a {pricing} price" + (
        f" (the table has {', '.join(kinds)} prices)" if kinds else ""
    )
