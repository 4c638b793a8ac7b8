"""The `capsim` command line: thin Click commands over the library (docs/cli.md).

Exit codes: 0 success, 1 a check failed, 2 bad input or usage (a message on stderr, never a traceback).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import NamedTuple

import click

from . import __version__
from .devices import init_processes, use_compile_cache, wants_processes
from .errors import CapsimError
from .output import refuse_existing, refuse_existing_file, write_text_atomic
from .params import BLOCK_PATHS
from .scenario import ScenarioError, load_scenario
from .shipped import (
    SCHEMA_FILE,
    display_source,
    init_folder,
    load_scenarios,
    scenario_files,
    schema_text,
    shipped_files,
)

DRAWS_P = ("p_outperform_draws_q05", "p_outperform_draws_q95")
DRAWS_X = ("excess_median_draws_q05", "excess_median_draws_q95")


class UserError(click.ClickException):
    exit_code = 2


def user_errors(fn):
    """Turn the library's input errors (``CapsimError``, and only those) into exit code 2 with their message,
    its fix given as flags."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CapsimError as exc:
            raise UserError(exc.cli_message()) from None

    return wrapper


def progress_bar(total: int, quiet: bool, label: str):
    """A rich progress bar (paths done, rate, time left) on a terminal; a no-op otherwise.
    Returns (context, callback(paths_done))."""
    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext(), None
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("paths {task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=total, rate="")
    start = time.perf_counter()

    def update(done: int) -> None:
        rate = done / max(time.perf_counter() - start, 1e-9)
        bar.update(task, completed=done, rate=f"{rate:,.0f}/s")

    return bar, update


def runs_progress(n_paths: int, quiet: bool, unit: str):
    """Two rich progress bars on a terminal, over the runs (scenarios, sweep points) and over the paths of the
    current run; a no-op otherwise. Returns (context, callback(name, runs_done, runs_total, paths_done))."""
    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    runs, paths = bar.add_task(unit, total=None), bar.add_task("paths", total=n_paths)

    def update(name: str, done: int, total: int, paths_done: int) -> None:
        bar.update(runs, completed=done, total=total)
        bar.update(paths, completed=paths_done, description=f"paths of {name}")

    return bar, update


def sampler_progress(quiet: bool):
    """Progress of the NUTS sampler (``posterior.SamplerProgress``): on a terminal a rich bar (phase, iterations
    per chain, chains, divergences so far, time left); otherwise a line on stderr at every tenth of a run.
    Returns (context, callback(SamplerProgress))."""
    if quiet:
        return contextlib.nullcontext(), None
    import time

    def label(p) -> str:
        return (f"second run (target acceptance {p.target_accept})" if p.rerun else "NUTS") + f" {p.phase}"

    if not sys.stderr.isatty():
        seen = {"run": None, "next": 0, "first": (0.0, 0)}

        def line(p) -> None:
            if p.rerun != seen["run"]:  # a run starts: time left is measured from its first iteration
                seen.update(run=p.rerun, next=0, first=(time.perf_counter(), p.done))
            if p.done < seen["next"] and p.done < p.total:
                return
            seen["next"] = p.done + max(1, p.total // 10)
            t0, done0 = seen["first"]
            rate = (p.done - done0) / max(time.perf_counter() - t0, 1e-9)  # iterations a second
            left = f", about {(p.total - p.done) / rate / 60:.1f} min left" if p.done > done0 else ""
            click.echo(
                f"{label(p)}: {p.done}/{p.total} iterations in each of {p.chains} chain(s), "
                f"{p.divergences} divergence(s) so far{left}",
                err=True,
            )

        return contextlib.nullcontext(), line
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("per chain, {task.fields[chains]} chains, {task.fields[divergences]} divergence(s)"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("NUTS: compiling", total=None, chains="", divergences=0)
    seen = {"run": None}

    def update(p) -> None:
        if p.rerun != seen["run"]:
            seen["run"] = p.rerun
            bar.reset(task)
        bar.update(
            task, completed=p.done, total=p.total, description=label(p), chains=p.chains, divergences=p.divergences
        )

    return bar, update


def resume_command(command: str, arguments, run: RunOptions, out, tail: list[str]) -> str:
    """The command line that repeats a run of ``command`` with these settings, ending with ``tail``."""
    args = ["capsim", command, *map(str, arguments), "--paths", str(run.n_paths), "--seed", str(run.seed)]
    args += ["--horizon", str(run.horizon_months)] if run.horizon_months else []
    args += ["--device", run.device] if run.device != "cpu" else []
    args += ["--devices", str(run.devices)] if run.devices != "all" else []
    args += ["--precision", str(run.precision), "--method", run.method, "--out", str(out), *tail]
    return shlex.join(args)


def print_summary(res, wide: bool = False) -> None:
    """A readable table: one column per report horizon, one row per figure. By default it fits the terminal (one
    number per cell, the main figures, the label column folded where needed); ``wide``: every figure, side by
    side, at the table's natural width."""
    from rich.console import Console
    from rich.table import Table

    df = res.summary()
    first, second = (res.model.asset_keys[i] for i in res.model.compare)
    dates = [res.meta.get("as_of")] if "components" not in res.meta else [c["as_of"] for c in res.meta["components"]]
    dates = sorted({d for d in dates if d})
    table = Table(
        title=f"{res.name}: {res.meta['n_paths']:,} paths, seed {res.meta['seed']} "
        f"({res.meta['backend']}, float{res.meta['precision']}, {res.meta['wall_seconds']:.1f} s)"
        + (f"; facts as of {', '.join(dates)}" if dates else ""),
        title_justify="left",
    )
    table.add_column("figure", no_wrap=wide, min_width=14)
    for h in df["horizon_months"]:
        table.add_column(f"{h}m", justify="right", no_wrap=True)
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    undefined = set(res.meta.get("undefined_means", []))

    def add(label, fmt, col):
        mark = " *" if col in undefined else ""
        table.add_row(label + mark, *[fmt(v) + mark for v in df[col]])

    if wide:
        wide_rows(table, df, res, add, pct, first, second)
    else:
        prob = lambda v: f"{v:.3f}"  # noqa: E731
        add(f"P({first} beats {second})", prob, "p_outperform")
        add("  standard error", lambda v: f"{v:.2g}", "p_outperform_se")
        if res.model.uncertain:
            add("  draws 5%", prob, DRAWS_P[0])
            add("  draws 95%", prob, DRAWS_P[1])
        add("excess median", pct, "excess_median")
        if res.model.uncertain:
            add("  draws 5%", pct, DRAWS_X[0])
            add("  draws 95%", pct, DRAWS_X[1])
        add("excess mean", pct, "excess_mean")
        add("excess 5%", pct, "excess_q05")
        add("excess 95%", pct, "excess_q95")
        for a in res.model.asset_keys:
            table.add_section()
            add(f"{a} median", pct, f"{a}_median")
            add(f"{a} VaR95", pct, f"{a}_var95")
            add(f"{a} ES95", pct, f"{a}_es95")
            add(f"{a} P(loss)", pct, f"{a}_p_loss")
            add(f"{a} max drawdown median", pct, f"{a}_mdd_median")
        table.add_section()
        for k in res.model.regime_names:
            add(f"time in {k}", pct, f"occupancy_{k}")
    # wide: the table's natural width (it never grows past its content); else the terminal's (80 columns when
    # not a terminal, unless COLUMNS says otherwise)
    Console(width=NATURAL if wide else None).print(table)
    if not wide:
        click.echo("(--wide: every figure, with the 90% HDI, asset means and 95% drawdowns)")
    if undefined:
        click.echo(f"* {UNDEFINED_NOTE}")
    simulated = (res.meta.get("parameter_draws") or {}).get("simulated")
    if res.model.uncertain and simulated is not None and simulated < MIN_DRAWS:
        click.echo(
            f"note: the (draws 5%, 95%) intervals rest on {simulated} parameter draw(s), one per block of "
            f"{BLOCK_PATHS:,} paths; use --paths {MIN_DRAWS * BLOCK_PATHS:,} or more for at least {MIN_DRAWS}"
        )


NATURAL = 10_000  # a console this wide prints a table at its natural width
MIN_DRAWS = 20  # fewer parameter draws than this make the across-draw 5-95% interval a rough guess


def wide_rows(table, df, res, add, pct, first: str, second: str) -> None:
    """The rows of ``print_summary``'s wide table: every figure, intervals beside the values."""
    if res.model.uncertain:  # the 5-95% interval across parameter draws beside the pooled figure
        table.add_row(
            f"P({first} beats {second}) ± SE (draws 5%, 95%)",
            *[
                f"{plus_minus(p, se)} [{lo:.3f}, {hi:.3f}]"
                for p, se, lo, hi in zip(*(df[c] for c in ("p_outperform", "p_outperform_se", *DRAWS_P)))
            ],
        )
        add("excess mean", pct, "excess_mean")
        table.add_row(
            "excess median (draws 5%, 95%)",
            *[f"{pct(v)} [{pct(lo)}, {pct(hi)}]" for v, lo, hi in zip(*(df[c] for c in ("excess_median", *DRAWS_X)))],
        )
    else:
        table.add_row(
            f"P({first} beats {second})",
            *[plus_minus(p, se) for p, se in zip(df["p_outperform"], df["p_outperform_se"])],
        )
        add("excess mean", pct, "excess_mean")
        add("excess median", pct, "excess_median")
    table.add_row("excess 5% .. 95%", *[f"{pct(a)} .. {pct(b)}" for a, b in zip(df["excess_q05"], df["excess_q95"])])
    table.add_row(
        "excess 90% HDI", *[f"{pct(a)} .. {pct(b)}" for a, b in zip(df["excess_hdi90_low"], df["excess_hdi90_high"])]
    )
    for a in res.model.asset_keys:
        table.add_section()
        add(f"{a} mean", pct, f"{a}_mean")
        add(f"{a} median", pct, f"{a}_median")
        table.add_row(f"{a} VaR95 / ES95", *[f"{pct(v)} / {pct(e)}" for v, e in zip(df[f"{a}_var95"], df[f"{a}_es95"])])
        add(f"{a} P(loss)", pct, f"{a}_p_loss")
        table.add_row(
            f"{a} max drawdown median / q95",
            *[f"{pct(m)} / {pct(q)}" for m, q in zip(df[f"{a}_mdd_median"], df[f"{a}_mdd_q95"])],
        )
    table.add_section()
    for k in res.model.regime_names:
        add(f"time in {k}", pct, f"occupancy_{k}")


def echo_dropped(dropped: dict, why: str) -> None:
    """Say which report horizons of which item a table leaves out, and why."""
    for name, months in dropped.items():
        click.echo(f"note: {name}'s {', '.join(f'{h}m' for h in months)} left out: {why}")


UNDEFINED_NOTE = (
    "no mean exists with Student-t tails: these sample means jump as rare extremes arrive; read the medians, "
    "quantiles and P(beats) instead (docs/outputs.md, Means under fat tails)"
)


def echo_scenario_warnings(scenarios) -> None:
    """Print the plausibility warnings of each scenario (``Scenario.warnings``) to stderr."""
    for sc in scenarios:
        for w in sc.warnings:
            click.echo(f"warning: {w.text(display_source(sc.source))}", err=True)


def plus_minus(value: float, se: float) -> str:
    """``value ± se`` with the standard error to two significant digits and the value to as many decimals
    (at least three): 0.762 ± 0.012, 0.500978 ± 0.000033."""
    decimals = 3 if not se > 0 else max(3, 1 - math.floor(math.log10(se)))
    return f"{value:.{decimals}f} ± {se:.{decimals}f}"


class RunOptions(NamedTuple):
    """The run options of every simulating command, as ``simulate``'s keyword arguments."""

    n_paths: int
    seed: int
    horizon_months: int | None
    device: str
    devices: int | str
    precision: int
    method: str


def run_options(out_help: str | None = None):
    """The options of every command that simulates (run, batch, sweep, compare, blend), defined once.

    The command receives ``run`` (a ``RunOptions``) and, with ``out_help`` (the help of --out: its default
    differs per command), ``out``, ``force``, ``as_json`` and ``quiet``. The multi-host flags
    (--coordinator, --num-processes, --process-id, or JAX's environment variables) join the processes
    before the command runs."""
    simulation = [
        click.option(
            "--paths",
            "n_paths",
            type=click.IntRange(min=2),
            default=1_000_000,
            show_default=True,
            help="Number of simulated paths.",
        ),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True),
        click.option(
            "--horizon", type=click.IntRange(min=1), default=None, help="Horizon in months (default: the file's)."
        ),
        click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True),
        click.option(
            "--devices",
            "n_devices",
            default="all",
            show_default=True,
            help="How many devices of that backend share the paths: a number or 'all' (on a CPU: one per "
            "core). The numbers are the same whatever the count.",
        ),
        click.option("--precision", type=click.Choice(["32", "64"]), default="32", show_default=True),
        click.option(
            "--method",
            type=click.Choice(["step", "exact", "auto"]),
            default="step",
            show_default=True,
            help="step: every step simulated; exact: whole segments between report horizons drawn from "
            "their exact law (Gaussian regimes; drawdowns seen at segment ends only); auto: exact where "
            "allowed and a segment has several steps.",
        ),
    ]
    outputs = [
        click.option("--out", type=click.Path(file_okay=False), default=None, help=out_help),
        click.option("--force", is_flag=True, help="Replace an existing non-empty output folder."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table."),
        click.option("--quiet", is_flag=True, help="No progress bar and no table."),
    ]
    hosts = [
        click.option("--coordinator", default=None, help="Several hosts: HOST:PORT of process 0 (jax.distributed)."),
        click.option("--num-processes", type=click.IntRange(min=1), default=None, help="Several hosts: process count."),
        click.option(
            "--process-id", type=click.IntRange(min=0), default=None, help="Several hosts: this process's id."
        ),
    ]

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, n_paths, seed, horizon, device, n_devices, precision, method, **kwargs):
            coordinator, num_processes, process_id = (kwargs.pop(k) for k in HOST_FLAGS)
            if coordinator is not None or num_processes is not None or process_id is not None or wants_processes():
                try:
                    init_processes(coordinator, num_processes, process_id)
                except CapsimError as exc:
                    raise UserError(exc.cli_message()) from None
            run = RunOptions(n_paths, seed, horizon, device, n_devices, int(precision), method)
            return fn(*args, run=run, **kwargs)

        for option in reversed(simulation + (outputs if out_help else []) + hosts):
            wrapper = option(wrapper)
        return wrapper

    return decorate


HOST_FLAGS = ("coordinator", "num_processes", "process_id")
WIDE = click.option(
    "--wide",
    is_flag=True,
    help="Print every figure side by side at the table's full width (default: fit the terminal).",
)


def _lead() -> bool:
    """True in process 0 of a multi-process run (or the only process): the one that prints and writes."""
    import jax  # imported by the commands that simulate or fit only (`capsim --help` and `validate` start fast)

    return jax.process_index() == 0


def simulate(*args, **kwargs):
    """``simulator.run.simulate``, imported when a command simulates."""
    from .run import simulate as run_simulate

    return run_simulate(*args, **kwargs)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (as Ctrl-C raises ``KeyboardInterrupt``), so that the same clean-up
    runs: no temporary folder left, a batch's manifest up to date."""


def _terminate(signum, frame):
    raise Terminated


class Interruptible(click.Group):
    """The command group: SIGTERM is handled like Ctrl-C while a command runs; an interrupted command exits
    130 (Ctrl-C) or 143 (SIGTERM) with a line on standard error, never Click's "Aborted!" and exit 1."""

    def invoke(self, ctx):
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
            click.echo(f"interrupted by {how}: finished folders are kept, nothing half-written is left", err=True)
            raise click.exceptions.Exit(interrupted_code(exc)) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def interrupted_code(exc: BaseException) -> int:
    """The exit code of an interrupted command: 143 after SIGTERM, 130 after Ctrl-C (128 + the signal)."""
    return 143 if isinstance(exc, Terminated) or isinstance(exc.__context__, Terminated) else 130


@click.group(cls=Interruptible, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="capsim")
def main():
    """capsim: how likely small caps are to beat large caps, by how much, and at what risk."""
    use_compile_cache()


@main.command()
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
    lead = _lead()
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


@main.command("batch")
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
    from .batch import batch, parse_shard

    out = Path(out or "results/batch")
    lead = _lead()
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


@main.command("sweep")
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
    from .sweep import SweepError, parse_set, sweep

    (sc,) = load_scenarios([scenario])
    echo_scenario_warnings([sc])
    fields = dict(parse_set(text) for text in sets)
    if len(fields) < len(sets):
        raise SweepError("a field is given twice: give each --set field once")
    out = Path(out or Path("results") / f"{sc.name}-sweep")
    lead = _lead()
    if lead:
        refuse_existing(out, force)
    bar, callback = runs_progress(run.n_paths, quiet or not lead, "points")
    try:
        with bar:
            res = sweep(sc, fields, **run._asdict(), progress=callback)
    except KeyboardInterrupt as exc:
        click.echo(f"interrupted: nothing written to {out}/", err=True)
        sys.exit(interrupted_code(exc))
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


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@user_errors
def validate(paths):
    """Check scenario files (or folders of them) without simulating; a scenario's posterior file too."""
    from .uncertainty import given_draws

    bad = 0
    for f in scenario_files(paths):
        try:
            sc = load_scenario(f)
            given_draws(sc)  # reads a posterior file, checking that it fits the scenario
            click.echo(f"ok   {display_source(f)}")
            echo_scenario_warnings([sc])
        except CapsimError as exc:
            bad += 1
            click.echo(str(exc), err=True)
    if bad:
        raise UserError(f"{bad} invalid scenario file(s)")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--paths", "n_paths", type=click.IntRange(min=2), default=200_000, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
@user_errors
def check(paths, n_paths, seed, junit):
    """Run scenarios with a fixed seed on the CPU and test every `expect` entry (exit 1 on a failure)."""
    from .checks import CheckResult, evaluate, write_junit

    results: list[CheckResult] = []
    errors: dict[str, str] = {}
    for f in scenario_files(paths):
        try:
            sc = load_scenario(f)
        except ScenarioError as exc:
            errors[str(f)] = str(exc)
            click.echo(str(exc), err=True)
            continue
        echo_scenario_warnings([sc])
        if not sc.expect:
            click.echo(f"{sc.name}: no expect entries")
            continue
        res = simulate(sc, n_paths=n_paths, seed=seed, device="cpu")
        for r in evaluate(sc.name, sc.expect, res.summary()):
            results.append(r)
            click.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.scenario}: {r.name}: {r.detail}")
    if junit:
        write_junit(results, junit, errors)
    failed = sum(not r.passed for r in results)
    click.echo(
        f"{len(results) - failed} passed, {failed} failed" + (f", {len(errors)} invalid file(s)" if errors else "")
    )
    if errors:
        sys.exit(2)
    if failed:
        sys.exit(1)


