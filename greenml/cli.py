"""The ``greenml`` command line."""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from typing import TYPE_CHECKING, Any

import click

from greenml._version import __version__
from greenml.config import Voice

if TYPE_CHECKING:
    from greenml.estimate import Estimate


@click.group()
@click.version_option(__version__, prog_name="greenml")
@click.option("-v", "--verbose", is_flag=True, help="Show greenml's log messages.")
def main(verbose: bool) -> None:
    """Measure the energy, carbon and cost of ML training."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    warnings.showwarning = _plain_greenml_warnings(warnings.showwarning)


def _plain_greenml_warnings(show: Any) -> Any:
    """greenml's warnings as ``warning: ...`` lines on stderr: at the command line, the
    Python file and line that raised one mean nothing. Other warnings are shown as usual."""
    from greenml.errors import GreenMLWarning

    if getattr(show, "greenml_plain", False):
        return show

    def showwarning(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, GreenMLWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            show(message, category, *args, **kwargs)

    showwarning.greenml_plain = True  # type: ignore[attr-defined]
    return showwarning


def _workload(seconds: float) -> int:
    """A small CPU-bound job (a 64 x 64 matrix product in plain Python, repeated) that
    stands in for training, until ``seconds`` pass."""
    n = 64
    a = [[((i * 7 + j * 3) % 11) / 11.0 for j in range(n)] for i in range(n)]
    cols = list(zip(*a, strict=True))
    steps = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        a = [[sum(x * y for x, y in zip(row, col, strict=True)) / n for col in cols] for row in a]
        steps += 1
    return steps


def _format(fp: object) -> str:
    from greenml.footprint import Footprint

    assert isinstance(fp, Footprint)
    lines = [
        f"duration          {fp.duration_s:10.2f} s",
        f"GPU energy (IT)   {fp.gpu_energy_kwh * 1000:10.4f} Wh",
        f"CPU energy (IT)   {fp.cpu_energy_kwh * 1000:10.4f} Wh",
        f"RAM energy (IT)   {fp.ram_energy_kwh * 1000:10.4f} Wh",
        f"facility energy   {fp.energy_kwh * 1000:10.4f} Wh"
        + (f"  (PUE {fp.pue})" if fp.pue else "  (no PUE applied)"),
    ]
    if fp.co2e_kg is not None:
        lines.append(f"CO2e (location)   {fp.co2e_kg * 1000:10.4f} g")
    if fp.co2e_market_kg is not None:
        lines.append(f"CO2e (market)     {fp.co2e_market_kg * 1000:10.4f} g")
    if fp.cost_usd is not None:
        lines.append(f"cost              {fp.cost_usd:10.6f} USD")
    if fp.embodied_co2e_kg is not None:
        lines.append(
            f"embodied (SCI)    {fp.embodied_co2e_kg * 1000:10.4f} g  (not in the CO2e above)"
        )
    lines.append(f"measurement       {fp.measurement}")
    lines.append(f"location          {fp.location} ({fp.scope})")
    for name, ph in fp.phases.items():
        lines.append(
            f"  phase {name:<10} {ph.duration_s:8.2f} s {ph.it_energy_kwh * 1000:10.4f} Wh (IT)"
        )
    for d in fp.devices:
        line = f"  {d.key:<16} {d.name[:32]:<32} {d.method:<9} {d.energy_kwh * 1000:.4f} Wh"
        if d.energy_low_kwh is not None and d.energy_high_kwh is not None:
            line += f" (between {d.energy_low_kwh * 1000:.4f} and {d.energy_high_kwh * 1000:.4f})"
        lines.append(line)
    for f in fp.factors:
        year = f", {f.year}" if f.year else ""
        lines.append(f"  factor {f.name} = {f.value:.6g} {f.unit} ({f.source}{year})")
    if fp.flags:
        lines.append("flags: " + ", ".join(fp.flags))
    return "\n".join(lines)


@main.command()
@click.option("--seconds", default=3.0, show_default=True, help="Length of the demo job.")
@click.option(
    "--simulated-gpu",
    is_flag=True,
    help="Measure two simulated H100 GPUs (greenml.testing) instead of real ones.",
)
@click.option(
    "--location",
    default=None,
    help="Where the job runs (aws:<region>, FR, US-CA...). Default with --simulated-gpu: "
    "aws:us-east-1 on a p5.48xlarge; otherwise the world average, flagged as assumed.",
)
@click.option("--instance-type", default=None, help="Cloud instance type, for its price.")
@click.option(
    "--instance-share",
    type=float,
    default=None,
    help="Share of the instance charged to the job (default: GPUs measured / GPUs on it).",
)
@click.option("--pue", type=float, default=None, help="Power usage effectiveness to apply.")
@click.option("--grid-intensity", "grid_intensity", type=float, default=None, help="gCO2e/kWh.")
@click.option("--price-usd-per-hour", type=float, default=None, help="Instance price, USD/h.")
@click.option("--tables-dir", default=None, help="A folder of your own factor tables.")
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow store to log into. Default: MLFLOW_TRACKING_URI, else MLflow's local "
    "store (sqlite:///mlflow.db in this folder).",
)
@click.option("--experiment", default="greenml-demo", show_default=True)
@click.option(
    "--out",
    default="greenml-demo-footprint.json",
    show_default=True,
    help="Where to write the footprint (JSON, every factor with its source).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--report",
    "report_out",
    default="greenml-demo-report.html",
    show_default=True,
    help="Where to write the HTML report of the demo's run (greenml report).",
)
def demo(
    seconds: float,
    simulated_gpu: bool,
    location: str | None,
    instance_type: str | None,
    instance_share: float | None,
    pue: float | None,
    grid_intensity: float | None,
    price_usd_per_hour: float | None,
    tables_dir: str | None,
    tracking_uri: str | None,
    experiment: str,
    out: str,
    fmt: str,
    report_out: str,
) -> None:
    """Run a short job on this machine, tracked into MLflow, and print its footprint.

    The job is a small CPU workload (a GPU, if present, is measured while it runs).
    With --simulated-gpu, two simulated H100s stand in for GPUs, and the run is tagged
    greenml.measurement=simulated."""
    import contextlib

    import greenml
    from greenml.errors import ConfigError

    if not math.isfinite(seconds) or seconds <= 0:
        raise click.BadParameter(
            f"{seconds!r}: give a finite duration > 0 (seconds)", param_hint="--seconds"
        )
    sim: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if simulated_gpu and location is None:
        location, instance_type = "aws:us-east-1", instance_type or "p5.48xlarge"
    if simulated_gpu:
        from greenml.testing import SimGPU, SimulatedNVML, traces

        sim = SimulatedNVML(
            [
                SimGPU(trace=traces.square(650.0, 250.0, 0.8, 0.2)),
                SimGPU(trace=traces.square(600.0, 200.0, 0.7, 0.3)),
            ]
        )
    command = click.get_current_context().command
    voice = _cli_voice(command, grid_intensity_g_per_kwh="--grid-intensity")
    try:
        with (
            sim,
            greenml.track(
                voice=voice,
                location=location,
                allow_assumed_location=location is None,
                instance_type=instance_type,
                instance_share=instance_share,
                pue=pue,
                grid_intensity_g_per_kwh=grid_intensity,
                price_usd_per_hour=price_usd_per_hour,
                tables_dir=tables_dir,
                tracking_uri=tracking_uri,
                log_to_mlflow=True,  # the demo shows the MLflow run, whatever the config says
                journal=True,
                experiment=experiment,
                run_name="demo-simulated-gpu" if simulated_gpu else "demo",
                log_interval_s=max(0.5, seconds / 10),
            ) as run,
        ):
            _workload(seconds * 0.75)
            with run.phase("eval"):
                _workload(seconds * 0.25)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    fp = run.footprint
    from greenml.schema import footprint_document

    data = footprint_document(fp, run.greenml_run_id)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(_format(fp))
    click.echo(f"\nfootprint written to {out}")
    where = run.mlflow
    if where is None or where.run_id is None or not where.delivered:
        click.echo(
            f"MLflow did not get the run; it is in the journal {where and where.journal}: "
            "run `greenml sync` once the store is reachable"
        )
        return
    click.echo(f"MLflow run {where.run_id} in experiment {experiment!r} at {where.uri}")
    report = _demo_report(run, experiment, report_out)
    if report is not None:
        click.echo(f"ESG report of this run written to {report}")
    import importlib.util

    if importlib.util.find_spec("flask") is None:  # mlflow-skinny only: no UI
        click.echo("to see it in MLflow's UI, install it:  pip install mlflow")
    click.echo(
        f"open it with:  mlflow ui --backend-store-uri {where.uri}\n"
        f"then browse to http://127.0.0.1:5000/#/experiments/{where.experiment_id}/runs/"
        f"{where.run_id}"
    )


def _demo_report(run: Any, experiment: str, path: str) -> str | None:
    """The HTML report of the demo's own run (simulated runs included: it is the demo),
    written to ``path``; None, with a warning, if it could not be made."""
    import datetime as dt
    import os

    from greenml.errors import warn

    try:
        from greenml.report import load_runs, render, summarize

        today = dt.datetime.now(dt.timezone.utc).date()
        uri = run.settings.tracking_uri
        runs = load_runs(uri, [experiment], today - dt.timedelta(days=1), today)
        attrs = dict(runs.attrs)
        runs = runs[runs["run_id"] == run.mlflow.run_id]
        runs.attrs.update(attrs)
        summary = summarize(runs, include_simulated=True, organisation="greenml demo")
        with open(path, "w", encoding="utf-8") as f:
            f.write(render(summary, "html"))
    except Exception as e:  # the demo's run is measured and logged; the report is extra
        warn(f"the demo's report could not be written ({e}); try `greenml report`")
        return None
    return os.path.abspath(path)


def _cli_voice(command: click.Command, **renamed: str) -> Voice:
    """The command's settings named by its own flags (``instance_type`` -> ``--instance``);
    ``renamed`` names a setting by another flag (``location="--compare"``)."""
    flags = {
        p.name: max(p.opts, key=len)
        for p in command.params
        if isinstance(p, click.Option) and p.name is not None
    }
    return Voice(flags={**flags, **renamed})


def _rounded(value: Any, digits: int = 12) -> Any:
    """``value`` with every float rounded to ``digits`` significant digits, for display:
    364.79999999999995 (float arithmetic's 320 x 1.14) is shown as 364.8."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _kwh(kwh: float) -> str:
    """``1,234.000 kWh``, with MWh beside it from 10 MWh up."""
    text = f"{kwh:,.3f} kWh"
    return text + (f" ({kwh / 1000:,.1f} MWh)" if kwh >= 10_000 else "")


def _estimate_text(est: Estimate, title: str, hours: float) -> list[str]:
    fp, hw = est.footprint, est.hardware

    def opt(x: float | None, fmt: str, unit: str) -> str:
        return "n/a" if x is None else f"{x:{fmt}} {unit}"

    lines = [f"{title}: {est.location or '(no location)'} ({fp.scope})"]
    if hw is not None and (hw.gpu_power_w is not None or hw.instance_type is not None):
        lines.append(f"  hardware         {hw.describe()}, {hours:g} h")
    lines += [
        f"  IT energy        {_kwh(est.it_energy_kwh)}",
        f"  facility energy  {_kwh(fp.energy_kwh)} (PUE {fp.pue})",
        f"  CO2e location    {opt(fp.co2e_kg, ',.3f', 'kg')}",
        f"  CO2e market      {opt(fp.co2e_market_kg, ',.3f', 'kg')}",
    ]
    cost = f"  cost             {opt(fp.cost_usd, ',.2f', 'USD')}"
    price = next((f for f in fp.factors if f.name == "price"), None)
    if fp.cost_usd is not None and price is not None:
        times = ""
        if hw is not None and hw.instance_type is not None and hw.gpus_per_instance is not None:
            if hw.instance_share < 1:
                times = f"{hw.gpu_count}/{hw.gpus_per_instance} of one {hw.instance_type} x "
            else:
                times = f"{hw.instances} x {hw.instance_type} x "
        cost += f"  ({times}{hours:g} h x {price.value:g} {price.unit})"
    lines.append(cost)
    embodied = opt(fp.embodied_co2e_kg, ",.3f", "kg")
    if fp.embodied_co2e_kg is not None:
        embodied += "  (manufacturing of the hardware, amortised; not in the CO2e above)"
    sci = opt(fp.sci_co2e_kg, ",.3f", "kg")
    if fp.sci_co2e_kg is not None:
        sci += "  (CO2e location + embodied, ISO/IEC 21031)"
    lines += [f"  embodied         {embodied}", f"  SCI              {sci}"]
    for f in fp.factors:
        year = f", {f.year}" if f.year else ""
        lic = f"; licence: {f.licence}" if f.licence else ""
        lines.append(f"    {f.name} = {f.value:.6g} {f.unit} [{f.source}{year}{lic}]")
    lines += [f"  note: {n}" for n in est.notes]
    lines += [f"  note: {r}" for r in est.reasons]
    if fp.flags:
        lines.append("  flags: " + ", ".join(fp.flags))
    return lines


def _lowest(what: str, known: list[Estimate], figure: Any, places: int) -> str:
    if len({round(figure(e), 9) for e in known}) == 1:
        return f"same {what} in every place" + ("" if len(known) == places else " priced")
    return f"lowest {what}: {min(known, key=figure).location}"


def _comparison(options: list[Estimate]) -> list[str]:
    """Which place has the lowest CO2e and cost, claiming only what was compared."""
    lines = []
    co2e = [e for e in options if e.footprint.co2e_kg is not None]
    if len(co2e) > 1:
        lines.append(_lowest("CO2e", co2e, lambda e: e.footprint.co2e_kg, len(options)))
    priced = [e for e in options if e.footprint.cost_usd is not None]
    if len(priced) == 1:
        lines.append(f"cost: only {priced[0].location} is priced")
    elif len(priced) > 1:
        lines.append(_lowest("cost", priced, lambda e: e.footprint.cost_usd, len(options)))
    return lines


_SCALE = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


class _Count(click.ParamType):
    """A large count as articles write it: 7e9, 7B, 1.5T, 70M (K, M, B or G, T)."""

    name = "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip().replace("_", "").replace(",", "")
        try:
            return float(text)
        except ValueError:
            pass
        if text[-1:].lower() in _SCALE:
            try:
                return float(text[:-1]) * _SCALE[text[-1].lower()]
            except ValueError:
                pass
        self.fail(f"{value!r} is not a number: give e.g. 7e9 or 7B (suffixes K, M, B, T)")


_COUNT = _Count()


@main.command()
@click.option("--gpu", default=None, help="GPU model (A100, H100, V100-SXM2...): its board power.")
@click.option(
    "--count",
    type=int,
    default=None,
    help="Number of GPUs. Default: all the GPUs of --instance, else 1.",
)
@click.option(
    "--hours",
    type=float,
    default=None,
    help="Wall-clock hours (default 1). With --flops: a deadline, and the GPUs follow.",
)
@click.option("--location", default=None, help="aws:<region>, gcp:<region>, FR, US-CA...")
@click.option(
    "--instance",
    "instance_type",
    default=None,
    help="Cloud instance type: its price, and its GPUs unless --gpu/--count say otherwise. "
    "More GPUs than it carries take several instances; fewer are charged their share.",
)
@click.option(
    "--compare",
    default=None,
    help="Other places, comma-separated (FR, gcp:us-central1); a provider (aws, gcp, azure) "
    "or 'all' means every region where the GPUs are sold.",
)
@click.option(
    "--pricing",
    type=click.Choice(["on-demand", "spot"], case_sensitive=False),
    default="on-demand",
    show_default=True,
    help="Which price of the instance table.",
)
@click.option("--flops", type=_COUNT, default=None, help="Training FLOPs of the run (e.g. 2.1e25).")
@click.option(
    "--params", type=_COUNT, default=None, help="Model parameters, e.g. 7e9 or 7B (with --tokens)."
)
@click.option(
    "--tokens",
    type=_COUNT,
    default=None,
    help="Training tokens, e.g. 2e12 or 2T; FLOPs = 6 x params x tokens.",
)
@click.option(
    "--mfu",
    type=float,
    default=None,
    help="Model FLOPs utilisation in (0, 1], with --flops or --params. Default 0.4.",
)
@click.option(
    "--precision",
    type=click.Choice(["bf16", "fp16", "fp8"]),
    default="bf16",
    show_default=True,
    help="The peak FLOP/s used with --flops.",
)
@click.option("--power-w", type=float, default=None, help="Average draw per GPU, W.")
@click.option("--pue", type=float, default=None, help="Override the PUE.")
@click.option(
    "--grid-intensity", "grid_intensity_g_per_kwh", type=float, default=None, help="gCO2e/kWh."
)
@click.option("--energy-kwh", type=float, default=None, help="IT energy; skips the power model.")
@click.option(
    "--price-usd-per-hour",
    type=float,
    default=None,
    help="Price of one --instance (or of the job's hardware), USD/h; overrides the table.",
)
@click.option("--allow-assumed-location", is_flag=True, help="World average if no location.")
@click.option(
    "--tables-dir",
    default=None,
    help="A folder of your own factor tables (CSV, named as in `greenml tables list`).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    help="json: figures rounded to 12 significant digits.",
)
def estimate(
    gpu: str | None,
    count: int | None,
    hours: float | None,
    location: str | None,
    instance_type: str | None,
    compare: str | None,
    pricing: str,
    flops: float | None,
    params: float | None,
    tokens: float | None,
    mfu: float | None,
    precision: str,
    power_w: float | None,
    pue: float | None,
    grid_intensity_g_per_kwh: float | None,
    energy_kwh: float | None,
    price_usd_per_hour: float | None,
    allow_assumed_location: bool,
    tables_dir: str | None,
    fmt: str,
) -> None:
    """Estimate kWh, CO2e and cost of a run, with the factors used.

    \b
    A GPU without --instance is priced in every region of the three clouds where an
    instance carries it. --flops (or --params with --tokens) plans a run from its size:
    time = FLOPs / (GPUs x peak x MFU).
    """
    from greenml import estimate as est_mod
    from greenml.errors import ConfigError

    command = click.get_current_context().command
    voice = _cli_voice(command)
    job: dict[str, Any] = dict(
        gpu=gpu,
        count=count,
        power_w=power_w,
        energy_kwh=energy_kwh,
        instance_type=instance_type,
        price_usd_per_hour=price_usd_per_hour,
        pricing=pricing.lower(),
        allow_assumed_location=allow_assumed_location,
        tables_dir=tables_dir,
    )
    where: list[Any] = []
    # A GPU and no place: the energy here, and CO2e and cost in each region that sells it
    # (no place is assumed: the world-average figure of an assumed place is not shown).
    energy_only = (
        location is None
        and gpu is not None
        and not allow_assumed_location
        and grid_intensity_g_per_kwh is None
        and _wants_options(instance_type, price_usd_per_hour, energy_kwh, gpu)
    )
    try:
        with warnings.catch_warnings():
            if energy_only:
                warnings.filterwarnings("ignore", message="the job's location is unknown")
            base = est_mod.estimate(
                location=location,
                hours=hours,
                pue=pue,
                grid_intensity_g_per_kwh=grid_intensity_g_per_kwh,
                flops=flops,
                params=params,
                tokens=tokens,
                mfu=mfu,
                precision=precision,
                voice=voice,
                **{**job, "allow_assumed_location": allow_assumed_location or energy_only},
            )
        alts = []
        if compare is not None:
            places = [c.strip() for c in compare.split(",") if c.strip()]
            if not places:
                raise ConfigError(
                    f"--compare {compare!r} names no place; give e.g. FR,gcp:us-central1 or all"
                )
            alts = est_mod.compare(
                base, places, voice=_cli_voice(command, location="--compare"), **job
            )
        elif energy_only:
            where = _where_sold(base, gpu, pricing.lower(), tables_dir, voice)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    if fmt == "json":
        out = base.to_dict()
        if energy_only:
            out = _without_place(out)
        if compare is not None:
            out["alternatives"] = [a.to_dict() for a in alts]
        if where:
            out["options"] = [o.to_dict() for o in where]
        click.echo(json.dumps(_rounded(out), indent=2))
        return
    lines = _plan_text(base)
    if energy_only:
        lines += _energy_text(base, where)
    else:
        lines += _estimate_text(base, "estimate", base.hours)
    for alt in alts:
        lines += _estimate_text(alt, "compare", alt.hours)
    if alts:
        lines += _comparison([base, *alts])
    if where:
        lines += _options_text(where, base)
    click.echo("\n".join(lines))
    for line in _stale_lines(where):
        click.echo(line, err=True)


def _wants_options(
    instance_type: str | None,
    price: float | None,
    energy_kwh: float | None,
    gpu: str | None,
) -> bool:
    """A GPU with no instance and no price of the user's: show where it is sold."""
    return gpu is not None and instance_type is None and price is None and energy_kwh is None


_PLACED = ("energy_kwh", "co2e_kg", "co2e_market_kg", "cost_usd", "grid_intensity_g_per_kwh")


def _without_place(out: dict[str, Any]) -> dict[str, Any]:
    """An estimate with no place: its IT energy, hardware and embodied carbon; the figures
    that depend on a place (PUE, grid, price) are None, and ``options`` has them."""
    placed = {"pue", "grid_intensity", "market_intensity", "price"}
    out = {**out, **{k: None for k in _PLACED}, "location": None, "pue": None, "sci_co2e_kg": None}
    out["factors"] = [f for f in out["factors"] if f["name"] not in placed]
    out["flags"] = [f for f in out["flags"] if f not in ("location_assumed", "no_price")]
    out["reasons"] = ["CO2e and cost depend on the region: see options (or give --location)"] + [
        r for r in out["reasons"] if not r.startswith("cost:")
    ]
    return out


def _energy_text(est: Estimate, where: list[Any]) -> list[str]:
    hw = est.hardware
    lines = ["estimate: no --location (CO2e and cost per region below)"]
    if hw is not None:
        lines.append(f"  hardware         {hw.describe()}, {est.hours:,.6g} h")
    lines.append(f"  IT energy        {_kwh(est.it_energy_kwh)} (before PUE)")
    for f in est.footprint.factors:
        if f.name == "gpu_power":
            lines.append(f"    {f.name} = {f.value:.6g} {f.unit} [{f.source}, {f.year}]")
    if not where:
        lines.append(
            "  no instance in the price table carries these GPUs: give --location for the "
            "CO2e, and --price-usd-per-hour for the cost"
        )
    return lines


def _where_sold(
    base: Estimate, gpu: str | None, pricing: str, tables_dir: str | None, voice: Voice
) -> list[Any]:
    from greenml.factors.tables import tables as make_tables
    from greenml.options import options

    assert gpu is not None and base.hardware is not None
    t = make_tables(tables_dir, voice=voice)
    return options(
        gpu,
        count=base.hardware.gpu_count,
        hours=base.hours,
        it_energy_kwh=base.it_energy_kwh,
        pricing=pricing,
        tables_dir=tables_dir,
        gpus=t.gpus(),
        rows=t.prices(),
        voice=voice,
    )


def _plan_text(est: Estimate) -> list[str]:
    p = est.plan
    if p is None:
        return []
    if p.params is not None:
        flops = f"{p.flops:.3g} FLOP (6 x {p.params:.3g} parameters x {p.tokens:.3g} tokens)"
    else:
        flops = f"{p.flops:.3g} FLOP"
    power_w = est.hardware.gpu_power_w if est.hardware is not None else None
    lines = [
        f"plan: {flops} on {p.gpu_count:,} x {p.gpu_model}",
        f"  throughput       {p.peak_flops / 1e12:g} TFLOP/s {p.precision} peak per GPU x "
        f"MFU {p.mfu:g}",
        f"  time             {p.days:,.1f} days ({p.hours:,.1f} h)",
        f"  GPU-hours        {p.gpu_hours:,.0f}",
    ]
    if power_w is not None:
        kw = p.gpu_count * power_w / 1000
        power = f"{kw / 1000:,.3g} MW" if kw >= 1000 else f"{kw:,.3g} kW"
        lines.append(f"  GPU power        {power} ({p.gpu_count:,} x {power_w:g} W, before PUE)")
    lines += [f"  note: {n}" for n in p.notes]
    if p.params is not None:
        lines.append("  note: FLOPs = 6 x N x D (dense transformer; Kaplan et al. 2020)")
    if not any(f.name == "mfu" and f.source == "user-supplied" for f in p.factors):
        lines.append(
            "  note: MFU 0.4 is greenml's default (large runs reach 38-46 %: Llama 3, PaLM); "
            "give --mfu for your own"
        )
    return lines


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _mass(kg: float | None) -> str:
    """``12.345 kg``, or tonnes from 10 t up."""
    if kg is None:
        return "n/a"
    return f"{kg / 1000:,.1f} t" if kg >= 10_000 else f"{kg:,.3f} kg"


def _options_text(where: list[Any], base: Estimate, per_cloud: int = 3) -> list[str]:
    """Each cloud's cheapest regions and its lowest-CO2e one; the overall cheapest and
    lowest-CO2e place."""
    first = where[0]
    n = base.hardware.gpu_count if base.hardware is not None else 0
    lines = [
        f"where {n:,} x {base.hardware.gpu_model if base.hardware else 'GPU'} can be rented "
        f"({first.instance.pricing}, {base.hours:,.4g} h; per cloud its {per_cloud} cheapest "
        "regions and its lowest-CO2e one):"
    ]
    shown: list[Any] = []
    for provider in sorted({o.provider for o in where}):
        mine = [o for o in where if o.provider == provider]
        pick = mine[:per_cloud]
        greenest = _greenest(mine)
        if greenest is not None and greenest not in pick:
            pick.append(greenest)
        shown += pick
    for o in shown:
        lines.append(
            f"  {o.location:<26} {o.instances:>6,} x {o.instance.instance_type:<26} "
            f"{o.instance.usd_per_hour:>9,.4g} USD/h  {_money(o.cost_usd):>16} USD  "
            f"{_mass(o.co2e_kg):>12} CO2e  (price as of {o.instance.as_of.isoformat()})"
        )
    cheap = where[0]
    lines.append(
        f"cheapest: {cheap.location} ({cheap.instances:,} x {cheap.instance.instance_type}), "
        f"{_money(cheap.cost_usd)} USD"
    )
    greenest = _greenest(where)
    if greenest is not None:
        lines.append(
            f"lowest CO2e: {greenest.location} ({greenest.instances:,} x "
            f"{greenest.instance.instance_type}), {_mass(greenest.co2e_kg)}"
        )
    lines.append(
        f"({len(where)} regions sell it; --format json lists them all, with each price's source)"
    )
    return lines


def _greenest(where: list[Any]) -> Any:
    known = [o for o in where if o.co2e_kg is not None]
    return min(known, key=lambda o: (o.co2e_kg, o.cost_usd)) if known else None


def _stale_lines(where: list[Any]) -> list[str]:
    """One line per provider whose prices shown are stale."""
    import datetime

    from greenml.factors.prices import staleness

    today = datetime.date.today()
    stale: dict[str, str] = {}
    for o in where:
        why = staleness(o.instance, today)
        if why is not None:
            stale.setdefault(o.provider, why)
    return [
        f"warning: {provider} prices are {why}: check the provider's price page, or refresh "
        "them with greenml tables import-prices"
        for provider, why in sorted(stale.items())
    ]


def _greenest(where: list[Any]) -> Any:
    known = [o for o in where if o.co2e_kg is not None]
    return min(known, key=lambda o: (o.co2e_kg, o.cost_usd)) if known else None


@main.command()
@click.option(
    "--journal-dir",
    default=None,
    help="Folder of journals. Default: the journal_dir setting (.greenml/journal).",
)
@click.option(
    "--tracking-uri",
    default=None,
    help="Send to this MLflow store instead of the one each run was logging to.",
)
@click.option(
    "--include-local",
    is_flag=True,
    help="Also send runs recorded with log_to_mlflow=False.",
)
@click.option(
    "--prune",
    "prune_now",
    is_flag=True,
    help="Remove every fully delivered journal now (default: those older than 30 days).",
)
@click.option("--keep", is_flag=True, help="Remove no journal, however old.")
def sync(
    journal_dir: str | None,
    tracking_uri: str | None,
    include_local: bool,
    prune_now: bool,
    keep: bool,
) -> None:
    """Send journal records that MLflow does not have (safe to run again).

    A run that also had the directory sink first gets the records its folder missed.
    Then journals that are fully delivered (every record with every target, the run
    ended, and the store confirms it has the run) are removed once they are 30 days old,
    or at once with --prune; a journal with anything unsent is never removed."""
    from greenml import config
    from greenml.errors import ConfigError
    from greenml.sinks.sync import PRUNE_AFTER_DAYS, prune, sync_all

    if prune_now and keep:
        raise click.UsageError("--prune and --keep contradict each other: give one")
    if tracking_uri is not None:
        from greenml.sinks.mlflow import tracking_uri_problem

        problem = tracking_uri_problem(
            tracking_uri, "to send each run to the store it was logging to"
        )
        if problem is not None:
            raise click.BadParameter(problem, param_hint="--tracking-uri")
    if journal_dir is not None and (not journal_dir.strip() or not os.path.isdir(journal_dir)):
        raise click.BadParameter(
            f"{journal_dir!r} is not a folder: give the folder the runs' journals are in "
            "(the journal_dir setting; default .greenml/journal)",
            param_hint="--journal-dir",
        )

    if journal_dir is None:
        try:
            journal_dir = config.resolve({}).journal_dir
        except ConfigError as e:
            raise click.UsageError(str(e)) from e
    results = sync_all(journal_dir, tracking_uri=tracking_uri, include_local=include_local)
    if not results:
        click.echo(f"no journals in {journal_dir}")
        return
    failed = 0
    for r in results:
        name = r.path.name
        for number, why in r.bad_lines:
            click.echo(f"{name}: line {number} skipped: {why}")
        for note in dict.fromkeys(r.notes):
            click.echo(f"{name}: note: {note}")
        if r.folder_error:
            failed += 1
            click.echo(
                f"{name}: not written to the directory sink: {r.folder_error}; "
                f"{r.folder_sent} record(s) written"
            )
        elif r.folder_sent:
            click.echo(
                f"{name}: wrote {r.folder_sent} record(s) to the directory sink at {r.folder}"
            )
        if r.unreachable:
            failed += 1
            click.echo(f"{name}: not sent: {r.error}")
        elif r.error:
            failed += 1
            click.echo(f"{name}: FAILED after {r.sent} record(s) to {r.tracking_uri}: {r.error}")
        elif r.refused:
            failed += 1
            click.echo(f"{name}: refused: {r.skipped}")
        elif r.skipped:
            click.echo(f"{name}: skipped: {r.skipped}")
        elif r.sent or r.ended_killed:
            ended = "; ended as KILLED (no summary: the process died)" if r.ended_killed else ""
            click.echo(
                f"{name}: sent {r.sent} record(s) to run {r.run_id} at {r.tracking_uri}{ended}"
            )
        elif r.unconfirmed:
            click.echo(
                f"{name}: up to date by its marks ({r.already} record(s) sent); {r.unconfirmed}"
            )
        else:
            click.echo(f"{name}: up to date ({r.already} record(s) already in MLflow)")
    if not keep:
        pruned = prune(
            journal_dir, results, older_than_days=None if prune_now else PRUNE_AFTER_DAYS
        )
        for p in pruned:
            if p.removed:
                click.echo(f"{p.path.name}: removed (fully delivered)")
            elif prune_now:
                click.echo(f"{p.path.name}: kept: {p.why}")
    if failed:
        raise SystemExit(1)


@main.group()
def tables() -> None:
    """The shipped factor tables, their sources, years and licences."""


_TABLES = {
    "grid": "grid intensity per country / US state / Canadian province / Nordic zone / "
    "Chinese province (CodeCarbon's data: OWID/Ember CC BY 4.0, EPA eGRID, ENTSO-E, MEE)",
    "regions": "cloud region -> grid zone (provider documentation)",
    "gcp-carbon": "Google's per-region grid intensity and CFE% (region-carbon-info, Apache-2.0)",
    "pue": "default PUE per provider (provider reports, Uptime Institute)",
    "prices": "on-demand and spot GPU instance prices of AWS, Google Cloud and Azure "
    "(SkyPilot catalog of the public price lists, with as_of dates)",
    "gpus": "GPU board power (TDP) and the names NVML reports (NVIDIA datasheets)",
    "embodied": "embodied carbon of a server and of a GPU, and their lifetime "
    "(Cloud Carbon Footprint, Apache-2.0)",
}
#: The options each table takes (the others are errors, not silently ignored).
_TABLE_OPTIONS = {
    "grid": ("zone",),
    "regions": ("provider",),
    "pue": ("provider",),
    "prices": ("provider",),
}
#: The table's file (its name in a --tables-dir folder); grid is CodeCarbon's, not a file.
_TABLE_FILES = {
    "regions": "regions",
    "gcp-carbon": "gcp_carbon",
    "pue": "pue",
    "prices": "prices",
    "gpus": "gpus",
    "embodied": "embodied",
}


@tables.command("list")
def tables_list() -> None:
    """List the tables, with the file name each has in a --tables-dir folder."""
    from greenml.factors.tables import FILES

    for name, what in _TABLES.items():
        file = FILES[_TABLE_FILES[name]] if name in _TABLE_FILES else "(CodeCarbon's)"
        click.echo(f"{name:<11} {file:<22} {what}")


@tables.command("import-prices")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["skypilot"]))
@click.argument("catalog", metavar="FILE.csv", type=click.Path(dir_okay=False))
@click.option(
    "--provider",
    type=click.Choice(["aws", "gcp", "azure"], case_sensitive=False),
    default=None,
    help="The file's cloud (default: told from its columns).",
)
@click.option(
    "--tables-dir",
    default=None,
    help="Your tables folder (default: the tables_dir setting); instance_prices.csv is "
    "written there.",
)
@click.option(
    "--as-of",
    default=None,
    help="The date the prices were read, YYYY-MM-DD (default: the file's modification date).",
)
@click.option("--source", default=None, help="Where the file came from (its URL), for citation.")
@click.option(
    "--family",
    "families",
    multiple=True,
    help="Only these instance families (repeat: --family p5 --family g6e). Default: every "
    "instance with a GPU.",
)
def tables_import_prices(
    fmt: str,
    catalog: str,
    provider: str | None,
    tables_dir: str | None,
    as_of: str | None,
    source: str | None,
    families: tuple[str, ...],
) -> None:
    """Refresh GPU instance prices from a downloaded SkyPilot catalog file.

    \b
    Download a cloud's file from github.com/skypilot-org/skypilot-catalog
    (catalogs/v8/aws/vms.csv, catalogs/v8/gcp/vms.csv, catalogs/v6/azure/vms.csv), then:
      greenml tables import-prices skypilot vms.csv --tables-dir my-tables
    On-demand and spot prices per region are written to my-tables/instance_prices.csv,
    replacing that cloud's rows of an earlier import and keeping your own rows.
    """
    import datetime

    from greenml import config
    from greenml.errors import ConfigError
    from greenml.factors.skypilot import import_into

    try:
        if tables_dir is None:
            tables_dir = config.resolve({}).tables_dir
        if tables_dir is None:
            raise ConfigError(
                "no tables folder: give --tables-dir <folder> (or set tables_dir in "
                "greenml.toml, or GREENML_TABLES_DIR)"
            )
        if not tables_dir.strip():
            raise ConfigError(f"--tables-dir {tables_dir!r} is empty: give a folder")
        if os.path.exists(tables_dir) and not os.path.isdir(tables_dir):
            raise ConfigError(f"--tables-dir {tables_dir!r} is a file: give a folder")
        day = None
        if as_of is not None:
            try:
                day = datetime.date.fromisoformat(as_of)
            except ValueError:
                raise ConfigError(f"--as-of {as_of!r} is not a date: give YYYY-MM-DD") from None
        done = import_into(
            catalog,
            tables_dir,
            provider=provider.lower() if provider else None,
            as_of=day,
            source=source,
            families=families or None,
        )
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    imp = done.imported
    kinds = {k: sum(1 for r in imp.rows if r["pricing"] == k) for k in ("on-demand", "spot")}
    instances = len({r["instance_type"] for r in imp.rows})
    regions = len({r["region"] for r in imp.rows})
    click.echo(
        f"{done.path}: {kinds['on-demand']} on-demand and {kinds['spot']} spot {imp.provider} "
        f"prices ({instances} instance types in {regions} regions, as of "
        f"{imp.rows[0]['as_of']}); replaced {done.replaced} rows of an earlier import, kept "
        f"{done.kept} others"
    )
    if done.yours_won:
        click.echo(f"  {done.yours_won} of your own rows were kept over the catalog's")
    for reason, n in sorted(imp.skipped.items()):
        click.echo(f"  left out: {n} x {reason}")
    for warning in done.warnings:
        click.echo(f"warning: {warning}", err=True)


