"""A search's report for people (``falcon report``, the dashboard's report link): pure, a
SearchState (and the offline knowledge, when at hand) in, files out.

By concern: :mod:`.summary` (the report as data, shared with the dashboard and ``falcon
status``: one search summary, one best-so-far curve), :mod:`.plots` (matplotlib PNGs, served
trials' throughput-vs-p99 curves among them) and
:mod:`.page` (the HTML page, Jinja templates under ``templates/``, and :func:`write_report`)."""

from tools.report.page import render_html, write_report
from tools.report.plots import (
    path_knobs,
    plot_kops,
    plot_pareto,
    plot_path,
    plot_progress,
    plot_served_curves,
)
from tools.report.summary import (
    PARETO_TITLE,
    Baseline,
    BestSoFar,
    ServingFigures,
    best_so_far,
    closest_to_constraints,
    comparison,
    monthly_cost,
    objective_label,
    overview,
    parse_config,
    served,
    stated_load,
    summary,
)

__all__ = ["PARETO_TITLE", "Baseline", "BestSoFar", "ServingFigures", "best_so_far", "closest_to_constraints",
           "comparison", "monthly_cost", "objective_label", "overview", "parse_config", "path_knobs", "plot_kops",
           "plot_pareto", "plot_path", "plot_progress", "plot_served_curves", "render_html", "served", "stated_load",
           "summary", "write_report"]
