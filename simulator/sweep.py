"""One scenario with one or two of its fields varied over a grid: ``sweep`` (`capsim sweep`, docs/batch-sweep.md).

A field is named by the dotted path that validation messages use (``regimes.expansion.drift.small``,
``rates.path.12``, ``phases.0.regimes.slowdown.next.recession``, ``start.expansion``). Setting one entry of a
probability row (``next``, ``transitions``, a ``start`` mapping) rescales the row's other entries in proportion,
so that it still sums to 1. Every point is validated before any runs, and every point uses the same seed
(common random numbers): the differences between points are the parameters' doing, not noise, and the point
equal to the file's own value gives exactly the numbers of ``simulate`` on the file. Points of one run shape
share one compiled kernel (the parameters are the kernel's arguments).
"""

from __future__ import annotations

import copy
import datetime as _dt
import itertools
import json
import math
import os
import platform
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from . import __version__
from .errors import CapsimError, combined
from .output import write_folder
from .run import compile_ahead, plan, run_settings, scenario_meta, simulate
from .scenario import Scenario, parse_scenario
from .uncertainty import given_draws, with_parameter_draws

MAX_FIELDS = 2
MAX_POINTS = 1000  # points of a sweep (each one a whole run)
PROBABILITY_ROW = re.compile(
    r"^(regimes\.[^.]+\.next|phases\.\d+\.regimes\.[^.]+\.next|transitions\.[^.]+|phases\.\d+\.transitions\.[^.]+|start)$"
)


class SweepError(CapsimError):
    """A sweep that cannot run: a bad --set, a field the scenario lacks, or invalid points."""


def parse_set(text: str) -> tuple[str, list[float]]:
    """'FIELD=START:STOP:COUNT' (COUNT evenly spaced values, both ends included) or 'FIELD=V1,V2,...' ->
    (field, values). Grid values are rounded to 12 significant digits (0.1 + 0.2 gives 0.3), so a grid
    through the file's own value hits it exactly."""
    field, sep, spec = str(text).partition("=")
    field, spec = field.strip(), spec.strip()
    usage = (
        f"{_short(text)!r}: give FIELD=START:STOP:COUNT or FIELD=V1,V2,... "
        "(e.g. regimes.recession.duration_months=6:18:7)"
    )
    if not sep or not field or not spec:
        raise SweepError(usage)
    try:
        if ":" in spec:
            start, stop, count = spec.split(":")
            n = int(count)
            if n < 1:
                raise ValueError
            if n > MAX_POINTS:
                raise SweepError(
                    f"{_short(text)!r}: at most {MAX_POINTS:,} values (each point is a whole run), got {n:,}"
                )
            values = [float(f"{v:.12g}") for v in np.linspace(float(start), float(stop), n)]
        else:
            if spec.count(",") >= MAX_POINTS:
                raise SweepError(f"{_short(text)!r}: at most {MAX_POINTS:,} values (each point is a whole run)")
            values = [float(v) for v in spec.split(",")]
    except SweepError:
        raise
    except ValueError:
        raise SweepError(usage) from None
    if not all(np.isfinite(values)):
        raise SweepError(f"{_short(text)!r}: values must be finite numbers")
    if len(set(values)) < len(values):
        raise SweepError(f"{_short(text)!r}: a value is repeated")
    return field, values


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def with_field(data: dict, field: str, value: float) -> dict:
    """A deep copy of the scenario mapping ``data`` with the number at dotted path ``field`` set to ``value``.
    An entry of a probability row rescales the row's other entries in proportion (an entry the row lacks is
    added). ``SweepError`` if the scenario has no number there."""
    data = copy.deepcopy(data)
    keys = field.split(".")
    node, walked = data, []
    for key in keys[:-1]:
        node = _child(node, key, field, ".".join(walked))
        walked.append(key)
    row = PROBABILITY_ROW.match(".".join(walked)) and isinstance(node, dict)
    if row and keys[-1] not in node:
        node[keys[-1]] = 0.0  # a regime the row does not name yet (validation checks that it exists)
    parent, last = node, _key(node, keys[-1], field, ".".join(walked))
    old = parent[last]
    if isinstance(old, bool) or not isinstance(old, int | float):
        raise SweepError(f"{field}: is not a number in this scenario (it holds {old!r}); sweep a numeric field")
    if isinstance(old, int):
        if value != int(value):
            raise SweepError(f"{field}: takes whole numbers, got {value:.12g}")
        value = int(value)
    parent[last] = value
    if row and value != old:
        rest = sum(v for k, v in parent.items() if k != last)
        if rest > 0:
            for k in parent:
                if k != last:
                    parent[k] = parent[k] * ((1.0 - value) / rest)
    return data


