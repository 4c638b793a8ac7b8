"""The commands over scenario files that do not write results: validate, check, schema, scenarios, init, and
devices."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import CapsimError
from ..scenario import ScenarioError, load_scenario
from ..shipped import display_source, init_folder, scenario_files, schema_text, shipped_files
from .options import SEED, UserError, echo_scenario_warnings, user_errors


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@user_errors
def validate(paths):
    """Check scenario files (or folders of them) without simulating; a scenario's posterior file too."""
    from ..uncertainty import given_draws

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


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--paths", "n_paths", type=click.IntRange(min=2), default=200_000, show_default=True)
@SEED
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
@user_errors
def check(paths, n_paths, seed, junit):
    """Run scenarios with a fixed seed on the CPU and test every `expect` entry (exit 1 on a failure)."""
    from ..checks import CheckResult, evaluate, write_junit
    from ..run import simulate

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


@click.command()
def schema():
    """Print the JSON Schema of scenario files (for editors and other tools)."""
    click.echo(schema_text(), nl=False)


@click.command()
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


@click.command()
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@user_errors
def init(out_dir):
    """Copy the shipped scenarios and their JSON Schema into DIR (new or empty) as a starting point."""
    init_folder(out_dir)
    click.echo(f"wrote {out_dir}/: " + ", ".join(sorted(p.name for p in Path(out_dir).iterdir())))


@click.command()
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
