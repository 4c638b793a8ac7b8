"""`capsim sensitivity` and `capsim solve`: thin commands over simulator.sensitivity and simulator.solve
(docs/sensitivity.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..output import refuse_existing
from .options import (
    DEVICE,
    SEED,
    lead_refusing,
    nothing_written,
    one_scenario,
    output_options,
    progress_bar,
    run_options,
    user_errors,
)


@click.command("sensitivity")
@click.argument("scenario", type=click.Path())
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="A per-draw figure: p_outperform, excess_median or <asset>_var95 (repeatable; default: all).",
)
@click.option(
    "--horizon",
    "horizons",
    multiple=True,
    type=click.IntRange(min=1),
    help="A horizon in months (repeatable; default: every report horizon of the file).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=2),
    default=512,
    show_default=True,
    help="Base samples N, a power of two: N (2F + 2) parameter draws for F fields.",
)
@click.option(
    "--vary",
    multiple=True,
    metavar="FIELD=LO:HI",
    help="Bring a point field in as a factor, uniform on [LO, HI] (repeatable).",
)
@click.option(
    "--draw-paths",
    type=click.IntRange(min=2),
    default=None,
    help="Paths per parameter draw, a power of two from 8 to 16,384 (default 256).",
)
@SEED
@DEVICE
@output_options(
    "Output folder (default results/<name>-sensitivity).", json_help="Print the indices as JSON instead of a table."
)
@user_errors
def sensitivity_cmd(scenario, metrics, horizons, samples, vary, draw_paths, seed, device, out, force, as_json, quiet):
    """First-order and total Sobol indices of each uncertain field for the per-draw figures.

    Writes OUT/sensitivity.csv (field, metric, horizon, S1 and ST with 95% intervals, noise share),
    OUT/tornado.csv and OUT/tornado.png (each field from its 5% to its 95% quantile, the others at their
    medians) and OUT/meta.json.
    """
    from ..sensitivity import SensitivityError, sensitivity

    sc = one_scenario(scenario)
    ranges = field_ranges(vary, "--vary", SensitivityError)
    out = Path(out or Path("results") / f"{sc.name}-sensitivity")
    refuse_existing(out, force)
    bar, callback = progress_bar(1, quiet, "draws")
    progress = None
    if callback is not None:
        task = bar.tasks[0].id

        def progress(done, total):
            bar.update(task, total=total)
            callback(done)

    with nothing_written(out), bar:
        res = sensitivity(
            sc,
            samples,
            seed,
            metrics=list(metrics),
            horizons=list(horizons),
            vary=ranges,
            draw_paths=draw_paths,
            device=device,
            progress=progress,
        )
    res.save(out, force=force)
    if as_json:
        click.echo(res.table.to_json(orient="records", indent=2))
    elif not quiet:
        shown = ["field", "metric", "horizon_months", "S1", "S1_low", "S1_high", "ST", "ST_low", "ST_high"]
        shown.append("noise_share")
        click.echo(res.table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        m = res.meta
        click.echo(
            f"{m['plan_draws']:,} draws of {m['draw_paths']:,} paths (N = {m['samples']}) + {m['tornado_draws']:,} "
            f"tornado draws, {m['wall_seconds']:.1f} s; wrote {out}/"
        )


@click.command("solve")
@click.argument("scenario", type=click.Path())
@click.option(
    "--set",
    "sets",
    multiple=True,
    required=True,
    metavar="FIELD=LO:HI",
    help="A field and the range to search (once; or two or three fields with distributions: the most "
    "plausible crossing).",
)
@click.option(
    "--metric",
    default="p_outperform",
    show_default=True,
    help="p_outperform, p_outperform_count or <asset>_p_loss, at the horizon.",
)
@click.option("--target", type=float, default=0.5, show_default=True, help="The value the metric should cross.")
@run_options(out_help="Output folder (default results/<name>-solve).")
@user_errors
def solve_cmd(scenario, sets, metric, target, run, out, force, as_json, quiet):
    """Reverse stress: the value of FIELD in [LO, HI] at which the metric crosses the target (common random
    numbers), with an interval; or the most plausible point of two or three fields where it does.

    Writes OUT/solve.csv (one row per run of the search), OUT/solve.png and OUT/meta.json (with the answer).
    """
    from ..solve import SolveError, solve

    sc = one_scenario(scenario)
    ranges = field_ranges(sets, "--set", SolveError)
    out = Path(out or Path("results") / f"{sc.name}-solve")
    lead = lead_refusing(out, force)
    bar, callback = progress_bar(10, quiet or not lead, "runs")
    with nothing_written(out), bar:
        res = solve(sc, ranges, metric, target, **run._asdict(), progress=callback)
    if not lead:
        return
    res.save(out, force=force)
    if as_json:
        click.echo(json.dumps(res.answer, indent=2))
    elif not quiet:
        click.echo(res.table.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        click.echo(describe(res.meta))
        click.echo(f"wrote {out}/")


def describe(meta: dict) -> str:
    """The answer of a solve in a sentence."""
    a, metric, t, h = meta["answer"], meta["metric"], meta["target"], meta["horizon_months"]
    if "crossed" in a and not a["crossed"]:
        return (
            f"{metric} at {h} months does not cross {t:g} for {a['field']} in its range: {a['metric_at_low']:.4f} "
            f"(SE {a['se_at_low']:.4f}) at the low end, {a['metric_at_high']:.4f} (SE {a['se_at_high']:.4f}) at the "
            "high end"
        )
    if "crossed" in a:
        note = "" if a["converged"] else " (not within one SE of the target after the runs allowed)"
        return (
            f"{metric} at {h} months crosses {t:g} at {a['field']} = {a['value']:.5g} "
            f"(95% interval {a['low']:.5g} .. {a['high']:.5g}){note}"
        )
    where = ", ".join(f"{f} = {v:.5g} (z {a['normal_scores'][f]:+.2f})" for f, v in a["fields"].items())
    found = "most plausible crossing" if a["found"] else "no crossing found; closest point reached"
    return (
        f"{found}: {where}; distance {a['distance']:.3f} from the medians; {metric} {a['metric']:.4f} "
        f"(SE {a['metric_se']:.4f})"
    )


def field_ranges(texts, flag: str, error) -> dict[str, tuple[float, float]]:
    """The FIELD=LO:HI values of a repeatable ``flag`` as {field: (LO, HI)}; ``error`` (a ``CapsimError``) when a
    field is given twice."""
    from ..sensitivity import parse_vary

    ranges = {}
    for text in texts:
        field, lo, hi = parse_vary(text)
        if field in ranges:
            raise error(f"{field}: given twice; give each {flag} field once")
        ranges[field] = (lo, hi)
    return ranges
