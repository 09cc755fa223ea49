"""``greenml report``: the ESG summary of a period's MLflow runs.

- :func:`load_runs` (:mod:`.collect`): MLflow runs -> a pandas DataFrame, one row per run;
- :func:`summarize`: the DataFrame -> the Summary, one JSON-ready dict;
- :func:`render`: the Summary as HTML, Markdown, CSV or JSON.

Importing this package is cheap: pandas, mlflow and matplotlib are imported only inside the
functions that need them.
"""

from __future__ import annotations

from greenml.report.collect import load_runs
from greenml.report.render import render
from greenml.report.summarize import summarize

__all__ = ["load_runs", "render", "summarize"]