def _scenario_or_folder(item: str):
    """A compare item: a result folder as it is, else a scenario file or shipped name, loaded."""
    return item if Path(item).is_dir() else load_scenario(scenario_files([item])[0])


@main.command("compare")
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
    from .compare import compare

    wanted = None
    if horizons is not None:
        try:
            wanted = sorted({int(h) for h in horizons.split(",") if h.strip()})
        except ValueError:
            raise UserError(f"--horizons {horizons!r}: give comma-separated months, e.g. --horizons 3,12") from None
    out = Path(out or Path("results") / "compare")
    lead = _lead()
    if lead:
        refuse_existing(out, force)
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

    from .report import DIFF_ROWS, NO_MEAN_NOTE, ROWS, fmt, no_mean, row_labels

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


@main.command("blend")
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
    from .blend import blend, default_name

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
    lead = _lead()
    if lead:
        refuse_existing(out, force)
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


@main.command()
def schema():
    """Print the JSON Schema of scenario files (for editors and other tools)."""
    click.echo(schema_text(), nl=False)


@main.command()
def scenarios():
    """List the scenarios shipped with capsim (run one by name: capsim run rate_cut)."""
    import shutil
    import textwrap

    width = min(100, shutil.get_terminal_size().columns)
    for f in shipped_files():
        sc = load_scenario(f)
        click.echo(
            f"{f.stem}  ({sc.name}: {sc.frequency}, {sc.horizon_months} months, regimes {', '.join(sc.regimes)})"
        )
        click.echo(textwrap.fill(sc.description, width, initial_indent="    ", subsequent_indent="    "))
    click.echo(
        f"\nfiles in {shipped_files()[0].parent}; run one with `capsim run NAME`, copy them with `capsim init DIR`"
    )


