"""The simulating commands: run, batch, sweep, compare and blend (thin commands over simulator.run, .batch,
.sweep, .compare and .blend)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..output import refuse_existing
from ..scenario import load_scenario
from ..shipped import load_scenarios, scenario_files
from .options import (
    NATURAL,
    WIDE,
    UserError,
    echo_dropped,
    echo_scenario_warnings,
    interrupted_code,
    is_lead,
    lead_refusing,
    nothing_written,
    one_scenario,
    print_summary,
    progress_bar,
    resume_command,
    run_options,
    runs_progress,
    user_errors,
)


def simulate(*args, **kwargs):
    """``simulator.run.simulate``, imported when a command simulates."""
    from ..run import simulate as run_simulate

    return run_simulate(*args, **kwargs)


@click.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path())
@run_options(out_help="Output folder (default results/<name>; with several scenarios, OUT/<name>).")
@WIDE
@user_errors
def run(scenarios, run, out, force, as_json, quiet, wide):
    """Simulate scenario files, print a summary and write a results folder for each.

    Several hosts: start the same command on every host with --coordinator/--num-processes/--process-id
    (or JAX's JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID); each simulates its share of the
    path blocks, and process 0 prints and writes the merged result.
    """
    lead = is_lead()
    loaded = load_scenarios(scenarios)
    if lead:
        echo_scenario_warnings(loaded)
    outs = [Path(out) if out and len(loaded) == 1 else Path(out or "results") / sc.name for sc in loaded]
    if len(set(outs)) < len(outs):
        raise UserError(
            "two scenarios share a name and would write the same folder: "
            + ", ".join(sorted({str(o) for o in outs if outs.count(o) > 1}))
        )
    for o in outs:  # refuse before spending any time simulating
        if lead:
            refuse_existing(o, force)
    records = []
    for sc, o in zip(loaded, outs):
        bar, callback = progress_bar(run.n_paths, quiet or not lead, sc.name)
        with bar:
            res = simulate(sc, **run._asdict(), progress=callback)
        if not lead:
            continue
        res.save(o, force=force)
        if as_json:
            records += json.loads(res.summary().to_json(orient="records"))
        elif not quiet:
            print_summary(res, wide)
            click.echo(f"wrote {o}/")
    if as_json and lead:
        click.echo(json.dumps(records, indent=2))


@click.command("batch")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@run_options(out_help="Output folder (default results/batch).")
@click.option(
    "--resume",
    is_flag=True,
    help="Keep each scenario whose folder is complete and made with the same file, seed, paths, horizon, "
    "precision, method and version; run the rest; rebuild the combined files.",
)
@click.option(
    "--shard",
    metavar="I/N",
    default=None,
    help="Run only the scenarios whose position in the list sorted by name is I mod N (N machines sharing "
    "OUT); finished folders are kept. A final --resume run writes the combined files.",
)
@user_errors
def batch_cmd(paths, run, out, force, as_json, quiet, resume, shard):
    """Simulate many scenarios (files, folders, shipped names) in one process with one seed.

    Writes OUT/<name>/ for each (the folder `run` writes), OUT/summary.csv and OUT/summary.json (every
    scenario's rows) and OUT/batch.json (the manifest). Exit 1 if a scenario failed while running; Ctrl-C
    exits 130 and prints the command that resumes.
    """
    from ..batch import batch, parse_shard

    out = Path(out or "results/batch")
    lead = is_lead()
    if lead:
        echo_scenario_warnings(load_scenarios(paths))
    bar, callback = runs_progress(run.n_paths, quiet or not lead, "scenarios")
    try:
        with bar:
            report = batch(
                paths,
                out,
                **run._asdict(),
                resume=resume,
                force=force,
                shard=parse_shard(shard) if shard else None,
                progress=callback,
                on_entry=None if quiet or as_json or not lead else print_entry,
            )
    except KeyboardInterrupt as exc:
        entries = exc.report.entries if hasattr(exc, "report") else []
        done = [e.name for e in entries if e.status == "done"]
        again = resume_command("batch", paths, run, out, ["--shard", shard] if shard else ["--resume"])
        click.echo(
            f"interrupted: {len(done)} of {len(entries)} scenarios done"
            + (f" ({', '.join(done)})" if done else "")
            + f"; finished folders in {out}/ are kept. Resume with:\n  {again}",
            err=True,
        )
        sys.exit(interrupted_code(exc))
    if not lead:
        return
    failed = report.with_status("failed")
    if as_json:
        click.echo(report.summary().to_json(orient="records", indent=2))
    elif not quiet:
        click.echo(f"wrote {out}/ ({report.manifest.name}" + (", summary.csv, summary.json)" if not shard else ")"))
    for e in failed:
        click.echo(f"failed: {e.name} ({e.file}): {e.error}", err=True)
    if failed:
        sys.exit(1)


def print_entry(e) -> None:
    """A batch scenario's line as it is kept, done or failed, flushed at once (standard output may be a pipe)."""
    wall = f"{e.wall_seconds:.1f} s" if e.wall_seconds is not None else ""
    status = "kept" if e.kept else e.status
    click.echo(f"{status:<7} {e.name:<24} {wall:>9}  {e.file}")
    sys.stdout.flush()


@click.command("sweep")
@click.argument("scenario", type=click.Path())
@click.option(
    "--set",
    "sets",
    multiple=True,
    required=True,
    metavar="FIELD=START:STOP:COUNT|FIELD=V1,V2,...",
    help="A field to vary, by its dotted path (regimes.expansion.drift.small, rates.path.12, "
    "phases.0.regimes.slowdown.next.recession, start.expansion, ...): COUNT evenly spaced values from START "
    "to STOP, or a list. Once or twice (a grid). An entry of a probability row rescales the others.",
)
@run_options(out_help="Output folder (default results/<name>-sweep).")
@user_errors
def sweep_cmd(scenario, sets, run, out, force, as_json, quiet):
    """Vary one or two fields of a scenario over a grid, every point with the same seed.

    Every point is validated before any runs. Writes OUT/sweep.csv and OUT/sweep.json (one row per point and
    report horizon: the swept fields, then the summary columns), OUT/sweep.png and OUT/meta.json.
    """
    from ..sweep import SweepError, parse_set, sweep

    sc = one_scenario(scenario)
    fields = dict(parse_set(text) for text in sets)
    if len(fields) < len(sets):
        raise SweepError("a field is given twice: give each --set field once")
    out = Path(out or Path("results") / f"{sc.name}-sweep")
    lead = lead_refusing(out, force)
    bar, callback = runs_progress(run.n_paths, quiet or not lead, "points")
    with nothing_written(out), bar:
        res = sweep(sc, fields, **run._asdict(), progress=callback)
    if not lead:
        return
    res.save(out, force=force)
    table = res.table()
    if as_json:
        click.echo(table.to_json(orient="records", indent=2))
    elif not quiet:
        shown = [
            *fields,
            "horizon_months",
            "p_outperform",
            "p_outperform_se",
            "excess_median",
            "excess_q25",
            "excess_q75",
        ]
        click.echo(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        click.echo(f"wrote {out}/")


def _scenario_or_folder(item: str):
    """A compare item: a result folder as it is, else a scenario file or shipped name, loaded."""
    return item if Path(item).is_dir() else load_scenario(scenario_files([item])[0])


@click.command("compare")
@click.argument("items", nargs=-1, required=True, type=click.Path())
@click.option(
    "--horizons", default=None, help="Comma-separated report horizons in months, e.g. 3,12 (default: every common one)."
)
@run_options(out_help="Output folder (default results/compare).")
@WIDE
@user_errors
def compare_cmd(items, horizons, run, out, force, as_json, quiet, wide):
    """Compare results side by side: each ITEM is a result folder (from run, batch or blend) or a scenario
    file (or shipped name), simulated here; every scenario item uses the same seed and path count (common
    random numbers), so their differences are paired.

    Prints figure x horizon by item, with the differences from the first item and their standard errors
    (paired or independent, as the table says), and writes compare.csv, compare.png, report.html and
    meta.json.
    """
    from ..compare import compare

    wanted = None
    if horizons is not None:
        try:
            wanted = sorted({int(h) for h in horizons.split(",") if h.strip()})
        except ValueError:
            raise UserError(f"--horizons {horizons!r}: give comma-separated months, e.g. --horizons 3,12") from None
    out = Path(out or Path("results") / "compare")
    lead = lead_refusing(out, force)
    objs = [_scenario_or_folder(i) for i in items]
    echo_scenario_warnings([o for o in objs if not isinstance(o, str)])
    n_sim = sum(not isinstance(o, str) for o in objs)
    bar, callback = progress_bar(run.n_paths * max(n_sim, 1), quiet or not lead, "compare")
    with bar:
        comparison = compare(objs, **run._asdict(), horizons=wanted, progress=callback)
    if not lead:
        return
    comparison.save(out, force=force)
    if as_json:
        click.echo(comparison.table().to_json(orient="records", indent=2))
    elif not quiet:
        print_comparison(comparison, wide)
        click.echo(f"wrote {out}/")


def print_comparison(comparison, wide: bool = False) -> None:
    """Figure x horizon rows, one column per item; differences from the first item with their SEs. The table
    fits the terminal (labels folded), or with ``wide`` takes its natural width."""
    from rich.console import Console
    from rich.table import Table

    from ..report import DIFF_ROWS, NO_MEAN_NOTE, ROWS, fmt, no_mean, row_labels

    items = comparison.items
    first, second = items[0].result.meta["compare"]
    value = {(r.item, r.horizon_months, r.metric): r.value for r in comparison.table().itertuples()}
    table = Table(title=f"{first} - {second}: {len(items)} items", title_justify="left")
    table.add_column("figure", no_wrap=wide)
    table.add_column("months", justify="right")
    for i in items:
        table.add_column(i.label, justify="right")
    for metric, label, kind in row_labels(ROWS + (DIFF_ROWS if len(items) > 1 else ()), comparison):
        for r, h in enumerate(comparison.horizons):
            cells = [
                fmt(value[(i.label, h, metric)], kind) + (" *" if no_mean(i, metric) else "")
                if (i.label, h, metric) in value
                else ""
                for i in items
            ]
            table.add_row(label if r == 0 else "", str(h), *cells)
        table.add_section()
    Console(width=NATURAL if wide else None).print(table)
    echo_dropped(comparison.meta.get("dropped_horizons", {}), "not a report horizon of every item")
    if any(no_mean(i, "excess_mean") for i in items):
        click.echo(NO_MEAN_NOTE)
    for i in items[1:]:
        paired = value.get((i.label, comparison.horizons[0], "diff_paired")) == 1.0
        how = "paired (common random numbers)" if paired else "independent"
        click.echo(f"{i.label} - {items[0].label}: standard errors {how}")


@click.command("blend")
@click.argument("components", nargs=-1, required=True, metavar="SCENARIO=WEIGHT...")
@click.option("--name", default=None, help="Name of the blend (default: blend- and the components' names).")
@run_options(out_help="Output folder (default results/<name>).")
@WIDE
@user_errors
def blend_cmd(components, name, run, out, force, as_json, quiet, wide):
    """The probability-weighted mixture of scenarios as one result: component i gets round(w_i n) of the
    paths (largest remainders) from its own random stream, and every figure is computed on the pooled
    paths. Weights are positive and sum to 1. Writes the folder `run` writes plus components.csv.
    """
    from ..blend import blend, default_name

    pairs = []
    for item in components:
        path, sep, weight = item.rpartition("=")
        if not sep or not path:
            raise UserError(f"{item!r}: give each component as SCENARIO=WEIGHT, e.g. soft_landing=0.6")
        try:
            w = float(weight)
        except ValueError:
            raise UserError(f"{item!r}: weight {weight!r} is not a number") from None
        pairs.append((load_scenario(scenario_files([path])[0]), w))
    echo_scenario_warnings(sc for sc, _ in pairs)
    out = Path(out or Path("results") / (name or default_name([sc for sc, _ in pairs])))
    lead = lead_refusing(out, force)
    bar, callback = progress_bar(run.n_paths, quiet or not lead, "blend")
    with bar:
        res = blend(pairs, **run._asdict(), name=name, progress=callback)
    if not lead:
        return
    res.save(out, force=force)
    if as_json:
        click.echo(res.summary().to_json(orient="records", indent=2))
    elif not quiet:
        print_summary(res, wide)
        echo_dropped(
            res.meta["dropped_horizons"],
            f"a blend reports at its components' common report months up to their common horizon "
            f"({res.meta['horizon_months']} months)",
        )
        comp = res.components()
        comp["weight"] = comp["weight"].map(lambda w: f"{w:g}")
        click.echo(comp.drop(columns=["file"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        click.echo(f"wrote {out}/")
