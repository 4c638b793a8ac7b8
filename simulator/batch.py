"""Many scenarios in one process: ``batch`` (`capsim batch`, docs/batch-sweep.md).

Every scenario is loaded and checked before anything runs; each is then simulated with the same seed
(common random numbers) and written to ``out/<name>/``, the folder ``Result.save`` writes, atomically. Scenarios
of the same run shape (steps, regimes, assets, report horizons) share one compiled kernel: the engine's jitted
function takes the parameters as arguments. ``batch.json`` is rewritten after every scenario, so a batch stopped
at any moment (Ctrl-C, SIGTERM, SIGKILL) keeps every finished folder, and ``resume=True`` runs only the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from . import __version__
from .devices import cpu_cores, from_process_zero
from .errors import CapsimError, combined
from .output import OutputExistsError, check_writable, folder_lock, write_text_atomic
from .run import ResultError, compile_ahead, load_result, plan, run_settings, simulate
from .scenario import Scenario
from .shipped import load_scenarios

MANIFEST = "batch.json"


class BatchError(CapsimError):
    """A batch that cannot start: bad files, two scenarios with one name, a bad shard."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: ``report`` says what is done; the manifest on disk says the same."""

    def __init__(self, report: BatchReport):
        super().__init__()
        self.report = report


@dataclass
class BatchEntry:
    """One scenario of a batch, as batch.json lists it. ``status``: 'done', 'failed' or 'pending';
    ``wall_seconds``: the simulation's time (of the earlier run that wrote the folder, when it was ``kept``)."""

    file: str
    sha256: str
    name: str
    status: str = "pending"
    wall_seconds: float | None = None
    error: str | None = None
    kept: bool = False


@dataclass
class BatchReport:
    """What a batch did: the output folder, every entry of this run (of its shard), the manifest written."""

    out: Path
    entries: list[BatchEntry]
    manifest: Path | None

    def with_status(self, status: str) -> list[BatchEntry]:
        return [e for e in self.entries if e.status == status]

    def summary(self) -> pd.DataFrame:
        """Every finished scenario's summary rows, read from its folder (``combined_summary``)."""
        return combined_summary([load_result(self.out / e.name).summary() for e in self.with_status("done")])


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; ``BatchError`` otherwise."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise BatchError(
            f"shard {text!r}: give I/N with 0 <= I < N, e.g. 0/4 for the first of four",
            ("pass shard=(I, N)", "use --shard I/N"),
        )
    return i, n


def batch(
    paths,
    out: str | os.PathLike = "results/batch",
    *,
    n_paths: int = 1_000_000,
    seed: int = 0,
    horizon_months: int | None = None,
    device: str = "cpu",
    devices: int | str = "all",
    precision: int = 32,
    method: str = "step",
    resume: bool = False,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    progress=None,
    on_entry=None,
) -> BatchReport:
    """Simulate every scenario of ``paths`` (files, folders of them, shipped names) with the same settings and
    seed, writing ``out/<name>/`` for each, ``out/batch.json`` and the combined ``out/summary.csv`` and
    ``out/summary.json``.

    Everything is checked first (every bad file reported together, two scenarios with one name, the method and
    devices): ``CapsimError``, nothing written. A non-empty ``out`` is refused unless ``resume`` (keep each
    folder that is complete and was made with this file, seed, path count, horizon, precision, method and
    version; run the rest) or ``force`` (run all, replacing folders). ``shard=(I, N)``: run only the
    scenarios whose position in the list sorted by name is I mod N, keeping finished folders as ``resume`` does
    (shards share ``out``), and write ``out/batch-shard-I-of-N.json`` instead of the combined files; a final
    ``resume`` run assembles them. A scenario that fails while running is recorded ('failed', with the error)
    and the others go on. Ctrl-C raises ``BatchInterrupted`` after writing the manifest.
    ``progress(name, scenarios_done, scenarios_total, paths_done)`` is called as blocks finish, and
    ``on_entry(entry)`` with each scenario's ``BatchEntry`` once it is kept, done or failed. A second batch
    writing the same ``out`` at once is refused (``OutputError``, naming its PID). Under
    ``jax.distributed``, each scenario's blocks are spread over the processes and process 0 writes.
    """
    if resume and force:
        raise BatchError("resume and force contradict each other", ("pass one of them", "use --resume or --force"))
    if shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")
    settings = run_settings(n_paths, seed, horizon_months, device, devices, precision, method)
    scenarios = sorted(load_scenarios(paths), key=lambda sc: sc.name)
    check_names(scenarios)
    plans = check_plans(scenarios, settings)
    out = Path(out)
    lead = jax.process_index() == 0
    if lead:
        check_writable(out)
    if lead and shard is None and not resume and not force and out.exists() and any(out.iterdir()):
        raise OutputExistsError(
            f"{out}: output folder exists and is not empty",
            (
                "pass resume=True to keep its finished scenarios, force=True to run them all again, or choose "
                "another folder",
                "use --resume to keep its finished scenarios, --force to run them all again, or choose another --out",
            ),
        )
    with folder_lock(out) if lead else contextlib.nullcontext():
        return _run_batch(scenarios, plans, settings, out, lead, resume, force, shard, progress, on_entry)


