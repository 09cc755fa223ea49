"""greenml's names: every metric, param, tag and artifact name it writes (docs/mlflow.md
lists them), and the functions that build those payloads from a
:class:`~greenml.footprint.Footprint`.

This is the one place the names live: the sinks, the report and the tests import them from
here, and no other file types a ``greenml/...`` metric or a ``greenml.<param|tag>`` name.
The builders are plain functions of a footprint (no I/O); the MLflow sink
(:mod:`greenml.sinks.mlflow`) only delivers what they build. Importing this module is cheap:
it imports neither mlflow nor anything else heavy.

A journal holds one tracked block's own figures. Where the block sits in its run (the run's
totals before it, the step its points continue from, its artifacts' names) is a
:class:`Block`, found when the block first reaches the run and written in the journal, so
that a replay by ``greenml sync`` sends exactly what the live run sent.

A ``footprint.json`` document (:func:`footprint_document`) reads back with
:meth:`Footprint.from_dict <greenml.footprint.Footprint.from_dict>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from greenml._version import __version__
from greenml.footprint import J_PER_KWH

if TYPE_CHECKING:
    from greenml.footprint import Footprint

# -- metrics: greenml/<figure> ------------------------------------------------------------

PREFIX = "greenml/"  # every metric and artifact name starts with it
POWER_SUFFIX = "power_w"  # a rate: not cumulative over a run's blocks
ENERGY_SUFFIX = "energy_kwh"

METRIC_ENERGY_KWH = PREFIX + "energy_kwh"  # facility energy: IT energy x PUE
METRIC_CO2E_KG = PREFIX + "co2e_kg"  # location-based
METRIC_CO2E_MARKET_KG = PREFIX + "co2e_market_kg"  # market-based
METRIC_COST_USD = PREFIX + "cost_usd"
METRIC_DURATION_S = PREFIX + "duration_s"
METRIC_GPU_ENERGY_KWH = PREFIX + "gpu_energy_kwh"  # IT energy, before PUE
METRIC_CPU_ENERGY_KWH = PREFIX + "cpu_energy_kwh"
METRIC_RAM_ENERGY_KWH = PREFIX + "ram_energy_kwh"
METRIC_GPU_POWER_W = PREFIX + "gpu_power_w"  # all GPUs together
METRIC_EMBODIED_CO2E_KG = PREFIX + "embodied_co2e_kg"  # SCI view: never in co2e_kg

#: The Footprint figure behind each run-level metric (an unknown figure is left out).
FIGURE_METRICS: Mapping[str, str] = MappingProxyType(
    {
        "energy_kwh": METRIC_ENERGY_KWH,
        "co2e_kg": METRIC_CO2E_KG,
        "co2e_market_kg": METRIC_CO2E_MARKET_KG,
        "cost_usd": METRIC_COST_USD,
        "duration_s": METRIC_DURATION_S,
        "gpu_energy_kwh": METRIC_GPU_ENERGY_KWH,
        "cpu_energy_kwh": METRIC_CPU_ENERGY_KWH,
        "ram_energy_kwh": METRIC_RAM_ENERGY_KWH,
        "embodied_co2e_kg": METRIC_EMBODIED_CO2E_KG,
    }
)

# the work a training loop counted, and what it cost per unit (Footprint figures too)
METRIC_STEPS = PREFIX + "steps"
METRIC_SAMPLES = PREFIX + "samples"
METRIC_TOKENS = PREFIX + "tokens"
METRIC_FLOPS = PREFIX + "flops"  # model FLOPs as the trainer counts them
METRIC_MFU = PREFIX + "mfu"  # model FLOPs utilisation, 0..1
METRIC_ENERGY_WH_PER_1K_SAMPLES = PREFIX + "energy_wh_per_1k_samples"
METRIC_CO2E_G_PER_1K_SAMPLES = PREFIX + "co2e_g_per_1k_samples"
METRIC_ENERGY_WH_PER_1M_TOKENS = PREFIX + "energy_wh_per_1m_tokens"
METRIC_CO2E_G_PER_1M_TOKENS = PREFIX + "co2e_g_per_1m_tokens"
METRIC_ENERGY_WH_PER_PFLOP = PREFIX + "energy_wh_per_pflop"

#: The Footprint's work figures and their metrics (counts add up over a run's blocks).
WORK_METRICS: Mapping[str, str] = MappingProxyType(
    {
        "steps": METRIC_STEPS,
        "samples": METRIC_SAMPLES,
        "tokens": METRIC_TOKENS,
        "flops": METRIC_FLOPS,
    }
)
#: Ratios of a footprint's figures to its work: never added up over blocks.
RATIO_METRICS: Mapping[str, str] = MappingProxyType(
    {
        "mfu": METRIC_MFU,
        "energy_wh_per_1k_samples": METRIC_ENERGY_WH_PER_1K_SAMPLES,
        "co2e_g_per_1k_samples": METRIC_CO2E_G_PER_1K_SAMPLES,
        "energy_wh_per_1m_tokens": METRIC_ENERGY_WH_PER_1M_TOKENS,
        "co2e_g_per_1m_tokens": METRIC_CO2E_G_PER_1M_TOKENS,
        "energy_wh_per_pflop": METRIC_ENERGY_WH_PER_PFLOP,
    }
)

# the projected figures of the whole run (greenml.progress), on time-series points
FORECAST_PREFIX = PREFIX + "forecast/"
METRIC_FORECAST_ENERGY_KWH = FORECAST_PREFIX + "energy_kwh"
METRIC_FORECAST_CO2E_KG = FORECAST_PREFIX + "co2e_kg"
METRIC_FORECAST_COST_USD = FORECAST_PREFIX + "cost_usd"
FORECAST_METRICS: Mapping[str, str] = MappingProxyType(
    {
        "energy_kwh": METRIC_FORECAST_ENERGY_KWH,
        "co2e_kg": METRIC_FORECAST_CO2E_KG,
        "cost_usd": METRIC_FORECAST_COST_USD,
    }
)

NODE_PREFIX = PREFIX + "node/"  # one host's figures in a multi-host job


def _safe_host(host: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in host) or "host"


def node_metric(host: str, metric: str) -> str:
    """``greenml/energy_kwh`` (or the artifact ``greenml/footprint.json``) of host
    ``host`` in a multi-host job: ``greenml/node/<host>/energy_kwh`` (the host name made
    safe for MLflow)."""
    return NODE_PREFIX + _safe_host(host) + "/" + metric[len(PREFIX) :]


NODE_PARAM_PREFIX = "greenml.node."  # one host's params and tags in a multi-host job


def node_param(host: str, name: str) -> str:
    """A param or tag ``greenml.<name>`` of host ``host``: ``greenml.node.<host>.<name>``."""
    return f"{NODE_PARAM_PREFIX}{_safe_host(host)}." + name[len("greenml.") :]


def metric_gpu_energy_kwh(index: int) -> str:
    """``greenml/gpu_<index>/energy_kwh``: one GPU's IT energy."""
    return f"{PREFIX}gpu_{index}/{ENERGY_SUFFIX}"