@main.command()
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@user_errors
def init(out_dir):
    """Copy the shipped scenarios and their JSON Schema into DIR (new or empty) as a starting point."""
    init_folder(out_dir)
    click.echo(f"wrote {out_dir}/: " + ", ".join(sorted(p.name for p in Path(out_dir).iterdir())))


@main.command()
def devices():
    """List the devices JAX sees."""
    import jax

    for d in jax.devices():
        click.echo(f"{d.platform}:{d.id}  {d.device_kind}")
    for platform in ("gpu",):
        try:
            jax.devices(platform)
        except RuntimeError:
            click.echo(f"no {platform} backend available")


# --------------------------------------------------------------------------------------------
# calibrate and backtest: thin commands over simulator.fit.calibrate and simulator.fit.backtest


def _split_columns(value: str | None) -> list[str] | None:
    if value is None:
        return None
    cols = [c.strip() for c in value.split(",") if c.strip()]
    if not cols:
        raise UserError(f"--columns {value!r}: give comma-separated column names, e.g. --columns small,large")
    return cols


def _split_drivers(value: str) -> list[str]:
    names = [c.strip() for c in value.split(",") if c.strip()]
    if not names:
        raise UserError(f"--drivers {value!r}: give comma-separated driver names, e.g. --drivers credit_spread,tbill")
    if len(set(names)) != len(names):
        raise UserError(f"--drivers {value!r}: a driver is named twice")
    return names


