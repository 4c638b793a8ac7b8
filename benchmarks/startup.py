"""Start-up time of the commands that neither simulate nor fit, as a ratio to the import floor.

    python benchmarks/startup.py [--repeats 7]

Times (best of ``--repeats`` runs, wall clock, each a fresh ``python``) ``python -c "import yaml, pydantic,
numpy, click"`` (the floor: what any capsim command must import) and ``python -m simulator`` with ``--help``,
``schema``, ``scenarios``, ``init DIR`` and ``validate scenarios/rate_cut.yaml``, and prints each command's
ratio to the floor. These commands import neither JAX nor the fitting side (``tests/test_startup.py`` checks
that); the target is a ratio of 2.5 or less. Run it on an idle machine: load makes both sides slower, but not
in proportion. Exit code 1 when a ratio is above ``--limit``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = [sys.executable, "-c", "import yaml, pydantic, numpy, click"]
COMMANDS = {
    "--help": ["--help"],
    "schema": ["schema"],
    "scenarios": ["scenarios"],
    "init": ["init", "{tmp}"],
    "validate": ["validate", "scenarios/rate_cut.yaml"],
}


def best_of(argv: list[str], repeats: int) -> float:
    times = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            args = [a.format(tmp=f"{tmp}/out{i}") for a in argv]
            t0 = time.perf_counter()
            subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--limit", type=float, default=2.5)
    args = ap.parse_args()
    floor = best_of(FLOOR, args.repeats)
    print(f"floor (import yaml, pydantic, numpy, click): {floor:.3f} s")
    worst = 0.0
    for name, argv in COMMANDS.items():
        t = best_of([sys.executable, "-m", "simulator", *argv], args.repeats)
        worst = max(worst, t / floor)
        print(f"capsim {name:<10} {t:.3f} s  {t / floor:.2f}x the floor")
    print(f"worst ratio {worst:.2f} (limit {args.limit})")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
