"""Helpers shared by the command-line tests of batch and sweep: invoke capsim through click's CliRunner, check a
user error (exit 2, no traceback), write scenario files, read result tables exactly."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import yaml
from click.testing import CliRunner

from simulator.cli import main
from simulator.output import read_csv_exact


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def describe(result) -> str:
    """The result's exit code, output and traceback (if an exception other than SystemExit escaped)."""
    exc = ""
    if result.exc_info and not isinstance(result.exception, SystemExit):
        import traceback

        exc = "".join(traceback.format_exception(*result.exc_info))
    return f"exit={result.exit_code}\n--- output ---\n{result.output}\n--- exception ---\n{exc}"


def assert_user_error(result, *mentions):
    """Exit 2, no traceback, the message mentions each given string."""
    assert result.exit_code == 2, describe(result)
    assert result.exception is None or isinstance(result.exception, SystemExit), describe(result)
    assert "Traceback" not in result.output, describe(result)
    for m in mentions:
        assert m in result.output, f"{m!r} not in output:\n{describe(result)}"


def write(folder: Path, data: dict, filename: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def variant(data: dict, name: str, small_drift: float | None = None, horizon: int | None = None) -> dict:
    """A copy of a scenario mapping with another name, optionally another small-cap drift in every regime
    and another horizon (report months cut to it)."""
    data = copy.deepcopy(data)
    data["name"] = name
    if small_drift is not None:
        for regime in data["regimes"].values():
            regime["drift"]["small"] = small_drift
    if horizon is not None:
        data["horizon_months"] = horizon
        data["report_months"] = [h for h in data.get("report_months", [horizon]) if h < horizon] + [horizon]
    return data


def read_table(path: Path) -> pd.DataFrame:
    """A CSV written by capsim, with Python's exact float parsing."""
    return read_csv_exact(path)


def tree(folder: Path) -> dict:
    """Every file under ``folder`` (relative path) -> (bytes, mtime in ns)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