def metric_gpu_power_w(index: int) -> str:
    """``greenml/gpu_<index>/power_w``: one GPU's mean power."""
    return f"{PREFIX}gpu_{index}/{POWER_SUFFIX}"


def metric_phase_energy_kwh(phase: str) -> str:
    """``greenml/phase/<phase>/energy_kwh``: one phase's facility energy."""
    return f"{PREFIX}phase/{phase}/{ENERGY_SUFFIX}"


# -- params: the factors used -------------------------------------------------------------

PARAM_LOCATION = "greenml.location"
PARAM_GRID_INTENSITY = "greenml.grid_intensity_g_per_kwh"
PARAM_GRID_SOURCE = "greenml.grid_source"
PARAM_PUE = "greenml.pue"
PARAM_PRICE_USD_PER_HOUR = "greenml.price_usd_per_hour"
PARAM_PRICE_SOURCE = "greenml.price_source"
PARAM_PRICING = "greenml.pricing"  # on-demand | spot | user-supplied | n/a
PARAM_PRICE_AS_OF = "greenml.price_as_of"  # the date the table's price was read
PARAM_INSTANCE_TYPE = "greenml.instance_type"
PARAM_GPU_MODEL = "greenml.gpu_model"
PARAM_GPU_COUNT = "greenml.gpu_count"

