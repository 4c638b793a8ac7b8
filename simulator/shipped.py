"""The scenarios that ship with capsim: where they are, finding one by name, and copying them as a start.

In an installed package they are package data (``simulator/scenarios/``); in a source checkout, the
repository's ``scenarios/`` folder. Each starts with a ``# yaml-language-server: $schema=scenario.schema.json``
line, and the schema file sits beside them.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path

from .errors import CapsimError, combined
from .output import OutputExistsError, write_folder
from .scenario import Scenario, ScenarioError, json_schema, load_scenario

SCHEMA_FILE = "scenario.schema.json"


def shipped_dir() -> Path:
    """The folder holding the shipped scenario files."""
    packaged = Path(str(resources.files("simulator") / "scenarios"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "scenarios"  # a source checkout


def display_source(source: str | os.PathLike) -> str:
    """A scenario file as messages and reports show it: a shipped file found by its name (an absolute path into
    the shipped folder, often deep in site-packages) as 'rate_cut (shipped)', any other as given."""
    p = Path(source)
    if p.is_absolute() and p.suffix == ".yaml" and p.parent == shipped_dir():
        return f"{p.stem} (shipped)"
    return str(source)


def shipped_files() -> list[Path]:
    """The shipped scenario files, sorted by file name."""
    return sorted(shipped_dir().glob("*.yaml"))


def shipped_scenarios() -> list[Scenario]:
    """Every shipped scenario, loaded and validated (sorted by file name)."""
    return [load_scenario(f) for f in shipped_files()]


def find_shipped(name: str) -> Path | None:
    """The shipped file whose stem or scenario ``name`` is ``name`` ('rate_cut' or 'rate-cut'), else None."""
    wanted = name.removesuffix(".yaml").replace("-", "_")
    for f in shipped_files():
        if f.stem.replace("-", "_") == wanted:
            return f
    return None


def scenario_files(paths) -> list[Path]:
    """Expand folders into their *.yaml / *.yml files (sorted); keep files as given; a name that is no file
    or folder is a shipped scenario's ('rate_cut' or 'rate-cut'). Raises ``CapsimError`` for an empty folder
    or a name that is none of these."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise CapsimError(f"{p}: folder holds no *.yaml or *.yml scenario files")
            files += found
        elif p.exists():
            files.append(p)
        elif (shipped := find_shipped(str(p))) is not None:
            files.append(shipped)
        else:
            names = ", ".join(f.stem for f in shipped_files())
            raise CapsimError(f"{p}: no such file or folder, nor a shipped scenario ({names}; see `capsim scenarios`)")
    return files


def load_scenarios(paths) -> list[Scenario]:
    """Load every scenario of ``paths`` (files, folders, shipped names: ``scenario_files``), validating them all
    before returning; the problems of every bad file are reported together (one ``CapsimError``)."""
    scenarios, errors = [], []
    for f in scenario_files(paths):
        try:
            scenarios.append(load_scenario(f))
        except ScenarioError as exc:
            errors.append(exc)
    if errors:
        raise combined(errors)
    return scenarios


def schema_text() -> str:
    """The JSON Schema of scenario files as written to ``scenario.schema.json`` (what `capsim schema` prints)."""
    return json.dumps(json_schema(), indent=2) + "\n"


def init_folder(out_dir: str | os.PathLike) -> Path:
    """Copy the shipped scenarios and the JSON Schema into ``out_dir`` as a starting point. The folder appears
    complete or not at all; an existing non-empty ``out_dir`` is refused (``OutputExistsError``)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(
            f"{out}: exists and is not an empty folder", ("choose a new or empty folder", "choose a new or empty DIR")
        )

    def write(tmp: Path) -> None:
        for f in shipped_files():
            shutil.copyfile(f, tmp / f.name)
        (tmp / SCHEMA_FILE).write_text(schema_text(), encoding="utf-8")

    return write_folder(out, write)
