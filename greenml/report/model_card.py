"""What a model's documentation needs from its training runs' footprints.

``greenml report --model-card RUN_ID [RUN_ID ...]`` prints three blocks, the runs summed
(a pre-training and its fine-tunes make one statement):

1. the Hugging Face model-card metadata ``co2_eq_emissions`` (``emissions`` in grams of CO2e,
   location-based; ``source``; ``training_type``; ``geographical_location``;
   ``hardware_used``), to paste into the card's YAML header;
2. a filled "Environmental Impact" section (hardware, hours, provider, region, CO2e, energy);
3. the energy statement of the EU AI Act, Annex XI, section 1, point 2 (d)-(e): the
   computational resources (FLOPs where the runs logged ``greenml/flops``, GPU-hours,
   hardware) and training time, and the energy consumption, saying whether it is measured or
   estimated and how.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from greenml import schema
from greenml._version import __version__
from greenml.errors import ConfigError

_METHODS = {
    "counter": "measured with the GPUs' energy counters (NVML/AMD SMI), CPU and RAM by RAPL "
    "counters or power models",
    "sampled": "measured from the GPUs' power readings (no energy counter), integrated over time",
    "estimated": "estimated from power models (board power x utilisation), not measured",
    "imported": "imported from CodeCarbon's records",
    "simulated": "SIMULATED GPUs (a test run, not a real training)",
}


def model_card_text(
    run_ids: Sequence[str], *, tracking_uri: str | None = None, training_type: str | None = None
) -> str:
    """The three blocks for the runs ``run_ids`` of the store at ``tracking_uri``."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from greenml.sinks.mlflow import absolute_uri, default_tracking_uri, redact_uri

    uri = absolute_uri(tracking_uri or default_tracking_uri(None))
    client = MlflowClient(tracking_uri=uri)
    runs = []
    for run_id in run_ids:
        try:
            runs.append(client.get_run(run_id))
        except MlflowException as e:
            raise ConfigError(
                f"run {run_id!r} is not in the tracking store {redact_uri(uri)} ({e.error_code})"
            ) from None
    return card(runs, training_type=training_type)


def card(runs: Sequence[Any], *, training_type: str | None = None) -> str:
    """The blocks for MLflow runs (``mlflow.entities.Run``) with greenml's figures."""
    figures = [_figures(r) for r in runs]
    for f in figures:
        if f["co2e_kg"] is None or f["energy_kwh"] is None:
            raise ConfigError(
                f"run {f['run_id']!r} has no greenml figures (greenml/energy_kwh, "
                "greenml/co2e_kg): measure it with greenml, or import it (greenml import)"
            )
    grams = sum(f["co2e_kg"] for f in figures) * 1000
    energy = sum(f["energy_kwh"] for f in figures)
    it = sum(f["it_energy_kwh"] or 0.0 for f in figures)
    hours = sum(f["duration_s"] or 0.0 for f in figures) / 3600
    gpu_hours = sum(f["gpu_hours"] or 0.0 for f in figures)
    flops = [f["flops"] for f in figures]
    hardware = _join(f"{f['gpu_count']} x {f['gpu_model']}" for f in figures if f["gpu_model"])
    locations = _join(f["location"] or "unknown" for f in figures)
    providers = _join(f["provider"] or "own hardware" for f in figures)
    methods = _join(_METHODS.get(f["measurement"] or "", f["measurement"] or "?") for f in figures)
    kind = training_type or (
        "pre-training" if len(figures) == 1 else "pre-training and fine-tuning"
    )
    measured = all(f["measurement"] in ("counter", "sampled") for f in figures)
    sources = _join(f["grid_source"] or "n/a" for f in figures)
    meta = {
        "emissions": round(grams, 3),
        "source": f"greenml {__version__}: energy {methods}; grid intensity: {sources}",
        "training_type": kind,
        "geographical_location": locations,
        "hardware_used": hardware or "no GPU measured",
    }
    yaml = "\n".join(["co2_eq_emissions:"] + [f"  {k}: {json.dumps(v)}" for k, v in meta.items()])
    flops_text = (
        f"{sum(flops):.3g} FLOPs (as the training loop counted them)"
        if all(x is not None for x in flops)
        else "not recorded (the training did not log greenml/flops)"
    )
    run_list = ", ".join(f["run_id"] for f in figures)
    return "\n".join(
        [
            "# Model-card metadata (YAML header)",
            "",
            yaml,
            "",
            "# Environmental Impact",
            "",
            f"- **Hardware Type:** {hardware or 'no GPU measured'}",
            f"- **Hours used:** {hours:.2f} h wall-clock ({gpu_hours:.1f} GPU-hours)",
            f"- **Cloud Provider:** {providers}",
            f"- **Compute Region:** {locations}",
            f"- **Carbon Emitted:** {grams / 1000:.4g} kg CO2e (location-based)",
            f"- **Energy:** {energy:.4g} kWh facility energy ({it:.4g} kWh IT energy)",
            f"- **Measured by:** greenml {__version__}, MLflow run(s) {run_list}",
            "",
            "# Energy statement (EU AI Act, Annex XI, section 1, point 2 (d)-(e))",
            "",
            f"- **Computational resources:** {flops_text}; {gpu_hours:.1f} GPU-hours on "
            f"{hardware or 'no GPU measured'}.",
            f"- **Training time:** {hours:.2f} hours of wall-clock time over {len(figures)} "
            "run(s).",
            f"- **Energy consumption:** {energy:.4g} kWh ("
            + ("known: measured" if measured else "estimated")
            + f"; {methods}), facility energy including the data centre's PUE.",
        ]
    )


def _join(items: Any) -> str:
    return ", ".join(dict.fromkeys(str(x) for x in items))


def _figures(run: Any) -> dict[str, Any]:
    m, p, t = run.data.metrics, run.data.params, run.data.tags

    def num(value: Any) -> float | None:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    location = p.get(schema.PARAM_LOCATION)
    gpus = num(p.get(schema.PARAM_GPU_COUNT))
    duration = m.get(schema.METRIC_DURATION_S)
    parts = [
        m.get(k)
        for k in (
            schema.METRIC_GPU_ENERGY_KWH,
            schema.METRIC_CPU_ENERGY_KWH,
            schema.METRIC_RAM_ENERGY_KWH,
        )
    ]
    return {
        "run_id": run.info.run_id,
        "energy_kwh": m.get(schema.METRIC_ENERGY_KWH),
        "it_energy_kwh": None if None in parts else sum(parts),
        "co2e_kg": m.get(schema.METRIC_CO2E_KG),
        "duration_s": duration,
        "gpu_hours": gpus * duration / 3600 if gpus and duration else None,
        "gpu_count": int(gpus) if gpus else 0,
        "gpu_model": p.get(schema.PARAM_GPU_MODEL)
        if p.get(schema.PARAM_GPU_MODEL) not in (None, "none")
        else None,
        "flops": m.get(schema.METRIC_FLOPS),
        "location": location if location not in (None, schema.NA) else None,
        "provider": location.partition(":")[0] if location and ":" in location else None,
        "measurement": t.get(schema.TAG_MEASUREMENT),
        "grid_source": p.get(schema.PARAM_GRID_SOURCE),
    }
