"""The `capsim` command line: thin Click commands over the library (SPEC section 5).

Exit codes: 0 success, 1 a check failed, 2 bad input or usage (a message on stderr, never a traceback).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path

import click

from . import __version__
from .checks import CheckResult, evaluate, write_junit
from .engine import DeviceError
from .run import OutputExistsError, simulate
from .scenario import ScenarioError, load_scenario

USER_ERRORS = (ScenarioError, OutputExistsError, DeviceError, FileNotFoundError)


class UserError(click.ClickException):
    exit_code = 2


def user_errors(fn):
    """Turn the library's input errors into exit code 2 with their message."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise UserError(str(exc)) from None
    return wrapper


def scenario_files(paths) -> list[Path]:
    """Expand folders into their *.yaml / *.yml files (sorted); keep files as given."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise UserError(f"{p}: folder holds no *.yaml or *.yml scenario files")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    return files


def load_all(paths) -> list:
    """Load every scenario, reporting all bad files together (exit 2) before anything runs."""
    scenarios, errors = [], []
    for f in scenario_files(paths):
        try:
            scenarios.append(load_scenario(f))
        except ScenarioError as exc:
            errors.append(str(exc))
    if errors:
        raise UserError("\n".join(errors))
    return scenarios


def progress_bar(total: int, quiet: bool, label: str):
    """A rich progress bar on a terminal; a no-op otherwise. Returns (context, callback)."""
    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("paths"),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task(label, total=total)
    return bar, lambda done: bar.update(task, completed=done)


def print_summary(res) -> None:
    """A readable table: one column per report horizon, one row per figure."""
    from rich.console import Console
    from rich.table import Table

    df = res.summary()
    first, second = (res.model.asset_keys[i] for i in res.model.compare)
    table = Table(title=f"{res.name}: {res.meta['n_paths']:,} paths, seed {res.meta['seed']} "
                        f"({res.meta['backend']}, float{res.meta['precision']}, {res.meta['wall_seconds']:.1f} s)",
                  title_justify="left")
    table.add_column("figure", no_wrap=True)
    for h in df["horizon_months"]:
        table.add_column(f"{h}m", justify="right", no_wrap=True)
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731

    def add(label, fmt, col):
        table.add_row(label, *[fmt(v) for v in df[col]])

    table.add_row(f"P({first} beats {second})",
                  *[f"{p:.3f} ± {se:.4f}" for p, se in zip(df["p_outperform"], df["p_outperform_se"])])
    add("excess mean", pct, "excess_mean")
    add("excess median", pct, "excess_median")
    table.add_row("excess 5% .. 95%", *[f"{pct(a)} .. {pct(b)}" for a, b in zip(df["excess_q05"], df["excess_q95"])])
    table.add_row("excess 90% HDI",
                  *[f"{pct(a)} .. {pct(b)}" for a, b in zip(df["excess_hdi90_low"], df["excess_hdi90_high"])])
    for a in res.model.asset_keys:
        table.add_section()
        add(f"{a} mean", pct, f"{a}_mean")
        add(f"{a} median", pct, f"{a}_median")
        table.add_row(f"{a} VaR95 / ES95",
                      *[f"{pct(v)} / {pct(e)}" for v, e in zip(df[f"{a}_var95"], df[f"{a}_es95"])])
        add(f"{a} P(loss)", pct, f"{a}_p_loss")
        table.add_row(f"{a} max drawdown median / q95",
                      *[f"{pct(m)} / {pct(q)}" for m, q in zip(df[f"{a}_mdd_median"], df[f"{a}_mdd_q95"])])
    table.add_section()
    for k in res.model.regime_names:
        add(f"time in {k}", pct, f"occupancy_{k}")
    Console(width=max(110, 32 + 18 * len(df))).print(table)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="capsim")
def main():
    """capsim: how likely small caps are to beat large caps, by how much, and at what risk."""


@main.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path())
@click.option("--paths", "n_paths", type=click.IntRange(min=2), default=1_000_000, show_default=True,
              help="Number of simulated paths.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--horizon", type=click.IntRange(min=1), default=None, help="Horizon in months (default: the file's).")
@click.option("--device", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["32", "64"]), default="32", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default results/<name>; with several scenarios, OUT/<name>).")
@click.option("--force", is_flag=True, help="Replace an existing non-empty output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
@click.option("--quiet", is_flag=True, help="No progress bar and no table.")
@user_errors
def run(scenarios, n_paths, seed, horizon, device, precision, out, force, as_json, quiet):
    """Simulate scenario files, print a summary and write a results folder for each."""
    loaded = load_all(scenarios)
    outs = [Path(out) if out and len(loaded) == 1 else Path(out or "results") / sc.name for sc in loaded]
    if len(set(outs)) < len(outs):
        raise UserError("two scenarios share a name and would write the same folder: "
                        + ", ".join(sorted({str(o) for o in outs if outs.count(o) > 1})))
    for o in outs:  # refuse before spending any time simulating
        if o.exists() and (not o.is_dir() or any(o.iterdir())) and not force:
            raise OutputExistsError(f"{o}: output folder exists and is not empty; use --force to replace it")
    records = []
    for sc, o in zip(loaded, outs):
        bar, callback = progress_bar(n_paths, quiet, sc.name)
        with bar:
            res = simulate(sc, n_paths=n_paths, seed=seed, horizon_months=horizon, device=device,
                           precision=int(precision), progress=callback)
        res.save(o, force=force)
        if as_json:
            records += json.loads(res.summary().to_json(orient="records"))
        elif not quiet:
            print_summary(res)
            click.echo(f"wrote {o}/")
    if as_json:
        click.echo(json.dumps(records, indent=2))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths):
    """Check scenario files (or folders of them) without simulating."""
    bad = 0
    for f in scenario_files(paths):
        try:
            load_scenario(f)
            click.echo(f"ok   {f}")
        except ScenarioError as exc:
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
    results: list[CheckResult] = []
    errors: dict[str, str] = {}
    for f in scenario_files(paths):
        try:
            sc = load_scenario(f)
        except ScenarioError as exc:
            errors[str(f)] = str(exc)
            click.echo(str(exc), err=True)
            continue
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
    click.echo(f"{len(results) - failed} passed, {failed} failed" + (f", {len(errors)} invalid file(s)" if errors else ""))
    if errors:
        sys.exit(2)
    if failed:
        sys.exit(1)


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