@tables.command("show")
@click.argument("table", type=click.Choice(list(_TABLES)))
@click.option(
    "--zone",
    default=None,
    help="grid: the zone (FR, US-CA, SE-3...) or a cloud region (aws:us-east-1).",
)
@click.option("--provider", default=None, help="regions, pue, prices: one provider's rows.")
@click.option(
    "--tables-dir",
    default=None,
    help="Show your own tables from this folder (as `greenml estimate --tables-dir` reads them).",
)
def tables_show(table: str, zone: str | None, provider: str | None, tables_dir: str | None) -> None:
    """Show rows of a table, with their provenance."""
    from greenml.errors import ConfigError
    from greenml.factors.tables import tables as make_tables

    given = {"zone": zone, "provider": provider}
    for option, value in given.items():
        if value is not None and option not in _TABLE_OPTIONS.get(table, ()):
            takers = [t for t, options in _TABLE_OPTIONS.items() if option in options]
            raise click.UsageError(
                f"--{option} does not apply to `tables show {table}`; it selects rows of "
                f"{', '.join(takers)}"
            )
    voice = _cli_voice(
        click.get_current_context().command,
        location="--zone",
        grid_intensity_g_per_kwh="greenml estimate --grid-intensity",
    )
    try:
        t = make_tables(tables_dir, voice=voice)
        t.validate()
        rows = _table_rows(table, zone, provider, t, voice)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    for row in rows:
        click.echo(row)


