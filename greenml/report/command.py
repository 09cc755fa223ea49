"""``greenml report``: the command line of :mod:`greenml.report`."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import click

from greenml.report.render import FORMATS

DEFAULT_OUTPUT = "greenml-report"


def _period(
    since: str | None, until: str | None, year: int | None
) -> tuple[dt.date | None, dt.date | None]:
    from greenml.report.collect import parse_date

    today = dt.datetime.now(dt.timezone.utc).date()
    if year is not None:
        if since or until:
            raise click.UsageError("give --year, or --since/--until, not both")
        if not 1970 <= year <= today.year:
            raise click.BadParameter(
                f"{year} is not a year from 1970 to {today.year}", param_hint="--year"
            )
        return dt.date(year, 1, 1), min(dt.date(year, 12, 31), today)
    try:
        lo = parse_date(since, flag="--since") if since else None
        hi = parse_date(until, flag="--until") if until else None
    except Exception as e:
        raise click.UsageError(str(e)) from e
    if lo is None and hi is None:
        return dt.date(today.year, 1, 1), today  # the calendar year to date
    if lo is not None and hi is not None and lo > hi:
        raise click.UsageError(f"--since {lo} is after --until {hi}: nothing to report")
    return lo, hi


def _check_uri(tracking_uri: str | None) -> None:
    """A --tracking-uri MLflow can use: not blank, and of a scheme it knows."""
    from greenml.sinks.mlflow import tracking_uri_problem

    if tracking_uri is None:
        return
    problem = tracking_uri_problem(tracking_uri, "for MLFLOW_TRACKING_URI")
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--tracking-uri")


def _check_output(output: str | None) -> None:
    """An --output whose folder exists (checked before MLflow is asked anything)."""
    if output is None or output == "-":
        return
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise click.BadParameter(
            f"{output!r}: the folder {folder} does not exist; create it or write elsewhere",
            param_hint="--output",
        )
    if os.path.isdir(output):
        raise click.BadParameter(
            f"{output!r} is a folder; give a file name (report.html)", param_hint="--output"
        )


@click.command("report")
@click.argument("run_ids", nargs=-1)
@click.option(
    "--tracking-uri",
    default=None,
    help="The MLflow store. Default: MLFLOW_TRACKING_URI, else MLflow's local default.",
)
@click.option(
    "--experiment",
    "experiments",
    multiple=True,
    help="An experiment to report on (repeat for several). Default: all.",
)
@click.option("--since", default=None, help="First day (YYYY-MM-DD, UTC), by run start.")
@click.option("--until", default=None, help="Last day (YYYY-MM-DD, UTC), included.")
@click.option(
    "--year", type=int, default=None, help="A calendar year (instead of --since/--until)."
)
@click.option(
    "--group-by",
    default="experiment",
    show_default=True,
    help="experiment, month, location, gpu_model, user or tag:<key>.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option(
    "-o",
    "--output",
    default=None,
    help="The file to write. Default: greenml-report.<format>; '-' for stdout.",
)
@click.option("--organisation", default=None, help="The organisation named in the report's header.")
@click.option(
    "--include-simulated", is_flag=True, help="Count runs measured on simulated GPUs in the totals."
)
@click.option(
    "--log-to-mlflow",
    is_flag=True,
    help="Also log the report as an artifact of a run in the 'greenml-reports' experiment.",
)
@click.option(
    "--model-card",
    is_flag=True,
    help="Print the model-card and EU AI Act statements of the RUN_IDS instead.",
)
@click.option(
    "--training-type",
    type=click.Choice(["pre-training", "fine-tuning"]),
    default=None,
    help="For --model-card (default: pre-training for one run, else what each run's tag says).",
)
def report(
    run_ids: tuple[str, ...],
    model_card: bool,
    training_type: str | None,
    **options: Any,
) -> None:
    """The ESG summary of the MLflow runs of a period: totals, ESRS E1-5 energy by source,
    dual-reported Scope 2 / Scope 3 emissions, breakdowns, data quality and every factor's
    source. With --model-card RUN_ID...: what a model card and the EU AI Act ask for."""
    from greenml.errors import GreenMLError, scrub

    tracking_uri = options["tracking_uri"]
    _check_uri(tracking_uri)
    _check_output(options["output"])
    try:
        if model_card:
            if not run_ids:
                raise click.UsageError("--model-card needs the MLflow run ids of the training")
            from greenml.report.model_card import model_card_text

            click.echo(
                model_card_text(run_ids, tracking_uri=tracking_uri, training_type=training_type)
            )
            return
        if run_ids:
            raise click.UsageError(
                f"unexpected argument(s) {' '.join(run_ids)}: run ids go with --model-card"
            )
        _report(**options)
    except GreenMLError as e:
        raise click.ClickException(str(e)) from e
    except Exception as e:
        if not type(e).__module__.startswith("mlflow"):
            raise
        # MLflow's texts quote the request URL, credentials included
        raise click.ClickException(f"MLflow refused: {scrub(str(e))}") from e


def _report(
    *,
    tracking_uri: str | None,
    experiments: tuple[str, ...],
    since: str | None,
    until: str | None,
    year: int | None,
    group_by: str,
    fmt: str,
    output: str | None,
    organisation: str | None,
    include_simulated: bool,
    log_to_mlflow: bool,
) -> None:
    from greenml.report.collect import PAGE_SIZE, load_runs
    from greenml.report.render import render
    from greenml.report.summarize import GROUPS, summarize

    if group_by not in GROUPS and not (group_by.startswith("tag:") and len(group_by) > 4):
        raise click.BadParameter(
            f"{group_by!r}: use one of {', '.join(GROUPS)} or tag:<key>", param_hint="--group-by"
        )
    lo, hi = _period(since, until, year)
    shown = [False]

    def progress(n: int) -> None:
        if n >= PAGE_SIZE:  # many runs: say how far the fetch is
            shown[0] = True
            click.echo(f"\rfetching runs from MLflow: {n}", nl=False, err=True)

    runs = load_runs(tracking_uri, list(experiments) or None, lo, hi, progress=progress)
    if shown[0]:
        click.echo("", err=True)
    summary = summarize(
        runs, group_by=group_by, organisation=organisation, include_simulated=include_simulated
    )
    text = render(summary, fmt)
    target = output or f"{DEFAULT_OUTPUT}.{fmt}"
    if target == "-":
        click.echo(text, nl=False)
    else:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    click.echo(_terminal_table(summary), err=target == "-")
    if target != "-":
        click.echo(f"report written to {os.path.abspath(target)}", err=target == "-")
    if log_to_mlflow:
        where = _log_report(tracking_uri, target, text, fmt, summary)
        click.echo(f"report logged to MLflow run {where} (experiment greenml-reports)")


def _terminal_table(s: dict[str, Any]) -> str:
    t, h = s["totals"], s["header"]
    period = f"{h['period']['since'] or '...'} to {h['period']['until'] or '...'}"
    cost = f"{t['cost_usd']:,.2f} USD" if t["cost_usd"] is not None else "n/a (no prices)"
    dq = s["data_quality"]
    lines = [
        f"greenml report, {period}: {t['runs']} run(s) in the totals",
        f"  GPU-hours            {t['gpu_hours']:,.1f}",
        f"  energy (facility)    {t['energy_mwh']:,.4f} MWh (IT {t['it_energy_mwh']:,.4f} MWh)",
        f"  CO2e location-based  {t['co2e_t']:,.4f} t",
        f"  CO2e market-based    {t['co2e_market_t']:,.4f} t",
        f"  cost                 {cost}",
    ]
    if dq["without_greenml"]:
        lines.append(
            f"  {len(dq['without_greenml'])} run(s) without greenml data (listed in the report)"
        )
    if dq["simulated"]:
        what = (
            "excluded (--include-simulated counts them)" if dq["simulated_excluded"] else "included"
        )
        lines.append(f"  {len(dq['simulated'])} simulated run(s), {what}")
    return "\n".join(lines)


def _log_report(
    tracking_uri: str | None, path: str, text: str, fmt: str, summary: dict[str, Any]
) -> str:
    from greenml.report.collect import REPORTS_EXPERIMENT
    from greenml.sinks.mlflow import absolute_uri, client_for, default_tracking_uri

    client = client_for(absolute_uri(tracking_uri or default_tracking_uri(None)))
    exp = client.get_experiment_by_name(REPORTS_EXPERIMENT)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(REPORTS_EXPERIMENT)
    h = summary["header"]
    run = client.create_run(
        exp_id, run_name=f"report {h['period']['since']} to {h['period']['until']}"
    )
    name = os.path.basename(path) if path != "-" else f"{DEFAULT_OUTPUT}.{fmt}"
    client.log_text(run.info.run_id, text, name)
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)
