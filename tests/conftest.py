"""Shared fixtures for the scenario-validation and CLI tests.

Everything here follows the documented contract (docs/scenarios.md: scenario file; docs/outputs.md: outputs;
docs/cli.md: commands). The fixtures hand out *fresh* dicts on every call so that tests can mutate
them freely.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

# The CLI keeps compiled kernels in ~/.cache/capsim/xla; tests leave the home folder alone (the cache has its
# own test, in a temporary folder).
os.environ["CAPSIM_CACHE_DIR"] = ""


# --------------------------------------------------------------------------------------------
# Scenario builders
# --------------------------------------------------------------------------------------------

BASE_SCENARIO = {
    "name": "unit-test",
    "description": "Three-regime test scenario (duration/next form).",
    "sources": ["test fixture, made-up numbers"],
    "frequency": "monthly",
    "horizon_months": 24,
    "report_months": [3, 6, 12, 24],
    "assets": {"small": "Russell 2000", "large": "S&P 500"},
    "compare": ["small", "large"],
    "regimes": {
        "expansion": {
            "drift": {"small": 0.10, "large": 0.09},
            "vol": {"small": 0.20, "large": 0.15},
            "corr": 0.85,
            "duration_months": 36,
            "next": {"slowdown": 0.7, "recession": 0.3},
        },
        "slowdown": {
            "drift": {"small": 0.02, "large": 0.04},
            "vol": {"small": 0.24, "large": 0.17},
            "corr": 0.88,
            "duration_months": 12,
            "next": {"expansion": 0.6, "recession": 0.4},
        },
        "recession": {
            "drift": {"small": -0.25, "large": -0.15},
            "vol": {"small": 0.35, "large": 0.25},
            "corr": 0.9,
            "tails": 5,
            "duration_months": 9,
            "next": {"expansion": 1.0},
        },
    },
    "start": "stationary",
}

# Same two assets, same parameters in every regime: small and large are exchangeable, so
# p_outperform is ~0.5 at every horizon. Short horizon keeps the CLI runs fast.
NEUTRAL_SCENARIO = {
    "name": "neutral",
    "description": "Exchangeable assets: no edge either way.",
    "frequency": "monthly",
    "horizon_months": 12,
    "report_months": [3, 6, 12],
    "assets": {"small": "Small caps", "large": "Large caps"},
    "regimes": {
        "calm": {
            "drift": {"small": 0.06, "large": 0.06},
            "vol": {"small": 0.18, "large": 0.18},
            "corr": 0.5,
            "duration_months": 24,
            "next": {"stormy": 1.0},
        },
        "stormy": {
            "drift": {"small": -0.10, "large": -0.10},
            "vol": {"small": 0.30, "large": 0.30},
            "corr": 0.5,
            "duration_months": 6,
            "next": {"calm": 1.0},
        },
    },
    "start": "stationary",
}


def _fresh(d: dict) -> dict:
    return copy.deepcopy(d)


@pytest.fixture
def scenario() -> dict:
    """A valid three-regime scenario dict (duration/next form, start: stationary)."""
    return _fresh(BASE_SCENARIO)


@pytest.fixture(scope="session")
def make_scenario():
    """Factory: a fresh copy of the valid base scenario (for tests that need several)."""
    return lambda: _fresh(BASE_SCENARIO)


@pytest.fixture
def neutral_scenario() -> dict:
    """A valid two-regime scenario where small and large are exchangeable (p_outperform ~ 0.5)."""
    return _fresh(NEUTRAL_SCENARIO)


@pytest.fixture(scope="session")
def make_neutral():
    return lambda: _fresh(NEUTRAL_SCENARIO)


def write_yaml_file(folder: Path, data, filename: str = "scenario.yaml") -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def write_scenario(tmp_path):
    """Factory: write a dict (or raw YAML text) to a file under tmp_path and return its Path.

    write_scenario(data, filename="scenario.yaml", folder=None)
    """

    def _write(data, filename: str = "scenario.yaml", folder: Path | None = None) -> Path:
        target = Path(folder) if folder is not None else tmp_path / "scenarios"
        if isinstance(data, str):
            target.mkdir(parents=True, exist_ok=True)
            path = target / filename
            path.write_text(data, encoding="utf-8")
            return path
        return write_yaml_file(target, data, filename)

    return _write


# --------------------------------------------------------------------------------------------
# Error inspection helpers (fixtures rather than importable functions so that the tests work
# whatever pytest import mode / tests/__init__.py layout the project picks)
# --------------------------------------------------------------------------------------------


def _paths(err) -> list[str]:
    return [str(p[0]) for p in err.problems]


def _matches(reported: str, wanted: str, prefix: bool) -> bool:
    if reported == wanted:
        return True
    return prefix and reported.startswith(wanted + ".")


@pytest.fixture
def reject():
    """Parse a scenario dict that must be rejected; return the ScenarioError.

    reject(data, *paths, prefix=False, source="test-source")

    Each wanted path is a string, or a tuple of acceptable alternatives (any one must be reported).

    Asserts: ScenarioError (a ValueError) is raised, err.source is the source name, err.problems is
    a non-empty list of (field_path, message) tuples, every wanted field path is among them (exactly,
    or, with prefix=True, the path itself or something below it), and str(err) names the source and
    every reported field path.
    """
    import simulator as sim

    def _reject(data, *wanted, prefix: bool = False, source: str = "test-source"):
        with pytest.raises(sim.ScenarioError) as excinfo:
            sim.parse_scenario(data, source=source)
        err = excinfo.value
        assert isinstance(err, ValueError)
        assert str(err.source) == source
        assert isinstance(err.problems, list) and err.problems, "problems must be a non-empty list"
        for item in err.problems:
            assert len(item) == 2, f"problem {item!r} is not a (field_path, message) pair"
        reported = _paths(err)
        for w in wanted:
            options = (w,) if isinstance(w, str) else tuple(w)
            assert any(_matches(r, o, prefix) for r in reported for o in options), (
                f"expected a problem at {' or '.join(map(repr, options))}"
                f"{' (or below)' if prefix else ''}; got {err.problems!r}"
            )
        text = str(err)
        assert source in text, f"str(err) does not name the source: {text!r}"
        for r in reported:
            if r:
                assert r in text, f"str(err) does not name field {r!r}: {text!r}"
        return err

    return _reject


@pytest.fixture
def accept():
    """Parse a scenario dict that must be accepted; return the parsed scenario."""
    import simulator as sim

    def _accept(data, source: str = "test-source"):
        try:
            return sim.parse_scenario(data, source=source)
        except sim.ScenarioError as err:  # pragma: no cover - failure path
            pytest.fail(f"valid scenario rejected: {err.problems!r}")

    return _accept