def _grid_line(g: Any) -> str:
    return (
        f"{g.zone}: {g.g_per_kwh:.1f} g/kWh ({g.basis}, {g.year}) source: {g.source}; "
        f"licence: {g.licence}" + (f"; {g.note}" if g.note else "")
    )


def _grid_rows(zone: str | None, t: Any, voice: Voice) -> list[str]:
    from greenml.errors import ConfigError
    from greenml.factors.grid import zone_intensity

    if zone is None:
        raise click.UsageError(
            "tables show grid needs --zone: a zone (--zone FR, --zone US-CA, --zone SE-3) or "
            "a cloud region (--zone aws:us-east-1)"
        )
    if not zone.strip():
        raise click.UsageError(f"--zone {zone!r} is empty: give a zone (FR) or a cloud region")
    if ":" not in zone:
        try:
            return [_grid_line(zone_intensity(zone, voice=voice))]
        except ConfigError as e:
            raise ConfigError(f"{voice.given('location', zone)}: {e}") from None
    from greenml.factors.location import parse

    loc = parse(zone, regions=t.regions(), voice=voice)
    lines = [
        f"{loc.provider}:{loc.region} draws from grid zone {loc.zone} (tables show regions)",
        _grid_line(zone_intensity(loc.zone, voice=voice)),
    ]
    own = t.gcp_carbon().get(loc.region) if loc.provider == "gcp" else None
    if own is not None:
        lines.append(
            f"gcp:{own.region}: {own.grid_intensity_g_per_kwh} g/kWh, CFE {own.cfe_percent}% "
            f"({own.year}) [{own.source}; {own.licence}]; Google's own figure, which greenml "
            f"uses for gcp:{own.region} rather than the zone's"
        )
    return lines