NA = "n/a"  # an MLflow param for a factor that is not known (flags say why)

# -- tags ---------------------------------------------------------------------------------

TAG_VERSION = "greenml.version"
TAG_SCOPE = "greenml.scope"  # scope2 | scope3-cat1
TAG_MEASUREMENT = "greenml.measurement"  # counter | sampled | estimated | simulated | imported
TAG_NODE = "greenml.node"
TAG_RUN_ID = "greenml.run_id"  # matches a journal to its MLflow run (sync)
TAG_STATUS = "greenml.status"  # finished | failed | killed, also on runs greenml attached to
TAG_BLOCKS = "greenml.blocks"  # how many tracked blocks have logged into the run
TAG_BUDGET_STOP = "greenml.budget_stop"  # the budget that stopped training, if one did
# a run imported from another tool's records (greenml import codecarbon)
TAG_IMPORTED_FROM = "greenml.imported_from"  # "<tool> <tool version> <file name>"
TAG_IMPORTED_RUN_ID = "greenml.imported_run_id"  # the tool's own run id: the match key
TAG_IMPORTED_TIMESTAMP = "greenml.imported_timestamp"  # the source row's time, as written
TAG_IMPORTED_RECOMPUTED = "greenml.imported_recomputed"  # params greenml filled in
PARAM_IMPORTED_GRID_INTENSITY = "greenml.imported_grid_intensity_g_per_kwh"  # the tool's own
MEASUREMENT_IMPORTED = "imported"  # the greenml.measurement of an imported run
# a distributed job (greenml.integrations.distributed): its shape, on the job's run
TAG_HOSTS = "greenml.hosts"  # how many hosts measured the job
TAG_WORLD_SIZE = "greenml.world_size"  # processes in the job (torchrun, SLURM)
TAG_SLURM_JOB_ID = "greenml.slurm_job_id"
TAG_SLURM_NODELIST = "greenml.slurm_nodelist"
TAG_SLURM_ARRAY_TASK_ID = "greenml.slurm_array_task_id"
_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}

# -- artifacts ----------------------------------------------------------------------------

FOOTPRINT_ARTIFACT = PREFIX + "footprint.json"  # the first block's; later ones are numbered
TIMESERIES_ARTIFACT = PREFIX + "timeseries.csv"

# the keys footprint.json holds besides the footprint's own (Footprint.to_dict)
DOC_GREENML_VERSION = "greenml_version"
DOC_GREENML_RUN_ID = "greenml_run_id"


def footprint_artifact(block: int) -> str:
    """``greenml/footprint.json`` for a run's first block, ``greenml/footprint-<n>.json``
    for its n-th."""
    return FOOTPRINT_ARTIFACT if block <= 1 else f"{PREFIX}footprint-{block}.json"


def timeseries_artifact(block: int) -> str:
    """``greenml/timeseries.csv`` for a run's first block, ``greenml/timeseries-<n>.csv``
    for its n-th."""
    return TIMESERIES_ARTIFACT if block <= 1 else f"{PREFIX}timeseries-{block}.csv"


# -- metric payloads ----------------------------------------------------------------------