def _run_batch(scenarios, plans, settings, out, lead, resume, force, shard, progress, on_entry) -> BatchReport:
    """``batch``'s work, once everything is checked and ``out`` is locked."""
    mine = [k for k in range(len(scenarios)) if shard is None or k % shard[1] == shard[0]]
    entries = [BatchEntry(str(scenarios[k].source), scenarios[k].sha256, scenarios[k].name) for k in mine]
    if lead and (resume or shard is not None) and not force:
        for j, k in enumerate(mine):
            saved = finished(out / scenarios[k].name, scenarios[k], plans[k], settings)
            if saved is not None:
                entries[j].status, entries[j].kept = "done", True
                entries[j].wall_seconds = saved.meta.get("wall_seconds")
    keep = from_process_zero(np.array([e.status == "done" for e in entries], bool))  # every process runs the same
    manifest = out / (MANIFEST if shard is None else f"batch-shard-{shard[0]}-of-{shard[1]}.json")
    report = BatchReport(out, entries, manifest if lead else None)

    def record() -> None:
        if lead:
            write_text_atomic(manifest, manifest_text(report, settings, shard), force=True)

    record()
    for j in range(len(mine)):
        if keep[j] and on_entry is not None:
            on_entry(entries[j])
    done = int(sum(keep))
    # The kernels of the scenarios to run are compiled in threads (XLA compiles outside the GIL), in order,
    # while the scenarios before them run; a scenario waits for its own kernels before it runs.
    pool = ThreadPoolExecutor(max_workers=cpu_cores())
    ahead = {k: pool.submit(compile_ahead, scenarios[k], **settings) for j, k in enumerate(mine) if not keep[j]}
    j = None
    try:
        for j, k in enumerate(mine):
            if keep[j]:
                continue
            sc, entry = scenarios[k], entries[j]
            try:
                on_blocks = None if progress is None else (lambda n: progress(sc.name, done, len(mine), n))
                t0 = time.perf_counter()
                ahead.pop(k).result()
                res = simulate(sc, **settings, progress=on_blocks)
                if lead:
                    res.save(out / sc.name, force=True)
                entry.status, entry.wall_seconds = "done", round(time.perf_counter() - t0, 4)
                done += 1
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # recorded; the other scenarios go on
                entry.status, entry.error = "failed", f"{type(exc).__name__}: {exc}"
            record()
            if on_entry is not None:
                on_entry(entry)
            if progress is not None:
                progress(sc.name, done, len(mine), settings["n_paths"])
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, wherever it struck: the manifest says what is on disk
        if lead and j is not None and entries[j].status == "pending":
            k = mine[j]  # the scenario in flight: its folder is either complete (renamed into place) or absent
            if finished(out / scenarios[k].name, scenarios[k], plans[k], settings) is not None:
                entries[j].status = "done"
        record()
        raise BatchInterrupted(report) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if lead and shard is None:
        write_combined(out, report.summary())
    return report


def check_names(scenarios: list[Scenario]) -> None:
    """Two scenarios with one name would write one folder: ``BatchError`` naming both files."""
    seen: dict[str, Scenario] = {}
    clashes = []
    for sc in scenarios:
        if sc.name in seen:
            clashes.append(f"{seen[sc.name].source} and {sc.source} are both named {sc.name!r}")
        seen.setdefault(sc.name, sc)
    if clashes:
        raise BatchError(
            "; ".join(clashes) + " (each scenario writes the folder of its name)",
            ("rename one of them", "rename one of them"),
        )


def check_plans(scenarios: list[Scenario], settings: dict) -> list:
    """``run.plan`` of every scenario (arguments, devices, method, horizon), every problem reported together."""
    plans, problems = [], []
    for sc in scenarios:
        try:
            plans.append(plan(sc, **settings))
        except CapsimError as exc:
            problems.append(exc)
    if problems:
        raise problems[0] if len(problems) == 1 else combined(problems, BatchError)
    return plans


def finished(folder: Path, scenario: Scenario, run_plan, settings: dict):
    """The loaded result in ``folder`` when it is complete and was made by this file with these settings and
    this version of capsim; else None."""
    try:
        saved = load_result(folder)
    except ResultError:
        return None
    meta = saved.meta
    wanted = {
        "version": __version__,
        "scenario_sha256": scenario.sha256,
        "seed": settings["seed"],
        "n_paths": settings["n_paths"],
        "precision": settings["precision"],
        "method": run_plan.method,
    }
    same = all(meta.get(k) == v for k, v in wanted.items())
    return saved if same and meta["parameters"].get("horizon_months") == run_plan.model.horizon_months else None


def manifest_text(report: BatchReport, settings: dict, shard) -> str:
    """batch.json: the settings and, per scenario, file, SHA-256, name, status, wall time and error."""
    return json.dumps(
        {
            "version": __version__,
            **{k: settings[k] for k in ("seed", "n_paths", "horizon_months", "precision", "method")},
            "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
            "scenarios": [asdict(e) for e in report.entries],
        },
        indent=2,
    )


def combined_summary(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of several summaries in one table: ``scenario`` first, then the columns in order of first
    appearance, the ``occupancy_<regime>`` columns (the union of the regimes) last; empty where a scenario lacks
    a column."""
    if not frames:
        return pd.DataFrame(columns=["scenario", "horizon_months"])
    table = pd.concat(frames, ignore_index=True)
    occupancy = [c for c in table.columns if c.startswith("occupancy_")]
    return table[[c for c in table.columns if c not in occupancy] + occupancy]


def write_combined(out: Path, summary: pd.DataFrame) -> None:
    """``out/summary.csv`` and ``out/summary.json``, each atomically."""
    write_text_atomic(out / "summary.csv", summary.to_csv(index=False), force=True)
    write_text_atomic(out / "summary.json", summary.to_json(orient="records", indent=2), force=True)