def _provider_rows(
    table: str, provider: str | None, rows: list[tuple[str, str]], valid: tuple[str, ...], t: Any
) -> list[str]:
    """The lines of ``rows`` (provider, line) of ``provider`` (all when None); an unknown
    provider is an error and a known one without rows says so."""
    if provider is None:
        return [line for _, line in rows]
    wanted = provider.strip().lower()
    if wanted not in valid:
        raise click.UsageError(
            f"--provider {provider!r} is not a provider of `tables show {table}`; use one of "
            f"{', '.join(sorted(valid))}"
        )
    found = [line for p, line in rows if p == wanted]
    if found:
        return found
    from greenml.factors.tables import FILES

    name = FILES[_TABLE_FILES[table]]
    where = t.path(_TABLE_FILES[table]) or f"the shipped {name}"
    present = sorted({p for p, _ in rows})
    return [f"no {wanted} rows in {where} (it has {', '.join(present) or 'no rows'})"]


def _table_rows(
    table: str, zone: str | None, provider: str | None, t: Any, voice: Voice
) -> list[str]:
    if table == "grid":
        return _grid_rows(zone, t, voice)
    if table == "regions":
        from greenml.factors.regions import PROVIDERS as REGION_PROVIDERS

        rows = [
            (
                r.provider,
                f"{r.provider}:{r.region} -> {r.zone} ({r.city or r.country}) [{r.source}, "
                f"{r.source_year}; {r.licence}]",
            )
            for r in t.regions().values()
        ]
        return _provider_rows(table, provider, rows, REGION_PROVIDERS, t)
    if table == "gcp-carbon":
        return [
            f"gcp:{c.region}: {c.grid_intensity_g_per_kwh} g/kWh, CFE {c.cfe_percent}% "
            f"({c.year}) [{c.source}; {c.licence}]"
            for c in t.gcp_carbon().values()
        ]
    if table == "pue":
        from greenml.factors.pue import PROVIDERS as PUE_PROVIDERS

        rows = [
            (r.provider, f"{r.provider} ({r.region}): {r.pue} ({r.year}) [{r.source}; {r.licence}]")
            for r in t.pue().values()
        ]
        return _provider_rows(table, provider, rows, PUE_PROVIDERS, t)
    if table == "gpus":

        def peaks(g: Any) -> str:
            given = [
                f"{name} {tflops:g}"
                for name, tflops in (
                    ("BF16", g.bf16_dense_tflops),
                    ("FP16", g.fp16_dense_tflops),
                    ("FP8", g.fp8_dense_tflops),
                )
                if tflops is not None
            ]
            if not given:
                return ""
            return f"; dense tensor peak {', '.join(given)} TFLOPS per GPU [{g.flops_source}]"

        return [
            f"{g.model}: {g.tdp_w:g} W board power, {g.form_factor}, {g.memory_gb:g} GB; also "
            f"called {', '.join(g.aliases) or '-'} ({g.year}) [{g.source}; {g.licence}]" + peaks(g)
            for g in t.gpus()
        ]
    if table == "embodied":
        what = {"server_base": "per server, without its GPUs", "gpu": "per GPU card"}
        return [
            f"{i.item}: {i.kg_co2e:g} kgCO2e {what.get(i.item, '')}, lifetime "
            f"{i.lifetime_years:g} years ({i.year}) [{i.source}; {i.licence}]"
            for i in t.embodied().values()
        ]
    from greenml.factors.prices import PROVIDERS as PRICE_PROVIDERS

    rows = [
        (
            p.provider,
            f"{p.provider}:{p.region} {p.instance_type}: {p.gpu_count} x {p.gpu_model}, "
            f"{p.usd_per_hour} USD/h {p.pricing}, as of {p.as_of} [{p.source}; {p.licence}]",
        )
        for p in t.prices()
    ]
    return _provider_rows(table, provider, rows, PRICE_PROVIDERS, t)