def _key(node, key: str, field: str, where: str):
    """The key of ``node`` that ``key`` names (a list index, a mapping key, a rate knot's month)."""
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return int(key)
    if isinstance(node, dict):
        if key in node:
            return key
        try:
            month = float(key)  # rates.path: the knot months are numbers
        except ValueError:
            month = None
        if month is not None and month in node:
            return month
        options = ", ".join(map(_name, node)) or "none"
        raise SweepError(f"{field}: the scenario has no {key!r} under {where or 'the top level'} (it has: {options})")
    raise SweepError(f"{field}: the scenario has no {key!r} under {where or 'the top level'} (it holds {node!r})")


def _child(node, key: str, field: str, where: str):
    return node[_key(node, key, field, where)]


def _name(key) -> str:
    return f"{key:g}" if isinstance(key, float) else str(key)


def sweep_points(scenario: Scenario, fields: dict[str, list[float]], settings: dict) -> list[tuple[tuple, Scenario]]:
    """Every point of the grid as ((value of each field), validated scenario), the first field varying
    slowest. Every point is checked (scenario rules, method, horizon) before this returns; invalid ones are
    reported together, each naming the field and value (``SweepError``)."""
    if not 1 <= len(fields) <= MAX_FIELDS:
        raise SweepError(
            f"give one or two fields to vary, got {len(fields)}", ("pass one or two fields", "give --set once or twice")
        )
    empty = [f for f, values in fields.items() if not len(values)]
    if empty:
        raise SweepError(f"{', '.join(empty)}: give at least one value")
    n_points = math.prod(len(values) for values in fields.values())
    if n_points > MAX_POINTS:
        raise SweepError(
            f"the grid has {n_points:,} points, more than the limit of {MAX_POINTS:,} (each one a whole run)"
        )
    given = given_draws(scenario)  # posterior or with_parameter_draws draws: every point keeps them
    clash = [f for f in fields if given and f in given]
    if clash:
        raise SweepError(
            f"{', '.join(clash)}: the scenario takes this field from its given parameter draws (a posterior file or "
            "with_parameter_draws), which would replace every swept value",
            (
                "sweep another field, or the scenario without its draws",
                "sweep another field, or remove the scenario's `uncertainty` line",
            ),
        )
    data = scenario.model_dump()
    points, problems = [], []
    for values in itertools.product(*fields.values()):
        point = data
        for field, value in zip(fields, values):
            point = with_field(point, field, value)
        label = ", ".join(f"{f}={v:.12g}" for f, v in zip(fields, values))
        try:
            sc = parse_scenario(point, source=f"{scenario.source} with {label}")
            sc._sha256 = scenario.sha256
            sc = with_parameter_draws(sc, given) if given else sc
            plan(sc, **settings)
            points.append((values, sc))
        except CapsimError as exc:  # its message names the source: the file and the point
            problems.append(exc)
    if problems:
        raise combined(problems, SweepError, f"{len(problems)} invalid point(s), nothing was run:")
    return points


class SweepResult:
    """A finished sweep: ``table()`` (one row per point and report horizon: the swept fields, then the summary
    columns), ``meta``, and ``save``."""

    def __init__(self, scenario: Scenario, fields: dict[str, list[float]], table: pd.DataFrame, meta: dict):
        self.scenario, self.fields, self._table, self.meta = scenario, fields, table, meta

    def table(self) -> pd.DataFrame:
        return self._table.copy()

    def save(self, out_dir: str | os.PathLike, force: bool = False) -> Path:
        """Write sweep.csv, sweep.json, sweep.png and meta.json into ``out_dir`` atomically (refused if it is not
        empty, unless ``force``)."""
        from .plots import save_figure, sweep_figure

        def write(tmp: Path) -> None:
            self._table.to_csv(tmp / "sweep.csv", index=False)
            (tmp / "sweep.json").write_text(self._table.to_json(orient="records", indent=2))
            title = f"{self.scenario.name}: {self.meta['n_paths']:,} paths per point, seed {self.meta['seed']}"
            labels = {f: field_label(f) for f in self.fields}
            figure = sweep_figure(self._table, list(self.fields), title, self.scenario.compare_pair, labels)
            save_figure(figure, tmp / "sweep.png")
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))

        return write_folder(out_dir, write, force)


