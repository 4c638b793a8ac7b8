"""Scenario cases and comparison machinery shared by the tests that check the engine against the exact
reference in ``exact.py``: two- and three-regime Gaussian scenarios, and a check of summary rows against exact
values in units of the Monte Carlo standard error."""

from __future__ import annotations

import copy
import math

import exact as ex

Z_TOL = 4.5
DKW_ALPHA = 1e-5

ASSETS = {"small": "Russell 2000", "large": "S&P 500"}
BULL = {"drift": {"small": 0.14, "large": 0.10}, "vol": {"small": 0.20, "large": 0.15}, "corr": 0.85}
BEAR = {"drift": {"small": -0.22, "large": -0.08}, "vol": {"small": 0.34, "large": 0.22}, "corr": 0.9}
RATES = {"path": {0: 4.00, 6: 3.50, 12: 3.25}, "sensitivity": {"small": -0.06, "large": -0.03}}


def two_regime(**kw) -> dict:
    """Durations + next form: bull (24 months) <-> bear (8 months)."""
    sc = {
        "name": "exact-two",
        "description": "Two Gaussian regimes for the exact-reference tests.",
        "frequency": "monthly",
        "horizon_months": 24,
        "report_months": [3, 12, 24],
        "assets": dict(ASSETS),
        "regimes": {
            "bull": {**copy.deepcopy(BULL), "duration_months": 24, "next": {"bear": 1.0}},
            "bear": {**copy.deepcopy(BEAR), "duration_months": 8, "next": {"bull": 1.0}},
        },
        "start": "stationary",
    }
    sc.update(copy.deepcopy(kw))
    return sc


def two_regime_matrix(**kw) -> dict:
    """The same chain as two_regime() (monthly) in the per-step `transitions:` form."""
    sc = two_regime(**kw)
    for r in sc["regimes"].values():
        del r["duration_months"], r["next"]
    sc["name"] = "exact-two-matrix"
    sc["transitions"] = {
        "bull": {"bull": 1 - 1 / 24, "bear": 1 / 24},
        "bear": {"bull": 1 / 8, "bear": 1 - 1 / 8},
    }
    return sc


def three_regime(**kw) -> dict:
    sc = {
        "name": "exact-three",
        "description": "Three Gaussian regimes with a phase overriding next.",
        "frequency": "monthly",
        "horizon_months": 12,
        "report_months": [3, 6, 12],
        "assets": dict(ASSETS),
        "regimes": {
            "expansion": {
                **copy.deepcopy(BULL),
                "duration_months": 30,
                "next": {"slowdown": 0.7, "recession": 0.3},
            },
            "slowdown": {
                "drift": {"small": 0.02, "large": 0.04},
                "vol": {"small": 0.24, "large": 0.17},
                "corr": 0.8,
                "duration_months": 6,
                "next": {"expansion": 0.5, "recession": 0.5},
            },
            "recession": {
                **copy.deepcopy(BEAR),
                "duration_months": 9,
                "next": {"expansion": 0.8, "slowdown": 0.2},
            },
        },
        "start": {"expansion": 0.2, "slowdown": 0.8},
        "phases": [
            {
                "until_month": 6,
                "regimes": {"slowdown": {"duration_months": 2, "next": {"recession": 0.9, "expansion": 0.1}}},
            }
        ],
    }
    sc.update(copy.deepcopy(kw))
    return sc


# --------------------------------------------------------------------------- #
# comparison machinery
# --------------------------------------------------------------------------- #
QLEVEL = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95}


def exact_and_se(d: dict, key: str, n: int, row=None):
    """(exact value, Monte Carlo standard error at n paths) for a summary column. A probability that ``row``
    (an engine's summary row) reports with its own standard error (``<key>_se``: the conditional estimator's)
    is held to that error; the share of paths (``p_outperform_count``) to the binomial one."""
    if key == "p_outperform_count":
        return d["p_outperform"], ex.se_prop(d["p_outperform"], n)
    if row is not None and f"{key}_se" in row and (key == "p_outperform" or key.endswith("_p_loss")):
        return d[key], float(row[f"{key}_se"])
    if key == "p_outperform" or key.endswith("_p_loss"):
        p = d[key]
        return p, ex.se_prop(p, n)
    if key.startswith("occupancy_"):
        return d[key], ex.se_mean(d[key + "_sd"], n)
    if key == "excess_sd":
        return d[key], ex.se_sd(d["excess_sd"], d["excess_central4"], n)
    stem, stat = key.rsplit("_", 1)
    if stat == "mean":
        return d[key], ex.se_mean(d[f"{stem}_sd"], n)
    if stat in QLEVEL:
        return d[key], ex.se_quantile(QLEVEL[stat], d[key + "_pdf"], n)
    raise KeyError(key)


def check_rows(rows: dict, exact: dict, keys, label: str):
    """rows: horizon -> mapping of column -> estimate (must hold n_paths)."""
    lines, bad = [], []
    for h, row in rows.items():
        n = int(row["n_paths"])
        for key in keys:
            value, se = exact_and_se(exact[h], key, n, row)
            est = float(row[key])
            if se == 0.0:
                z = 0.0 if abs(est - value) < 1e-6 else math.inf
            else:
                z = (est - value) / se
            line = f"{label:>28s} h={h:<3} {key:<20s} est={est:+.6f} exact={value:+.6f} se={se:.2e} z={z:+.2f}"
            lines.append(line)
            if not abs(z) < Z_TOL:
                bad.append(line)
    print("\n" + "\n".join(lines))
    assert not bad, f"estimates off the exact reference by >= {Z_TOL:.1f} SE:\n" + "\n".join(bad)


def summary_rows(res, horizons) -> dict:
    df = res.summary()
    out = {}
    for h in horizons:
        sel = df[df["horizon_months"] == h]
        assert len(sel) == 1, f"summary has {len(sel)} rows for horizon {h}"
        out[h] = sel.iloc[0].to_dict()
    return out


ALL_KEYS = (
    ["p_outperform", "excess_mean", "excess_sd"]
    + [f"excess_{q}" for q in QLEVEL]
    + [f"{a}_{s}" for a in ASSETS for s in ("mean", "median", "q05", "q95", "p_loss")]
)


def occupancy_keys(sc) -> list:
    return [f"occupancy_{k}" for k in sc["regimes"]]