def _read_data(data, columns, percent, frequency, start_date, end_date):
    from .fit.history import read_returns

    return read_returns(
        data, _split_columns(columns), percent=percent, frequency=frequency, start_date=start_date, end_date=end_date
    )


def _date(end: bool):
    """Click callback: YYYY-MM-DD, or YYYY-MM meaning the month's first day (``end``: its last day)."""

    def parse(ctx, param, value):
        if value is None:
            return None
        import re

        import pandas as pd

        text = value.strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}", text):
                month = pd.Period(text, freq="M")
                return (month.end_time if end else month.start_time).normalize()
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                return pd.Timestamp(text)
        except ValueError:
            pass
        raise click.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD or YYYY-MM")

    return parse


def _sampler_options(fn):
    """--draws and --chains: the size of the NUTS sample (calibrate --posterior, backtest --posterior)."""
    fn = click.option("--chains", type=click.IntRange(min=1), default=4, show_default=True, help="Posterior chains.")(
        fn
    )
    return click.option(
        "--draws", type=click.IntRange(min=1), default=1000, show_default=True, help="Posterior draws per chain."
    )(fn)


def _data_options(fn):
    """Options shared by calibrate and backtest: which columns, units, frequency and sample window."""
    for opt in reversed(
        [
            click.option(
                "--regimes",
                "n_regimes",
                type=click.IntRange(1, 9),
                required=True,
                help="Number of regimes K (2: bear/bull, 3: bear/neutral/bull).",
            ),
            click.option(
                "--columns",
                default=None,
                help="Comma-separated asset columns, in order (default: every column but date); "
                "the first two are compared (excess = first - second).",
            ),
            click.option("--percent", is_flag=True, help="Returns in the file are in percent, not decimals."),
            click.option(
                "--frequency",
                type=click.Choice(["monthly", "weekly", "daily"]),
                default=None,
                help="Data frequency (default: inferred from the dates).",
            ),
            click.option(
                "--start-date",
                default=None,
                callback=_date(end=False),
                help="First date of the sample (inclusive; YYYY-MM-DD, or YYYY-MM for the month's start).",
            ),
            click.option(
                "--end-date",
                default=None,
                callback=_date(end=True),
                help="Last date of the sample (inclusive; YYYY-MM-DD, or YYYY-MM for the month's end).",
            ),
            click.option(
                "--starts",
                "n_starts",
                type=click.IntRange(min=1),
                default=10,
                show_default=True,
                help="Random starts of EM (fixed seed); the best likelihood is kept.",
            ),
            click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True),
        ]
    ):
        fn = opt(fn)
    return fn


