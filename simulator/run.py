"""``simulate``: a scenario in, a ``Result`` out (summary and fan tables, draws, and an atomic ``save``)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd

from . import __version__
from .devices import process_blocks, resolve_devices, sum_over_processes
from .engine import BLOCK_PATHS, compile_blocks, run_blocks
from .errors import CapsimError
from .output import read_csv_exact, write_folder
from .params import (
    CELL_PATHS,
    Model,
    build_model,
    draw_paths_for,
    exact_method_problem,
    exact_segment_months,
    n_blocks,
    steps_to_month,
)
from .scenario import (
    MAX_HORIZON_MONTHS,
    UNDEFINED_UNDER_TAILS,
    Scenario,
    ScenarioError,
    horizon_problem,
    overflow_problems,
    parse_scenario,
    posterior_path,
    resolve,
)
from .summary import FAN_BUDGET_BYTES, FAN_PATHS, MAX_KEEP_PATHS, Accumulator, Summaries, kept_counts

# Paths per jitted call and device (whole blocks): one block at a time is fastest on a CPU device (a core); an
# accelerator runs 64 blocks (about a million paths) side by side.
CPU_BATCH_PATHS, ACCELERATOR_BATCH_PATHS = BLOCK_PATHS, 64 * BLOCK_PATHS


RESULT_FILES = ("summary.csv", "summary.json", "fan.csv", "fan.png", "meta.json")  # a complete result folder


class Result:
    """One simulated scenario. Tables follow docs/outputs.md; returns are simple total returns (decimals)."""

    def __init__(self, scenario: Scenario, model: Model, stats: Summaries, meta: dict):
        self.scenario, self.model, self._stats, self.meta = scenario, model, stats, meta
        self._summary: pd.DataFrame | None = None
        self._fan: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return self.scenario.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {describe(self.name, self.meta)}>"

    def summary(self) -> pd.DataFrame:
        """One row per report horizon (the columns of summary.csv). ``NonFiniteError`` if a figure is not a
        finite number."""
        if self._summary is None:
            with np.errstate(over="ignore", invalid="ignore"):
                table = self._stats.summary(self.name)
            self._summary = require_finite(table, "summary", self.scenario)
        return self._summary.copy()

    def fan(self) -> pd.DataFrame:
        """Quantiles and mean of each asset's total return and the excess, for every month 0..horizon.
        ``NonFiniteError`` if a figure is not a finite number."""
        if self._fan is None:
            self._fan = require_finite(self._stats.fan(), "fan", self.scenario)
        return self._fan.copy()

    def draws(self, horizon_months: int) -> pd.DataFrame:
        """R_a(h) at a report horizon h for each kept path (all paths up to 2e6): one row per path, one
        column per asset."""
        return pd.DataFrame(self._stats.total_returns(int(horizon_months)), columns=list(self.model.asset_keys))

    def uncertainty(self) -> pd.DataFrame | None:
        """Per parameter draw and report horizon: paths, p_outperform, excess median and the draw's parameter
        values (the columns of uncertainty.csv); None for a scenario without parameter uncertainty."""
        return self._stats.uncertainty(self.name) if self.model.uncertain else None

    def save(self, out_dir: str | os.PathLike, force: bool = False) -> Path:
        """Write summary.csv, summary.json, fan.csv, fan.png and meta.json into ``out_dir``, atomically (the
        folder appears only when complete), and uncertainty.csv with parameter uncertainty. An existing
        non-empty folder is refused unless ``force``."""
        from .plots import fan_figure, save_figure  # matplotlib is imported only when a figure is written

        def write(tmp: Path) -> None:
            summary, fan = self.summary(), self.fan()
            summary.to_csv(tmp / "summary.csv", index=False)
            (tmp / "summary.json").write_text(summary.to_json(orient="records", indent=2))
            fan.to_csv(tmp / "fan.csv", index=False)
            figure = fan_figure(fan, self.model, title=self._title(), labels=self.scenario.assets, summary=summary)
            save_figure(figure, tmp / "fan.png")
            self._write_extra(tmp)
            (tmp / "meta.json").write_text(meta_text(self.meta, tmp))

        return write_folder(out_dir, write, force)

    def _write_extra(self, tmp: Path) -> None:
        """Files a kind of result adds to its folder: uncertainty.csv with parameter uncertainty (a blend:
        components.csv)."""
        if self.model.uncertain:
            self.uncertainty().to_csv(tmp / "uncertainty.csv", index=False)

    def _title(self) -> str:
        return f"{self.name}: {self.meta['n_paths']:,} paths, seed {self.meta['seed']}"


class NonFiniteError(CapsimError):
    """Simulated paths whose statistics are not finite numbers: the scenario's parameters overflow the engine."""