def timeseries_values(fp: Footprint, gpu_power_w: Mapping[int, float]) -> dict[str, float]:
    """The metrics of one time-series point: cumulative figures so far and the GPUs'
    mean power since the previous point (``gpu_power_w``: index -> watts)."""
    out = _energy_values(fp)
    if gpu_power_w:
        if set(gpu_power_w) == set(gpu_energy_by_index(fp)):  # a total of every GPU, or none
            out[METRIC_GPU_POWER_W] = sum(gpu_power_w.values())
        for i, w in sorted(gpu_power_w.items()):
            out[metric_gpu_power_w(i)] = w
    return out


def summary_metrics(fp: Footprint) -> dict[str, float]:
    """The run's summary metrics. Power figures are the means over the whole run."""
    out = _energy_values(fp)
    gpus = gpu_energy_by_index(fp)
    if gpus and fp.duration_s > 0:
        out[METRIC_GPU_POWER_W] = fp.gpu_energy_kwh * J_PER_KWH / fp.duration_s
        for i, kwh in sorted(gpus.items()):
            out[metric_gpu_power_w(i)] = kwh * J_PER_KWH / fp.duration_s
    return out


def _energy_values(fp: Footprint) -> dict[str, float]:
    out: dict[str, float] = {}
    for figure, name in FIGURE_METRICS.items():
        value = getattr(fp, figure)
        if value is not None:  # an unknown figure is left out, never logged as 0
            out[name] = float(value)
    for i, kwh in sorted(gpu_energy_by_index(fp).items()):
        out[metric_gpu_energy_kwh(i)] = kwh
    for phase, pfp in fp.phases.items():
        out[metric_phase_energy_kwh(phase)] = pfp.energy_kwh
    for mapping in (WORK_METRICS, RATIO_METRICS):
        for figure, name in mapping.items():
            value = getattr(fp, figure)
            if value is not None:
                out[name] = float(value)
    return out


def gpu_energy_by_index(fp: Footprint) -> dict[int, float]:
    """IT energy per GPU index (kWh)."""
    out: dict[int, float] = {}
    for d in fp.devices:
        if d.kind == "gpu" and d.index is not None:
            out[d.index] = out.get(d.index, 0.0) + d.energy_kwh
    return out


def is_cumulative(key: str) -> bool:
    """Whether a greenml metric adds up over a run's blocks (energy, CO2e, cost,
    duration, work counted); power, ratios and forecasts do not."""
    if not key.startswith(PREFIX) or key.endswith(POWER_SUFFIX):
        return False
    if key.startswith(FORECAST_PREFIX):
        return False
    return not key.endswith(_RATIO_SUFFIXES)  # greenml/mfu, greenml/node/<host>/mfu...


_RATIO_SUFFIXES = tuple("/" + m[len(PREFIX) :] for m in RATIO_METRICS.values())


