"""The conditional estimator of p_outperform against the share of paths, on every shipped scenario, in one run.

For each shipped scenario, ``simulate`` + ``summary()`` + ``fan()`` at ``--paths`` paths is timed with this
checkout's capsim (conditional means and variances accumulated in the scan) and with a baseline revision's
(``--baseline``, default: the last commit without them), each in its own process (a warm-up run compiles
first), the two alternating, ``--repeats`` times. Reported per scenario and report horizon:

- ``cost``: median time (this checkout) / median time (baseline): what the extra accumulators cost;
- ``binomial``: sqrt(p (1 - p) / n), the standard error the baseline reported;
- ``count se``: the honest standard error of the share of paths (batch means over parameter draws where a
  scenario has them, else the binomial one);
- ``se``: the conditional estimator's standard error (``p_outperform_se``);
- ``se / binomial at equal time``: se x sqrt(cost) / binomial, the error the new estimator reaches in the time
  the baseline takes, against the baseline's figure; and the same against the honest count error.

    python benchmarks/conditional.py                      # 1e6 paths, 3 pairs; updates RESULTS.md
    python benchmarks/conditional.py --paths 2e5 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import bench  # noqa: E402  (machine_info, loadavg, fmt_paths, parse_counts)
import uncertainty  # noqa: E402  (write_section)

BEGIN, END = "<!-- conditional:begin -->", "<!-- conditional:end -->"
BASELINE = "3f73d1a"  # the last commit whose engine did not accumulate conditional moments

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import simulator
import yaml
from simulator.scenario import Scenario
simulator.use_cpu_cores()
data = yaml.safe_load(open(sys.argv[2]))  # fields a baseline version does not know (as_of, ...) left out
sc = simulator.parse_scenario({k: v for k, v in data.items() if k in Scenario.model_fields}, source=sys.argv[2])
n, seed = int(sys.argv[3]), int(sys.argv[4])
simulator.simulate(sc, n_paths=min(n, 1 << 17), seed=seed + 1000).summary()  # warm-up: compile (fan blocks, the rest)
t0 = time.perf_counter()
res = simulator.simulate(sc, n_paths=n, seed=seed)
summary, _ = res.summary(), res.fan()
wall = time.perf_counter() - t0
cols = [c for c in ("horizon_months", "p_outperform", "p_outperform_se", "p_outperform_count",
                    "p_outperform_count_se") if c in summary.columns]
print(json.dumps({"wall": wall, "rows": summary[cols].to_dict(orient="records")}))
"""


def baseline_source(rev: str, folder: Path) -> Path:
    """The ``simulator`` package of revision ``rev``, extracted into ``folder``."""
    archive = folder / "baseline.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "simulator"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "src", filter="data")
    return folder / "src"


def run_worker(source: Path, name: str, n: int, seed: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(source), str(ROOT / "scenarios" / f"{name}.yaml"), str(n), str(seed)],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"worker failed for {name} ({source}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, n: int, repeats: int, baseline: Path) -> dict:
    times = {"new": [], "old": []}
    rows = None
    for r in range(repeats):
        order = ("new", "old") if r % 2 == 0 else ("old", "new")  # alternate: drift in load cancels
        for which in order:
            got = run_worker(ROOT if which == "new" else baseline, name, n, seed=r)
            times[which].append(got["wall"])
            if which == "new" and rows is None:
                rows = got["rows"]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"scenario": name, "paths": n, **med, "cost": med["new"] / med["old"], "rows": rows, "runs": repeats}


def table(results: list[dict]) -> list[str]:
    lines = [
        "| scenario | horizon | p_outperform | binomial | count se | se | se / binomial at equal time "
        "| se / count se at equal time | cost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for row in res["rows"]:
            p, n = row["p_outperform"], res["paths"]
            binomial = (p * (1 - p) / n) ** 0.5
            equal = row["p_outperform_se"] * res["cost"] ** 0.5
            lines.append(
                f"| {res['scenario']} | {row['horizon_months']} | {p:.4f} | {binomial:.2e} | "
                f"{row['p_outperform_count_se']:.2e} | {row['p_outperform_se']:.2e} | {equal / binomial:.3f} | "
                f"{equal / row['p_outperform_count_se']:.3f} | {res['cost']:.3f} |"
            )
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paths", default="1e6", help="paths per run (default 1e6)")
    p.add_argument("--repeats", type=int, default=3, help="timed pairs per scenario (default 3)")
    p.add_argument("--baseline", default=BASELINE, help=f"baseline git revision (default {BASELINE})")
    p.add_argument("--scenarios", default="rate_cut,soft_landing,recession,baseline,historical")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args(argv)
    n = bench.parse_counts(args.paths)[0]
    info = bench.machine_info()
    load_before = bench.loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        source = baseline_source(args.baseline, Path(tmp))
        results = []
        for name in args.scenarios.split(","):
            print(f"[conditional] {name}, {bench.fmt_paths(n)} paths ...", flush=True)
            results.append(measure(name, n, args.repeats, source))
            r = results[-1]
            print(f"[conditional]   new {r['new']:.2f} s, baseline {r['old']:.2f} s: cost {r['cost']:.3f}", flush=True)
    text = "\n".join(
        [
            BEGIN,
            "## Conditional estimator of p_outperform: standard errors and cost",
            "",
            f"Written by `{' '.join(['python benchmarks/conditional.py', *argv])}`; {info['cpu']}, "
            f"{info['cores']} cores; capsim source {info['source']} against baseline `{args.baseline}`; load "
            f"average {load_before} before, {bench.loadavg()} after. `simulate` + `summary()` + `fan()` of each "
            f"shipped scenario at {bench.fmt_paths(n)} paths, seed 0, float32, median of {args.repeats} timed "
            "runs per version (each in its own process after a compiling warm-up, the versions alternating; the "
            "scenario files of this checkout, less the fields the baseline does not know, such as `as_of`). "
            "`binomial` is the error the baseline reported, sqrt(p (1 - p) / n); `count se` the honest error of "
            "the share of paths (batch means over parameter draws where the scenario has them); `se` the "
            "conditional estimator's; *at equal time* scales it by sqrt(cost), the paths the new code simulates "
            "in the baseline's time.",
            "",
            *table(results),
            "",
            END,
        ]
    )
    print("\n" + text)
    if not args.no_write:
        uncertainty.BEGIN, uncertainty.END = BEGIN, END
        uncertainty.write_section(HERE / "RESULTS.md", text, BEGIN, END)
        print(f"\n[conditional] wrote its section of {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