def require_finite(table: pd.DataFrame, what: str, scenario: Scenario) -> pd.DataFrame:
    """``table`` itself when every number in it is finite, else ``NonFiniteError`` naming the first column and
    row that is not: a run never hands out a NaN or an infinity as a figure."""
    numbers = table.select_dtypes("number")
    bad = ~np.isfinite(numbers.to_numpy(np.float64))
    if not bad.any():
        return table
    row, col = np.argwhere(bad)[0]
    key = "month" if "month" in table else "horizon_months"
    raise NonFiniteError(
        f"{scenario.source}: the simulation gave {numbers.iloc[row, col]} for {numbers.columns[col]} at "
        f"{key} {table[key].iloc[row]} ({int(bad.sum())} {what} figure(s) not finite): the scenario's drifts, vols, "
        "rates or parameter draws make returns overflow; check they are annualised decimals (0.10 = 10% a year)"
    )


TAILS_WARNING = (
    "Student-t regimes: simple-return means (<asset>_mean, excess_mean, excess_sd) estimate a mean that does not "
    "exist (E exp(t) is infinite); use medians, quantiles and p_outperform"
)


def undefined_means(asset_keys, has_tails: bool) -> list[str]:
    """The summary columns that estimate a mean which does not exist: with Student-t tails, excess_mean,
    excess_sd and each <asset>_mean; else none. meta.json lists them as ``undefined_means``."""
    return [*UNDEFINED_UNDER_TAILS, *(f"{a}_mean" for a in asset_keys)] if has_tails else []


def describe(name: str, meta: dict) -> str:
    """'rate-cut: 1,000,000 paths, seed 0, report months 3, 6, 12, 24' (a result's repr)."""
    months = meta.get("report_months") or (meta.get("parameters") or {}).get("report_months") or []
    return f"{name}: {meta['n_paths']:,} paths, seed {meta['seed']}, report months {', '.join(map(str, months))}"


class ResultError(CapsimError):
    """A result folder that cannot be loaded: missing, incomplete, changed since it was written, or with an
    unreadable meta.json."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def meta_text(meta: dict, folder: Path) -> str:
    """meta.json's text: ``meta`` plus ``sha256``, the SHA-256 of every other file of ``folder`` and of this
    text as it reads without ``sha256`` (key "meta.json"), so that ``load_result`` can tell any change."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    sums = {f.name: sha256_file(f) for f in sorted(folder.iterdir()) if f.name != "meta.json"}
    sums["meta.json"] = hashlib.sha256(json.dumps(body, indent=2, default=str).encode()).hexdigest()
    return json.dumps({**body, "sha256": sums}, indent=2, default=str)


def changed_file(folder: Path, meta: dict) -> str | None:
    """The first file of ``folder`` that is not as its meta.json's ``sha256`` records (meta.json itself
    included), with what is wrong with it; None when every file matches."""
    sums = meta.get("sha256")
    if not isinstance(sums, dict) or not isinstance(sums.get("meta.json"), str):
        return "meta.json records no SHA-256 sums of the files"
    body = json.dumps({k: v for k, v in meta.items() if k != "sha256"}, indent=2, default=str)
    if hashlib.sha256(body.encode()).hexdigest() != sums["meta.json"]:
        return "meta.json was changed after it was written"
    for name, digest in sums.items():
        if name == "meta.json":
            continue
        path = folder / str(name)
        if "/" in str(name) or not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != digest:
            return f"{name} was changed after it was written (its SHA-256 is not the one meta.json records)"
    return None


# meta.json fields that readers of a result folder rely on, and their types
META_TYPES = {"scenario": str, "n_paths": int, "kept_paths": int, "seed": int, "compare": list, "version": str}


def meta_problem(meta) -> str | None:
    """What is wrong with a loaded meta.json's structure (None when it has what readers use)."""
    if not isinstance(meta, dict):
        return f"it holds {type(meta).__name__}, not a mapping"
    for key, kind in META_TYPES.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            return f"{key} is missing or not {kind.__name__}"
    if meta.get("kind") != "blend" and not isinstance(meta.get("parameters"), dict):
        return "parameters is missing or not a mapping"
    wall = meta.get("wall_seconds")
    if wall is not None and (isinstance(wall, bool) or not isinstance(wall, int | float)):
        return f"wall_seconds is not a number: {wall!r:.40}"
    return None