# -- where a block sits in its run --------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """Where one tracked block sits in its run.

    ``number`` is 1 for the run's first greenml block; ``step0`` is added to the block's
    own steps so that they continue after the run's earlier greenml points; ``base`` holds
    the run's cumulative greenml figures before the block, added to the block's own so
    that the run's series stay cumulative and its latest values are the run's totals."""

    number: int = 1
    step0: int = 0
    base: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", MappingProxyType(dict(self.base)))  # a copy, read-only

    @property
    def footprint_artifact(self) -> str:
        return footprint_artifact(self.number)

    @property
    def timeseries_artifact(self) -> str:
        return timeseries_artifact(self.number)

    def to_record(self) -> dict[str, Any]:
        """The block as the journal keeps it."""
        return {"number": self.number, "step0": self.step0, "base": dict(self.base)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Block:
        base = {str(k): float(v) for k, v in dict(record.get("base") or {}).items()}
        return cls(int(record["number"]), int(record["step0"]), base)


def run_values(metrics: Mapping[str, float], block: Block, *, summary: bool) -> dict[str, float]:
    """A block's metrics as its run gets them: cumulative figures plus the run's totals
    before the block. In the summary, the power metrics become the means over all the
    run's blocks (GPU energy / duration, both totals); a time-series point's power is
    the power of its own interval and is left as it is."""
    out = {k: v + block.base.get(k, 0.0) if is_cumulative(k) else v for k, v in metrics.items()}
    duration = out.get(METRIC_DURATION_S)
    if summary and block.base and duration:
        for key in metrics:
            if key.endswith(POWER_SUFFIX):
                energy = out.get(key[: -len(POWER_SUFFIX)] + ENERGY_SUFFIX)
                if energy is not None:
                    out[key] = energy * J_PER_KWH / duration
    return out


# -- params, tags, footprint.json ---------------------------------------------------------


def run_params(fp: Footprint, *, with_intensity: bool = True) -> dict[str, str]:
    """The factors used, as MLflow params (strings). ``with_intensity=False`` leaves
    out the grid intensity (an hourly-weighted one is only final at the end)."""
    grid = _factor(fp, "grid_intensity")
    hourly = _factor(fp, "price")
    price = hourly or _factor(fp, "electricity_price")
    gpus = [d for d in fp.devices if d.kind == "gpu"]
    models = sorted({d.name for d in gpus})
    params = {
        PARAM_LOCATION: fp.location or NA,
        PARAM_GRID_INTENSITY: _num(fp.grid_intensity_g_per_kwh),
        PARAM_GRID_SOURCE: _source(grid),
        PARAM_PUE: _num(fp.pue),
        PARAM_PRICE_USD_PER_HOUR: _num(hourly.value if hourly is not None else None),
        PARAM_PRICE_SOURCE: _source(price),
        PARAM_PRICING: _pricing(hourly),
        PARAM_PRICE_AS_OF: (hourly.as_of if hourly is not None else None) or NA,
        PARAM_INSTANCE_TYPE: fp.instance_type or NA,
        PARAM_GPU_MODEL: ", ".join(models) if models else "none",
        PARAM_GPU_COUNT: str(len({d.index for d in gpus})),
    }
    if not with_intensity:
        del params[PARAM_GRID_INTENSITY]
    return params


def run_tags(
    fp: Footprint, *, node: str, greenml_run_id: str, status: str | None = None
) -> dict[str, str]:
    """The run's tags; ``status`` (``running`` or an MLflow end status) adds
    ``greenml.status``."""
    tags = {
        TAG_VERSION: __version__,
        TAG_SCOPE: fp.scope or NA,
        TAG_MEASUREMENT: fp.measurement,
        TAG_NODE: node,
        TAG_RUN_ID: greenml_run_id,
    }
    if status is not None:
        tags[TAG_STATUS] = status_tag(status)
    return tags


def status_tag(status: str) -> str:
    """The ``greenml.status`` value of an MLflow run status (``FINISHED`` -> ``finished``)."""
    return _STATUS.get(status, status.lower())


def footprint_document(fp: Footprint, greenml_run_id: str | None) -> dict[str, Any]:
    """The content of ``greenml/footprint.json``: the whole footprint, with the greenml
    version and run id it came from (``Footprint.from_dict`` reads it back)."""
    return {DOC_GREENML_VERSION: __version__, DOC_GREENML_RUN_ID: greenml_run_id, **fp.to_dict()}


def _factor(fp: Footprint, name: str) -> Any:
    return next((f for f in fp.factors if f.name == name), None)


def _num(x: float | None) -> str:
    return NA if x is None else repr(float(x))


def _pricing(price: Any) -> str:
    """How the hourly price was set: the table's ``on-demand`` or ``spot``, or the user's."""
    if price is None:
        return NA
    return price.basis or ("user-supplied" if price.source == "user-supplied" else NA)


def _source(f: Any) -> str:
    if f is None:
        return NA
    year = f", {f.year}" if getattr(f, "year", None) else ""
    return f"{f.source}{year}"[:500]  # MLflow params hold up to 6000 characters