@main.command("calibrate")
@click.argument("data", type=click.Path(dir_okay=False))
@_data_options
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Scenario file to write (YAML).")
@click.option("--name", default=None, help="Scenario name (default: from the --out file name).")
@click.option(
    "--horizon",
    type=click.IntRange(min=1),
    default=24,
    show_default=True,
    help="horizon_months of the written scenario.",
)
@click.option(
    "--posterior",
    is_flag=True,
    help="Also sample the posterior (numpyro NUTS) and write FILE.posterior.nc beside --out; the scenario "
    "points to it.",
)
@_sampler_options
@click.option(
    "--drivers",
    default=None,
    help="Comma-separated macro drivers of the transition probabilities (e.g. credit_spread,tbill): fit the "
    "model with driver-dependent transitions (monthly data; docs/drivers.md).",
)
@click.option(
    "--macro",
    type=click.Path(dir_okay=False),
    default=None,
    help="Macro CSV for --drivers (default: the shipped simulator/data/us_macro_monthly.csv).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing output files; with --posterior, also write when the diagnostics fail.",
)
@user_errors
def calibrate_cmd(
    data,
    n_regimes,
    columns,
    percent,
    frequency,
    start_date,
    end_date,
    n_starts,
    seed,
    out,
    name,
    horizon,
    posterior,
    draws,
    chains,
    drivers,
    macro,
    force,
):
    """Fit a K-regime Markov-switching model to historical returns and write it as a scenario file.

    DATA is a CSV with a `date` column and one column per asset of simple periodic returns. The fit is
    maximum likelihood (EM with a scaled forward-backward pass, several starts, BFGS polish) of a
    regime-specific mean vector and full covariance of the log returns. With --posterior the same model is
    sampled by NUTS (--chains chains of --draws draws after as many warm-up steps, started at the ML fit);
    the command exits 1 without writing when R-hat > 1.01, an ESS < 400 or a divergence says the sample
    cannot be trusted, unless --force. With --drivers the transition probabilities are multinomial logits of
    the named macro series the month before (--macro FILE, default the shipped FRED data): the fit is printed
    beside the constant-matrix fit on the same sample, with the likelihood-ratio test.
    """
    from .fit.calibrate import calibrate, scenario_name, scenario_text

    frame = _read_data(data, columns, percent, frequency, start_date, end_date)
    if frame.shape[1] < 2:
        raise UserError(
            f"{data}: a scenario compares two assets; the data give one column "
            f"({list(frame.columns)}): add a column or pick two with --columns"
        )
    if macro and not drivers:
        raise UserError("--macro FILE is the drivers' data: give --drivers too")
    out = Path(out)
    nc = out.with_name(out.stem + ".posterior.nc")
    refuse_existing_file(out, force)  # before spending time fitting
    if posterior:
        refuse_existing_file(nc, force)
    driver_names = _split_drivers(drivers) if drivers else None
    if driver_names:
        from .fit import tvtp

        dcal = tvtp.calibrate_drivers(
            frame, n_regimes, driver_names, tvtp.read_macro(macro), n_starts=n_starts, seed=seed
        )
        cal = dcal.constant
    else:
        cal = calibrate(frame, n_regimes, n_starts=n_starts, seed=seed)
    command = " ".join(
        ["capsim calibrate", str(data), f"--regimes {n_regimes}"]
        + ([f"--columns {columns}"] if columns else [])
        + (["--percent"] if percent else [])
        + ([f"--frequency {frequency}"] if frequency else [])
        + ([f"--start-date {start_date:%Y-%m-%d}"] if start_date else [])
        + ([f"--end-date {end_date:%Y-%m-%d}"] if end_date else [])
        + ([f"--starts {n_starts}"] if n_starts != 10 else [])
        + ([f"--seed {seed}"] if seed else [])
        + ([f"--name {name}"] if name else [])
        + ([f"--horizon {horizon}"] if horizon != 24 else [])
        + ([f"--posterior --draws {draws} --chains {chains}"] if posterior else [])
        + ([f"--drivers {','.join(driver_names)}"] if driver_names else [])
        + ([f"--macro {macro}"] if macro else [])
        + [f"--out {out}"]
    )
    extra = {}
    if posterior:
        from .fit.history import log_returns
        from .fit.posterior import comment_lines, file_attrs, sample_checked, write_posterior

        click.echo(f"sampling the posterior: {chains} chains x {draws} draws after {draws} warm-up ...", err=True)
        bar, callback = sampler_progress(quiet=False)
        with bar:
            fit, diag = sample_checked(
                dcal if driver_names else cal,
                log_returns(frame.loc[cal.dates]),
                draws=draws,
                chains=chains,
                seed=seed,
                progress=callback,
            )
        if fit.rerun:
            click.echo(
                f"sampled twice: {fit.rerun}; the second run took {fit.warmup} warm-up steps at target acceptance "
                f"{fit.target_accept}",
                err=True,
            )
        click.echo(diag.text())
        failures = diag.failures()
        if failures and not force:
            for line in failures:
                click.echo(f"diagnostics failed: {line}", err=True)
            click.echo("nothing written (use --force to write anyway)", err=True)
            sys.exit(1)
        sha = write_posterior(fit, nc, attrs=file_attrs(fit, diag, seed), force=force)
        extra = {"uncertainty": {"posterior": nc.name, "sha256": sha}, "notes": comment_lines(fit, diag, seed)}
    schema = SCHEMA_FILE if (out.parent / SCHEMA_FILE).is_file() else None  # as `capsim init` lays folders out
    if driver_names:
        text = tvtp.scenario_text(
            dcal, name=name or scenario_name(out), horizon_months=horizon, command=command, schema=schema, **extra
        )
    else:
        text = scenario_text(
            cal, name=name or scenario_name(out), horizon_months=horizon, command=command, schema=schema, **extra
        )
    write_text_atomic(out, text, force=force)
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        click.echo(line[2:])
    click.echo(f"wrote {out}" + (f" and {nc}" if posterior else ""))


