"""The commands that neither simulate nor fit import neither JAX, pandas nor the fitting side (the start-up
time they buy is measured by benchmarks/startup.py); `import simulator` is light and its names still resolve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = [
    "jax",
    "pandas",
    "scipy",
    "arviz",
    "numpyro",
    "matplotlib",
    "simulator.fit.calibrate",
    "simulator.fit.posterior",
]


def imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('imported:', *(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[-1].split()[1:]


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["schema"], ["scenarios"], ["validate", "scenarios/rate_cut.yaml"], ["init", "{tmp}"]],
    ids=lambda a: a[0],
)
def test_light_commands_import_no_jax_nor_the_fit_wing(argv, tmp_path):
    argv = [a.format(tmp=tmp_path / "init") for a in argv]
    code = f"from simulator.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit as x:\n    assert not x.code"
    assert imported_after(code) == []


def test_import_simulator_is_light_and_names_resolve():
    assert imported_after("import simulator") == []
    code = (
        "import simulator as sim, types\n"
        "import simulator.batch, simulator.sweep\n"
        "assert callable(sim.batch) and not isinstance(sim.batch, types.ModuleType)\n"
        "assert callable(sim.sweep) and callable(sim.simulate) and callable(sim.calibrate.calibrate)\n"
        "assert sim.history.load_us_size_returns is sim.load_us_size_returns\n"
        "from simulator.fit.posterior import load_posterior; from simulator.posterior_file import load_posterior as l\n"
        "assert load_posterior is l"
    )
    assert set(imported_after(code)) >= {"jax", "simulator.fit.calibrate"}
