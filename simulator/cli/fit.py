"""calibrate and backtest: thin commands over simulator.fit.calibrate and simulator.fit.backtest."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click

from ..output import refuse_existing, refuse_existing_file, write_text_atomic
from ..shipped import SCHEMA_FILE
from .options import DEVICE, FORCE_FOLDER, SEED, UserError, sampler_progress, stack, user_errors

if TYPE_CHECKING:
    import pandas as pd  # imported by the commands only (`capsim --help` starts fast)


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


class Sample(NamedTuple):
    """Which rows and columns of the data file a command reads, and in which units (calibrate, backtest)."""

    columns: str | None  # comma-separated, as given
    percent: bool
    frequency: str | None
    start_date: pd.Timestamp | None
    end_date: pd.Timestamp | None

    def read(self, data):
        """The returns of the file ``data`` (``read_returns``)."""
        from ..fit.history import read_returns

        return read_returns(
            data,
            _split_columns(self.columns),
            percent=self.percent,
            frequency=self.frequency,
            start_date=self.start_date,
            end_date=self.end_date,
        )

    def flags(self) -> list[str]:
        """The options that give this sample on the command line."""
        return (
            ([f"--columns {self.columns}"] if self.columns else [])
            + (["--percent"] if self.percent else [])
            + ([f"--frequency {self.frequency}"] if self.frequency else [])
            + ([f"--start-date {self.start_date:%Y-%m-%d}"] if self.start_date else [])
            + ([f"--end-date {self.end_date:%Y-%m-%d}"] if self.end_date else [])
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


_sampler_options = stack(  # --draws and --chains: the size of the NUTS sample (calibrate and backtest --posterior)
    click.option(
        "--draws", type=click.IntRange(min=1), default=1000, show_default=True, help="Posterior draws per chain."
    ),
    click.option("--chains", type=click.IntRange(min=1), default=4, show_default=True, help="Posterior chains."),
)


_MACRO = click.option(
    "--macro",
    type=click.Path(dir_okay=False),
    default=None,
    help="Macro CSV for --drivers (default: the shipped simulator/data/us_macro_monthly.csv).",
)


_data_option_list = stack(
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
    SEED,
)


def _data_options(fn):
    """The options of calibrate and backtest that say which data: the command receives ``n_regimes``,
    ``n_starts``, ``seed`` and ``sample`` (a ``Sample``)."""

    @functools.wraps(fn)
    def wrapper(*args, columns, percent, frequency, start_date, end_date, **kwargs):
        return fn(*args, sample=Sample(columns, percent, frequency, start_date, end_date), **kwargs)

    return _data_option_list(wrapper)


@click.command("calibrate")
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
@_MACRO
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing output files; with --posterior, also write when the diagnostics fail.",
)
@user_errors
def calibrate_cmd(
    data,
    n_regimes,
    n_starts,
    seed,
    sample,
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
    from ..fit.calibrate import calibrate, scenario_name, scenario_text

    frame = sample.read(data)
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
        from ..fit import tvtp

        dcal = tvtp.calibrate_drivers(
            frame, n_regimes, driver_names, tvtp.read_macro(macro), n_starts=n_starts, seed=seed
        )
        cal = dcal.constant
    else:
        cal = calibrate(frame, n_regimes, n_starts=n_starts, seed=seed)
    command = " ".join(
        ["capsim calibrate", str(data), f"--regimes {n_regimes}"]
        + sample.flags()
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
        from ..fit.history import log_returns
        from ..fit.posterior import comment_lines, file_attrs, sample_checked, write_posterior

        click.echo(f"sampling the posterior: {chains} chains x {draws} draws after {draws} warm-up ...", err=True)
        bar, callback = sampler_progress(quiet=False)
        with bar:
            fit, diag = sample_checked(
                dcal if driver_names else cal,
                log_returns(frame.loc[cal.dates]),  # the driver fit's sample (cut to the drivers' months)
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


@click.command("backtest")
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
@DEVICE
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
@_MACRO
@FORCE_FOLDER
@click.option("--quiet", is_flag=True, help="Print the verdict line only.")
@user_errors
def backtest_cmd(
    data,
    n_regimes,
    n_starts,
    seed,
    sample,
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
    from ..fit.backtest import backtest

    frame = sample.read(data)
    if macro and not drivers:
        raise UserError("--macro FILE is the drivers' data: give --drivers too")
    if drivers and posterior:
        raise UserError("--posterior with --drivers is not supported: score one or the other")
    out = Path(out) if out else Path("results") / f"backtest-{Path(data).stem}-k{n_regimes}-{train_until:%Y-%m-%d}"
    refuse_existing(out, force)
    settings = dict(  # of both backtests
        horizon_months=horizon, step_months=step, n_paths=n_paths, seed=seed, n_starts=n_starts, device=device
    )
    if drivers:
        from ..fit import tvtp
        from ..fit.backtest_drivers import backtest_drivers

        res = backtest_drivers(
            frame,
            n_regimes,
            train_until,
            _split_drivers(drivers),
            tvtp.read_macro(macro),
            **settings,
        )
        m = res.meta
        fitted = (
            f"training fits: {m['training_sample']}, {n_regimes} regimes, log-likelihood constant "
            f"{m['training_loglik_constant']:.4f}, drivers {m['training_loglik_drivers']:.4f} "
            f"(LR {m['training_lr']:.2f}, p {m['training_lr_pvalue']:.3g})"
        )
        cols = ["method", "series", "n_origins", "crps_mean", "crps_skill_vs_constant", "crps_diff_t"]
        cols += ["coverage50", "coverage90", "pit_mean", "pit_ks_pvalue"]
    else:
        bar, callback = sampler_progress(quiet or not posterior)
        with bar:
            res = backtest(
                frame,
                n_regimes,
                train_until,
                **settings,
                posterior=posterior,
                posterior_draws=posterior_draws,
                draws=draws,
                chains=chains,
                sampler_progress=callback,
            )
        m = res.meta
        fitted = (
            f"training fit: {m['training_sample']}, {n_regimes} regimes, log-likelihood "
            f"{m['training_loglik']:.4f}; method: {m['method']}"
        )
        cols = ["method", "series", "n_origins", "crps_mean", "crps_skill_vs_bootstrap", "crps_diff_t"]
        cols += ["crps_skill_vs_model", "crps_diff_t_vs_model"] if posterior else []
        cols += ["coverage50", "coverage90", "pit_ks_pvalue"]
    res.save(out, force=force)
    if not quiet:
        click.echo(fitted)
        click.echo(res.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        click.echo(f"wrote {out}/")
    click.echo(res.verdict)