@main.group("import")
def import_() -> None:
    """Bring runs measured by other tools into MLflow, with greenml's names."""


@import_.command("codecarbon")
@click.argument("csv_file", metavar="EMISSIONS_CSV")
@click.option(
    "--experiment",
    default=None,
    help="MLflow experiment for every run. Default: each row's CodeCarbon project_name.",
)
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow store to import into. Default: MLFLOW_TRACKING_URI, else MLflow's local "
    "store (sqlite:///mlflow.db in this folder).",
)
@click.option(
    "--timezone",
    "timezone",
    default=None,
    help="IANA time zone (UTC, Europe/Paris...) of timestamps written without a UTC offset, "
    "as CodeCarbon writes them: the local time of the machine it ran on. Default: this "
    "machine's.",
)
def import_codecarbon(
    csv_file: str, experiment: str | None, tracking_uri: str | None, timezone: str | None
) -> None:
    """Turn CodeCarbon's emissions.csv into MLflow runs with greenml's names.

    One run per CodeCarbon run (the rows a run flushed are its time series), tagged
    greenml.measurement=imported, so that `greenml report` counts it. Every row is checked
    before anything is imported; importing the same file again creates nothing new."""
    from greenml.errors import ConfigError, GreenMLError
    from greenml.importers.codecarbon import import_codecarbon as run_import
    from greenml.importers.codecarbon import parse_timezone

    try:
        parse_timezone(timezone)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--timezone") from e
    try:
        result = run_import(
            csv_file, experiment=experiment, tracking_uri=tracking_uri, timezone=timezone
        )
    except GreenMLError as e:
        raise click.ClickException(str(e)) from e
    for line in result.describe():
        click.echo(line)


def _add_report() -> None:
    from greenml.report.command import report

    main.add_command(report)


_add_report()


if __name__ == "__main__":  # pragma: no cover
    main()
