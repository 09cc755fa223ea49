"""The ``greenml`` command line."""

from __future__ import annotations

import json
import logging
import time

import click

from greenml._version import __version__


@click.group()
@click.version_option(__version__, prog_name="greenml")
@click.option("-v", "--verbose", is_flag=True, help="Show greenml's log messages.")
def main(verbose: bool) -> None:
    """Measure the energy, carbon and cost of ML training."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


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
    lines.append(f"measurement       {fp.measurement}")
    lines.append(f"location          {fp.location} ({fp.scope})")
    for name, ph in fp.phases.items():
        lines.append(
            f"  phase {name:<10} {ph.duration_s:8.2f} s {ph.it_energy_kwh * 1000:10.4f} Wh (IT)"
        )
    for d in fp.devices:
        lines.append(f"  {d.key:<16} {d.name[:32]:<32} {d.method:<9} {d.energy_kwh * 1000:.4f} Wh")
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
@click.option("--pue", type=float, default=None, help="Power usage effectiveness to apply.")
@click.option("--grid-intensity", "grid_intensity", type=float, default=None, help="gCO2e/kWh.")
@click.option("--price-usd-per-hour", type=float, default=None, help="Instance price, USD/h.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def demo(
    seconds: float,
    simulated_gpu: bool,
    location: str | None,
    instance_type: str | None,
    pue: float | None,
    grid_intensity: float | None,
    price_usd_per_hour: float | None,
    fmt: str,
) -> None:
    """Run a short CPU job under greenml.track() and print its footprint."""
    import contextlib

    import greenml
    from greenml.errors import ConfigError

    if seconds <= 0:
        raise click.BadParameter(f"{seconds!r}: give a duration > 0", param_hint="--seconds")
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
    try:
        with (
            sim,
            greenml.track(
                location=location,
                allow_assumed_location=location is None,
                instance_type=instance_type,
                pue=pue,
                grid_intensity_g_per_kwh=grid_intensity,
                price_usd_per_hour=price_usd_per_hour,
            ) as run,
        ):
            _workload(seconds * 0.75)
            with run.phase("eval"):
                _workload(seconds * 0.25)
    except ConfigError as e:
        raise click.UsageError(str(e)) from e
    fp = run.footprint
    if fmt == "json":
        click.echo(json.dumps(fp.to_dict(), indent=2, default=str))
    else:
        click.echo(_format(fp))


if __name__ == "__main__":  # pragma: no cover
    main()