class SavedResult:
    """A result folder written by ``Result.save`` (``capsim run``, ``batch``, ``blend``), loaded back:
    ``summary()``, ``fan()``, ``meta`` and ``scenario`` (the scenario that was run, parsed back from meta.json;
    None for a blend, whose components meta.json lists)."""

    def __init__(self, folder: Path, meta: dict, scenario: Scenario | None):
        self.folder, self.meta, self.scenario = folder, meta, scenario

    @property
    def name(self) -> str:
        return self.meta["scenario"]

    def __repr__(self) -> str:
        return f"<SavedResult {describe(self.name, self.meta)} from {self.folder}>"

    def uncertainty(self) -> pd.DataFrame | None:
        """uncertainty.csv (per parameter draw and report horizon), or None when the folder has none (a scenario
        without parameter uncertainty)."""
        path = self.folder / "uncertainty.csv"
        return read_csv_exact(path) if path.is_file() else None

    def summary(self) -> pd.DataFrame:
        """summary.csv: one row per report horizon."""
        return read_csv_exact(self.folder / "summary.csv")

    def fan(self) -> pd.DataFrame:
        """fan.csv: quantiles and mean of each series at every month."""
        return read_csv_exact(self.folder / "fan.csv")


def load_result(folder: str | os.PathLike) -> SavedResult:
    """Load the result folder ``folder`` (as ``Result.save`` writes it). Raises ``ResultError`` naming the folder
    when it is missing or incomplete, or its meta.json cannot be read or holds no scenario."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultError(f"{folder}: no such result folder")
    missing = [f for f in RESULT_FILES if not (folder / f).is_file()]
    if missing:
        raise ResultError(f"{folder}: not a complete result folder (missing {', '.join(missing)})")
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if (problem := meta_problem(meta)) is not None:
            raise ValueError(problem)
        blended = meta.get("kind") == "blend"  # a blend's scenarios are its components (meta lists them)
        data = None if blended else meta["scenario_data"]
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise ResultError(f"{folder}: meta.json cannot be read ({type(exc).__name__}: {exc})") from None
    if (problem := changed_file(folder, meta)) is not None:
        raise ResultError(f"{folder}: {problem}; run it again rather than trust it")
    meta.pop("sha256")  # verified: the meta of the run, as ``Result.meta`` held it
    if blended:
        return SavedResult(folder, meta, None)
    try:
        scenario = parse_scenario(data, source=str(meta.get("scenario_file", folder / "meta.json")))
    except ScenarioError as exc:
        raise ResultError(f"{folder}: the scenario in meta.json is not valid:\n{exc}") from None
    scenario._sha256 = meta.get("scenario_sha256")
    return SavedResult(folder, meta, scenario)


def simulate(
    scenario: Scenario,
    n_paths: int = 1_000_000,
    seed: int = 0,
    *,
    horizon_months: int | None = None,
    device: str = "cpu",
    devices: int | str = "all",
    precision: int = 32,
    method: str = "step",
    batch_paths: int | None = None,
    fan_in_background: bool = True,
    progress=None,
    stream: int | None = None,
    draw_paths: int | None = None,
    fan: bool = True,
) -> Result:
    """Simulate ``n_paths`` paths of ``scenario`` and summarise them.

    ``devices``: how many devices of that backend share the blocks (a number or 'all': on a CPU, one device per
    core; the same numbers whatever the count).
    ``method``: 'step' simulates every step (all outputs as docs/outputs.md); 'exact' draws a whole segment of
    G months at once (G: the largest divisor of the report horizons' gcd it allows) from the exact joint law
    of its regime counts and Gaussian return (Gaussian regimes only; the same distribution at every report
    horizon and month end, much faster, but drawdowns are observed at segment ends only: ``meta``
    'drawdowns_observed'); 'auto' takes 'exact' where the scenario allows it and a segment holds several
    steps, else 'step'.
    ``precision`` 32 or 64 (float type of the engine); ``batch_paths`` paths per jitted call and device
    (rounded to a whole number of blocks of ``BLOCK_PATHS``; default CPU_BATCH_PATHS on a CPU, else
    ACCELERATOR_BATCH_PATHS, all side by side; it changes memory and speed, never the numbers);
    ``fan_in_background``: make the fan table in a thread while the engine simulates the rest (the default), or
    only when ``fan()`` is first called (for callers that never need it, such as ``sweep``; the same numbers).
    ``progress(paths_done)`` is called as blocks finish. ``stream``: a random stream other than the seed's
    own (``blend`` gives each component one), so runs of one seed on different streams share no paths.
    ``draw_paths``: paths per parameter draw G of an uncertain scenario (a power of two from 8 to 16,384; default
    the file's ``uncertainty.draw_paths``, else 256); ignored without uncertainty. ``fan=False``: keep no month
    ends (``fan()`` refused; one kernel compiles instead of two), for callers that read only the summary figures.
    """
    n_paths, seed = int(n_paths), int(seed)
    if batch_paths is not None and not 1 <= int(batch_paths) <= MAX_BATCH_PATHS:
        raise CapsimError(
            f"batch_paths must lie in 1..{MAX_BATCH_PATHS:,} (paths per call and device), got {batch_paths}"
        )
    run = plan(scenario, n_paths, seed, horizon_months, device, devices, precision, method, draw_paths)
    model, method, segment, devs = run
    engine = engine_arguments(run, n_paths, precision, batch_paths, fan)
    t0 = time.perf_counter()
    # overflowing paths are caught by ``require_finite`` on the tables, with a message instead of numpy's warnings
    with jax.enable_x64(precision == 64), np.errstate(over="ignore", invalid="ignore"):
        acc = Accumulator(model, n_paths, engine["dtype"], fan_in_background, fan)
        mine = process_blocks(-(-n_paths // BLOCK_PATHS))
        for block, n_valid, out in run_blocks(model, seed, n_paths, mine, **engine, on_blocks=progress, stream=stream):
            acc.add(block, n_valid, out)
        if jax.process_count() > 1:
            acc.replace(sum_over_processes(acc.arrays()))
        stats = acc.finish()
    wall = time.perf_counter() - t0
    meta = {
        "version": __version__,
        **scenario_meta(scenario),
        "as_of": scenario.as_of.isoformat() if scenario.as_of else None,
        "parameters": resolved_parameters(scenario, model),
        "compare": list(scenario.compare_pair),
        "seed": seed,
        **({"stream": stream} if stream is not None else {}),
        "n_paths": n_paths,
        "kept_paths": stats.keep,
        "fan_paths": stats.fan_paths,
        "backend": devs[0].platform,
        "devices": [str(d) for d in devs],
        "processes": jax.process_count(),
        "precision": precision,
        "block_paths": BLOCK_PATHS,
        "method": method,
        "parameter_draws": {
            "draws": model.n_draws,
            "draw_paths": model.draw_paths,
            "simulated": len(model.steps.drift),
            "fields": list(model.draw_parameters),
            "given": scenario.draw_values is not None,
            "posterior": str(post) if (post := posterior_path(scenario)) else None,
        }
        if model.uncertain
        else None,
        "drawdowns_observed": observed(segment),
        "wall_seconds": round(wall, 4),
        "path_steps_per_second": n_paths * model.n_steps / max(wall, 1e-9),
        "undefined_means": undefined_means(model.asset_keys, model.has_tails),
        "warnings": run_warnings(scenario, model, stats),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }
    return Result(scenario, model, stats, meta)


def run_warnings(scenario: Scenario, model: Model, stats: Summaries) -> list[str]:
    """What a reader of this run's figures must know (meta.json's ``warnings``): undefined means under fat
    tails, errors of a single parameter draw, and the scenario's own warnings as ``FIELD: message``."""
    out = [TAILS_WARNING] if model.has_tails else []
    if model.uncertain and stats.unit_draws is None:
        out.append(
            "one parameter draw in use: standard errors are those of the figures given that draw, not of "
            "their average over the parameter distribution (simulate more paths or more draws)"
        )
    return out + [f"{w.path}: {w.message}" for w in scenario.warnings]


class Plan(NamedTuple):
    """What ``simulate`` runs: the model, the method ('step' or 'exact') and its segment months, the devices."""

    model: Model
    method: str
    segment_months: int | None
    devices: tuple


def plan(
    scenario: Scenario,
    n_paths: int,
    seed: int,
    horizon_months: int | None = None,
    device: str = "cpu",
    devices: int | str = "all",
    precision: int = 32,
    method: str = "step",
    draw_paths: int | None = None,
) -> Plan:
    """Check ``simulate``'s arguments for ``scenario`` without simulating (``CapsimError``, ``DeviceError``,
    ``MethodError``), and resolve them: what batch and sweep call for every scenario before running any."""
    if int(n_paths) < 2:
        raise CapsimError(f"n_paths must be at least 2, got {n_paths}")
    if precision not in (32, 64):
        raise CapsimError(f"precision must be 32 or 64, got {precision}")
    if not 0 <= int(seed) < 2**32:
        raise CapsimError(f"seed must lie in 0..2**32-1, got {seed}")
    devs = resolve_devices(device, devices)
    check_size(scenario, int(n_paths), horizon_months, precision, draw_paths)
    model = build_model(scenario, horizon_months, n_paths=int(n_paths), seed=int(seed), draw_paths=draw_paths)
    return Plan(model, *resolve_method(model, method, scenario.source), devs)


MAX_BLOCKS = 1 << 31  # blocks of a run: their indices stay below engine.STREAM_BASE (3.5e13 paths)
MAX_BATCH_PATHS = 1024 * BLOCK_PATHS  # paths per compiled call and device (16,777,216)


def check_size(
    scenario: Scenario, n_paths: int, horizon_months: int | None, precision: int, draw_paths: int | None = None
) -> None:
    """Refuse, before any work, a run that cannot finish or fit: a horizon past ``MAX_HORIZON_MONTHS`` or
    whose log returns overflow (``overflow_problems``), more than ``MAX_BLOCKS`` blocks, or more memory held at
    once (``held_bytes``) than this machine has. Paths beyond memory run in blocks: only what is held counts."""
    source = scenario.source
    H = int(horizon_months or scenario.horizon_months)
    if not 1 <= H <= MAX_HORIZON_MONTHS:
        raise CapsimError(
            f"{source}: horizon {horizon_problem(H)}",
            (f"pass horizon_months={MAX_HORIZON_MONTHS} or less", f"use --horizon {MAX_HORIZON_MONTHS} or less"),
        )
    if horizon_months and H != scenario.horizon_months and (problems := overflow_problems(resolve(scenario, {}), H)):
        raise ScenarioError(source, [(p, f"with horizon {H}: {m}") for p, m in problems])
    if n_blocks(n_paths) > MAX_BLOCKS:
        raise CapsimError(
            f"{source}: {n_paths:,} paths are more than {MAX_BLOCKS * BLOCK_PATHS:,}, the most one run can number"
        )
    need, have = held_bytes(scenario, n_paths, H, precision, draw_paths), memory_bytes()
    if need > have:
        raise CapsimError(
            f"{source}: {n_paths:,} paths over {H} months need about {need / 1e9:,.1f} GB held at once (per-block "
            f"sums, kept paths, fan, parameter tables; docs/outputs.md, Memory), more than this machine's "
            f"{have / 1e9:,.1f} GB",
            ("pass fewer paths (n_paths) or a shorter horizon", "use fewer --paths or a shorter --horizon"),
        )


def held_bytes(
    scenario: Scenario, n_paths: int, horizon_months: int, precision: int, draw_paths: int | None = None
) -> int:
    """Bytes a run holds at once, estimated from its size alone (docs/outputs.md, Memory): per-block sums and
    per-cell sums (float64), the kept report values and fan paths, and one set of per-step parameter tables
    per draw (a draw per group of ``draw_paths`` paths, ``params.draw_paths_for``)."""
    R = len(scenario.report_months_for(horizon_months))
    A, K = len(scenario.assets), len(scenario.regimes)
    T = steps_to_month(horizon_months, scenario.steps_per_year)
    blocks, item = n_blocks(n_paths), precision // 8
    keep = min(n_paths, MAX_KEEP_PATHS)
    G = draw_paths_for(scenario, draw_paths)
    draws = 1
    if scenario.is_uncertain:
        u, groups = scenario.uncertainty, -(-n_paths // G)
        draws = min(groups, u.draws if u is not None and u.draws is not None else groups)
    cells = BLOCK_PATHS // min(CELL_PATHS, G // 2)
    per_block = 8 * (2 * R * A + 4 * R + R * K + 1) + 8 * cells * (R * (A + K + 1) + 1)
    tables = draws * T * (K * K + K * A + K * A * A + K + A) * 8
    fan = min(min(keep, FAN_PATHS) * A * (horizon_months + 1) * item, FAN_BUDGET_BYTES)
    return blocks * per_block + 2 * R * A * keep * item + fan + tables


def memory_bytes() -> int:
    """This machine's physical memory in bytes (16 GB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 16 * 10**9


def engine_arguments(run: Plan, n_paths: int, precision: int, batch_paths: int | None, fan: bool = True) -> dict:
    """The keyword arguments of ``engine.run_blocks`` (and ``compile_blocks``) for a planned run (``fan``: whether
    the first blocks keep every month end)."""
    cpu = run.devices[0].platform == "cpu"
    dtype = np.float32 if precision == 32 else np.float64
    return dict(
        dtype=dtype,
        devices=run.devices,
        blocks_per_call=max(1, (batch_paths or (CPU_BATCH_PATHS if cpu else ACCELERATOR_BATCH_PATHS)) // BLOCK_PATHS),
        month_paths=kept_counts(run.model, n_paths, np.dtype(dtype).itemsize, fan)[1],
        method=run.method,
        segment_months=run.segment_months or 1,
        side_by_side=not cpu,
    )


def scenario_meta(scenario: Scenario) -> dict:
    """The metadata entries that say which scenario ran: its name, file, SHA-256 and full data."""
    return {
        "scenario": scenario.name,
        "scenario_file": scenario.source,
        "scenario_sha256": scenario.sha256,
        "scenario_data": scenario.model_dump(mode="json"),
    }


def run_settings(
    n_paths: int, seed: int, horizon_months: int | None, device: str, devices: int | str, precision: int, method: str
) -> dict:
    """The keyword arguments of ``simulate`` (and ``plan``, ``compile_ahead``) that every scenario of a batch or
    every point of a sweep runs with; also what their metadata records."""
    return dict(
        n_paths=int(n_paths),
        seed=int(seed),
        horizon_months=horizon_months,
        device=device,
        devices=devices,
        precision=precision,
        method=method,
    )


def compile_ahead(
    scenario: Scenario,
    n_paths: int,
    seed: int = 0,
    horizon_months: int | None = None,
    device: str = "cpu",
    devices: int | str = "all",
    precision: int = 32,
    method: str = "step",
    batch_paths: int | None = None,
    draw_paths: int | None = None,
) -> None:
    """Compile the kernels that ``simulate`` with these arguments runs, without simulating: ``batch`` compiles
    the next scenarios in threads while one runs. Thread-safe; the numbers never change."""
    n_paths = int(n_paths)
    run = plan(scenario, n_paths, seed, horizon_months, device, devices, precision, method, draw_paths)
    with jax.enable_x64(precision == 64):
        blocks = process_blocks(-(-n_paths // BLOCK_PATHS))
        compile_blocks(run.model, n_paths, blocks, **engine_arguments(run, n_paths, precision, batch_paths))


def resolve_method(model: Model, method: str, source: str = "<memory>") -> tuple[str, int | None]:
    """('step', None) or ('exact', months per segment) for ``model`` (see ``simulate``); 'exact' where it
    cannot run is an error naming ``source``, the scenario file."""
    if method not in ("step", "exact", "auto"):
        raise CapsimError(f"method must be 'step', 'exact' or 'auto', got {method!r}")
    problem = exact_method_problem(model)
    if method == "exact" and problem:
        raise MethodError(
            f"{source}: the exact method cannot run this scenario: {problem}",
            ("use method='step'", "use --method step"),
        )
    if method == "step" or problem:
        return "step", None
    segment = exact_segment_months(model)
    if method == "auto" and model.month_steps[segment] == 1:  # a segment of one step: nothing to aggregate
        return "step", None
    return "exact", segment


def observed(segment_months: int | None) -> str:
    """When drawdowns are observed: every step (per-step method) or at the exact method's segment ends."""
    if segment_months is None:
        return "every step"
    return "month ends" if segment_months == 1 else f"every {segment_months} months"


class MethodError(CapsimError):
    """A simulation method was asked for that the scenario does not allow."""


def resolved_parameters(scenario: Scenario, model: Model) -> dict:
    """The scenario as run: file fields plus the derived per-step matrix and start law."""
    return {
        **scenario.model_dump(mode="json", exclude={"description", "sources"}),
        "steps_per_year": model.steps_per_year,
        "horizon_months": model.horizon_months,
        "report_months": list(model.report_months),
        # with distributions: at their centres (docs/scenarios.md)
        "base_transition_matrix": np.round(model.base_matrix, 12).tolist(),
        "start_probabilities": np.round(model.start_probs, 12).tolist(),
    }
