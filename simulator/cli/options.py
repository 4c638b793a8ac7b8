"""What the commands share: the input-error wrapper, the option decorators, progress bars, interruption codes and
the summary table."""

from __future__ import annotations

import contextlib
import functools
import math
import shlex
import sys
from typing import NamedTuple

import click

from ..devices import init_processes, wants_processes
from ..errors import CapsimError
from ..output import refuse_existing
from ..shipped import display_source, load_scenarios

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
        G = res.model.draw_paths
        click.echo(
            f"note: the (draws 5%, 95%) intervals rest on {simulated} parameter draw(s), one per group of "
            f"{G:,} paths; use --paths {MIN_DRAWS * G:,} or more for at least {MIN_DRAWS}"
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


def one_scenario(path: str):
    """The one scenario of a file or shipped name, its plausibility warnings printed."""
    (sc,) = load_scenarios([path])
    echo_scenario_warnings([sc])
    return sc


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


def stack(*options):
    """One decorator that applies ``options`` (click decorators) in the order given, the first on top of the
    help."""

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


SEED = click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
DEVICE = click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True)
FORCE_FOLDER = click.option("--force", is_flag=True, help="Replace an existing non-empty output folder.")


def output_options(out_help: str, json_help: str = "Print the summary as JSON instead of a table."):
    """--out (a folder; ``out_help``: its default differs per command), --force, --json and --quiet: the command
    receives ``out``, ``force``, ``as_json`` and ``quiet``."""
    return stack(
        click.option("--out", type=click.Path(file_okay=False), default=None, help=out_help),
        FORCE_FOLDER,
        click.option("--json", "as_json", is_flag=True, help=json_help),
        click.option("--quiet", is_flag=True, help="No progress bar and no table."),
    )


def run_options(out_help: str):
    """The options of every command that simulates (run, batch, sweep, compare, blend, solve), defined once.

    The command receives ``run`` (a ``RunOptions``) and the ``output_options`` (``out_help``: the help of
    --out). The multi-host flags (--coordinator, --num-processes, --process-id, or JAX's environment variables)
    join the processes before the command runs."""
    options = stack(
        click.option(
            "--paths",
            "n_paths",
            type=click.IntRange(min=2),
            default=1_000_000,
            show_default=True,
            help="Number of simulated paths.",
        ),
        SEED,
        click.option(
            "--horizon", type=click.IntRange(min=1), default=None, help="Horizon in months (default: the file's)."
        ),
        DEVICE,
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
        output_options(out_help),
        click.option("--coordinator", default=None, help="Several hosts: HOST:PORT of process 0 (jax.distributed)."),
        click.option("--num-processes", type=click.IntRange(min=1), default=None, help="Several hosts: process count."),
        click.option(
            "--process-id", type=click.IntRange(min=0), default=None, help="Several hosts: this process's id."
        ),
    )

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

        return options(wrapper)

    return decorate


@contextlib.contextmanager
def nothing_written(out):
    """Around a command's work before it writes ``out``: Ctrl-C or SIGTERM prints that nothing was written there
    and exits 130 or 143."""
    try:
        yield
    except KeyboardInterrupt as exc:
        click.echo(f"interrupted: nothing written to {out}/", err=True)
        sys.exit(interrupted_code(exc))


HOST_FLAGS = ("coordinator", "num_processes", "process_id")
WIDE = click.option(
    "--wide",
    is_flag=True,
    help="Print every figure side by side at the table's full width (default: fit the terminal).",
)


def is_lead() -> bool:
    """True in process 0 of a multi-process run (or the only process): the one that prints and writes."""
    import jax  # imported by the commands that simulate or fit only (`capsim --help` and `validate` start fast)

    return jax.process_index() == 0


def lead_refusing(out, force: bool) -> bool:
    """``is_lead()``; the lead process also refuses a non-empty output folder ``out`` (unless ``force``) before any
    time is spent."""
    lead = is_lead()
    if lead:
        refuse_existing(out, force)
    return lead


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (as Ctrl-C raises ``KeyboardInterrupt``), so that the same clean-up
    runs: no temporary folder left, a batch's manifest up to date."""


def _terminate(signum, frame):
    raise Terminated


def interrupted_code(exc: BaseException) -> int:
    """The exit code of an interrupted command: 143 after SIGTERM, 130 after Ctrl-C (128 + the signal)."""
    return 143 if isinstance(exc, Terminated) or isinstance(exc.__context__, Terminated) else 130