@main.command("backtest")
@click.argument("data", type=click.Path(dir_okay=False))
@_data_options
@click.option(
    "--train-until",
    required=True,
    callback=_date(end=True),
    help="Last date of the training sample, the cut (YYYY-MM-DD, or YYYY-MM for the month's end).",
)
@click.option(
    "--horizon", type=click.IntRange(min=1), default=12, show_default=True, help="Forecast horizon in months."
)
@click.option(
    "--step", type=click.IntRange(min=1), default=12, show_default=True, help="Months between forecast origins."
)
@click.option(
    "--paths",
    "n_paths",
    type=click.IntRange(min=100),
    default=20_000,
    show_default=True,
    help="Simulated paths per origin (and bootstrap draws).",
)
@click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default results/backtest-<data>-k<K>-<cut>).",
)
@click.option(
    "--posterior",
    is_flag=True,
    help="Also score the posterior-predictive fans (NUTS on the training window, once) beside the plug-in fit "
    "and the bootstrap.",
)
@_sampler_options
@click.option(
    "--posterior-draws",
    type=click.IntRange(min=1, max=122),
    default=64,
    show_default=True,
    help="Posterior draws simulated per origin (evenly thinned over the chains), one block of 16,384 paths each "
    "(--paths sets the plug-in model's and the bootstrap's paths).",
)
@click.option(
    "--drivers",
    default=None,
    help="Comma-separated macro drivers (e.g. credit_spread): score the driver model, drivers frozen at the origin "
    "and along their realised path, against the constant-matrix model on the same origins (monthly data).",
)
@click.option(
    "--macro",
    type=click.Path(dir_okay=False),
    default=None,
    help="Macro CSV for --drivers (default: the shipped simulator/data/us_macro_monthly.csv).",
)
@click.option("--force", is_flag=True, help="Replace an existing non-empty output folder.")
@click.option("--quiet", is_flag=True, help="Print the verdict line only.")
@user_errors
def backtest_cmd(
    data,
    n_regimes,
    columns,
    percent,
    frequency,
    start_date,
    end_date,
    n_starts,
    seed,
    train_until,
    horizon,
    step,
    n_paths,
    device,
    posterior,
    draws,
    chains,
    posterior_draws,
    drivers,
    macro,
    out,
    force,
    quiet,
):
    """Calibrate on DATA up to --train-until, forecast every later origin, score against what happened.

    The model is fitted once on the training rows; each origin's forecast starts from the regime
    probabilities filtered (with those parameters) through the origin. Scores: PIT, coverage of the 50% and
    90% intervals, CRPS, beside an i.i.d. bootstrap of the training rows. With --posterior, the
    posterior-predictive fans are scored too (three methods side by side). Writes scores.csv, summary.csv,
    pit.png, model.yaml and meta.json.
    """
    from .fit.backtest import backtest

    frame = _read_data(data, columns, percent, frequency, start_date, end_date)
    if macro and not drivers:
        raise UserError("--macro FILE is the drivers' data: give --drivers too")
    if drivers and posterior:
        raise UserError("--posterior with --drivers is not supported: score one or the other")
    out = Path(out) if out else Path("results") / f"backtest-{Path(data).stem}-k{n_regimes}-{train_until:%Y-%m-%d}"
    refuse_existing(out, force)
    if drivers:
        from .fit import tvtp
        from .fit.backtest_drivers import backtest_drivers

        res = backtest_drivers(
            frame,
            n_regimes,
            train_until,
            _split_drivers(drivers),
            tvtp.read_macro(macro),
            horizon_months=horizon,
            step_months=step,
            n_paths=n_paths,
            seed=seed,
            n_starts=n_starts,
            device=device,
        )
        res.save(out, force=force)
        if not quiet:
            m = res.meta
            click.echo(
                f"training fits: {m['training_sample']}, {n_regimes} regimes, log-likelihood constant "
                f"{m['training_loglik_constant']:.4f}, drivers {m['training_loglik_drivers']:.4f} "
                f"(LR {m['training_lr']:.2f}, p {m['training_lr_pvalue']:.3g})"
            )
            cols = ["method", "series", "n_origins", "crps_mean", "crps_skill_vs_constant", "crps_diff_t"]
            cols += ["coverage50", "coverage90", "pit_mean", "pit_ks_pvalue"]
            click.echo(res.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            click.echo(f"wrote {out}/")
        click.echo(res.verdict)
        return
    bar, callback = sampler_progress(quiet or not posterior)
    with bar:
        res = backtest(
            frame,
            n_regimes,
            train_until,
            horizon_months=horizon,
            step_months=step,
            n_paths=n_paths,
            seed=seed,
            n_starts=n_starts,
            device=device,
            posterior=posterior,
            posterior_draws=posterior_draws,
            draws=draws,
            chains=chains,
            sampler_progress=callback,
        )
    res.save(out, force=force)
    if not quiet:
        m = res.meta
        click.echo(
            f"training fit: {m['training_sample']}, {n_regimes} regimes, log-likelihood "
            f"{m['training_loglik']:.4f}; method: {m['method']}"
        )
        cols = [
            "method",
            "series",
            "n_origins",
            "crps_mean",
            "crps_skill_vs_bootstrap",
            "crps_diff_t",
            *(["crps_skill_vs_model", "crps_diff_t_vs_model"] if posterior else []),
            "coverage50",
            "coverage90",
            "pit_ks_pvalue",
        ]
        click.echo(res.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        click.echo(f"wrote {out}/")
    click.echo(res.verdict)


# `capsim data` (simulator/cli_data.py)
from .cli_data import data as _data_group  # noqa: E402

main.add_command(_data_group)

# `capsim sensitivity` and `capsim solve` (simulator/cli_stress.py)
from .cli_stress import sensitivity_cmd as _sensitivity_cmd  # noqa: E402
from .cli_stress import solve_cmd as _solve_cmd  # noqa: E402

main.add_command(_sensitivity_cmd)
main.add_command(_solve_cmd)