def field_label(path: str) -> str:
    """A swept field's dotted path in words, with its unit, for the axes of sweep.png:
    'regimes.expansion.drift.small' -> 'small drift in expansion (annualised log return)'; the path itself
    where there are no better words."""
    parts = path.split(".")
    if parts[0] == "phases" and parts[2:] == ["until_month"]:
        return f"end of phase {parts[1]} (months)"
    phase = ""
    if parts[0] == "phases" and len(parts) > 2:
        phase, parts = f" (phase {parts[1]})", parts[2:]
    words = None
    if parts[0] == "regimes" and len(parts) >= 3:
        regime, field, key = parts[1], parts[2], ".".join(parts[3:])
        words = {
            "drift": f"{key} drift in {regime} (annualised log return)",
            "vol": f"{key} vol in {regime} (annualised)",
            "corr": f"correlation in {regime}",
            "tails": f"Student-t degrees of freedom in {regime}",
            "duration_months": f"expected stay in {regime} (months)",
            "next": f"P({regime} -> {key} on leaving)",
        }.get(field)
    elif parts[0] == "rates" and len(parts) == 3:
        words = {
            "path": f"policy rate at month {parts[2]} (%)",
            "sensitivity": f"{parts[2]} rate sensitivity (log return per +1 pp)",
        }.get(parts[1])
    elif parts[0] == "transitions" and len(parts) == 3:
        words = f"P({parts[1]} -> {parts[2]}) per step"
    elif parts[0] == "start" and len(parts) == 2:
        words = f"P(start in {parts[1]})"
    elif parts == ["horizon_months"]:
        words = "horizon (months)"
    return f"{words}{phase}" if words else path


def sweep(
    scenario: Scenario,
    fields: dict[str, list[float]],
    n_paths: int = 1_000_000,
    seed: int = 0,
    *,
    horizon_months: int | None = None,
    device: str = "cpu",
    devices: int | str = "all",
    precision: int = 32,
    method: str = "step",
    progress=None,
) -> SweepResult:
    """Simulate ``scenario`` at every point of the grid of ``fields`` (dotted path -> values; one or two
    fields), all with ``seed``. Arguments as ``simulate``. ``SweepError`` before anything runs if a field or a
    point is invalid. ``progress(label, points_done, points_total, paths_done)`` is called as blocks finish."""
    fields = {f: [float(v) for v in vs] for f, vs in fields.items()}
    settings = run_settings(n_paths, seed, horizon_months, device, devices, precision, method)
    points = sweep_points(scenario, fields, settings)
    t0 = time.perf_counter()
    compile_ahead(points[0][1], **settings)  # the kernels of its groups side by side; most points share them
    frames, methods = [], set()

    def rows(res, values) -> pd.DataFrame:
        frame = res.summary()
        for j, (field, value) in enumerate(zip(fields, values)):
            frame.insert(j, field, value)
        return frame

    # Each point's summary table is made in a thread while the engine simulates the next point.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for i, (values, sc) in enumerate(points):
            label = ", ".join(f"{f}={v:.6g}" for f, v in zip(fields, values))
            on_blocks = None if progress is None else (lambda done: progress(label, i, len(points), done))
            res = simulate(sc, **settings, fan_in_background=False, progress=on_blocks)
            methods.add(res.meta["method"])
            if pending is not None:
                frames.append(pending.result())
            pending = pool.submit(rows, res, values)
        frames.append(pending.result())
    wall = time.perf_counter() - t0
    meta = {
        "version": __version__,
        **scenario_meta(scenario),
        "as_of": scenario.as_of.isoformat() if scenario.as_of else None,
        "fields": fields,
        "points": len(points),
        **{k: v for k, v in settings.items() if k not in ("device", "devices")},
        "method": sorted(methods)[0] if len(methods) == 1 else sorted(methods),
        "backend": res.meta["backend"],
        "devices": res.meta["devices"],
        "processes": jax.process_count(),
        "wall_seconds": round(wall, 4),
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }
    return SweepResult(scenario, fields, pd.concat(frames, ignore_index=True), meta)
