"""Regime odds driven by macro paths (docs/drivers.md): the `macro` section's driver paths, the per-regime
`drivers` logits, their rules, and the per-step transition matrices they imply.

Model side: used by ``scenario`` (rules, the base matrix) and ``params`` (per-step matrices); it imports
neither (it reads a scenario's fields by name) and never imports ``simulator.fit``.

Formula (monthly): for a regime i with ``drivers``, the move into month n (n >= 1) uses the drivers at month
n - 1: eta_ij = intercept_ij + sum_d beta_ijd x_d(n - 1) for every listed destination j, eta_ii = 0, and
P_ij = exp(eta_ij) / (1 + sum_l exp(eta_il)) over the listed l; unlisted destinations get 0. A step of a weekly
or daily file whose start month t/m lies in month n uses that month's matrix mapped to one step as
``duration_months`` rows are: the exits P_ij / m (j != i), the stay 1 - their sum (m steps per month). Driver
paths are linear between knots and flat beyond them, so a step in the first month uses the month-0 values.
"""

from __future__ import annotations

import math
import re

import numpy as np

POLICY_RATE = "policy_rate"  # the driver that names `rates.path` (percent)
INTERCEPT = "intercept"
MAX_MACRO_ABS = 1e6  # |driver knot value|: keeps the logits finite whatever the coefficients' draws
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def driven(sc) -> list[str]:
    """The regimes of ``sc`` whose exits are set by ``drivers``, in file order."""
    return [k for k, r in sc.regimes.items() if getattr(r, "drivers", None) is not None]


def driver_names(sc) -> list[str]:
    """The drivers the coefficient array's last axis holds (after the intercept): the `macro` paths in file
    order, then ``policy_rate`` when a regime uses it."""
    names = list(sc.macro or {})
    used = {d for k in driven(sc) for row in sc.regimes[k].drivers.values() for d in row}
    return names + ([POLICY_RATE] if POLICY_RATE in used and POLICY_RATE not in names else [])


def driver_paths(sc, months: np.ndarray) -> np.ndarray:
    """[len(months), n_drivers] values of each driver (``driver_names``) at ``months``: linear between knots,
    flat beyond them (a plain scenario: no distributions)."""
    out = []
    for name in driver_names(sc):
        path = sc.rates.path if name == POLICY_RATE else sc.macro[name]
        knots = sorted(path.items())
        out.append(np.interp(months, [k for k, _ in knots], [v for _, v in knots]))
    return np.stack(out, axis=-1) if out else np.zeros((len(months), 0))


def driver_coefficients(sc) -> tuple[np.ndarray, np.ndarray]:
    """(coef [K, K, 1 + n_drivers], listed [K, K] bool): row i, destination j: intercept then one coefficient per
    driver (``driver_names``; 0 where not given); ``listed`` marks the destinations a regime's drivers name."""
    names, drivers = sc.regime_names, driver_names(sc)
    K = len(names)
    coef = np.zeros((K, K, 1 + len(drivers)))
    listed = np.zeros((K, K), bool)
    for k in driven(sc):
        for j, row in sc.regimes[k].drivers.items():
            i, jj = names.index(k), names.index(j)
            listed[i, jj] = True
            for d, b in row.items():
                coef[i, jj, 0 if d == INTERCEPT else 1 + drivers.index(d)] = b
    return coef, listed


def step_months(n_steps: int, steps_per_year: int) -> np.ndarray:
    """[T] int: the month whose drivers the move into step t uses, max(floor(t / m) - 1, 0) (m steps a month;
    row t = 0 is the start law and never uses it)."""
    return np.maximum((12 * np.arange(n_steps)) // steps_per_year - 1, 0)


def driver_step_matrices(coef, drivers, listed, step_month, steps_per_month: float) -> np.ndarray:
    """Per-step transition matrices [..., T, K, K] from the logits (array-first: a leading draw axis ``...``
    broadcasts through).

    ``coef`` [..., K, K, 1 + n]: intercept, then one coefficient per driver, of the logit of moving i -> j
    (reference: staying); ``drivers`` [..., M, n]: the driver values at months 0..M-1; ``listed`` [K, K] bool:
    the destinations with a logit (never the diagonal); ``step_month`` [T] int: the month of ``drivers`` the
    move into step t uses (``step_months``); ``steps_per_month``: m. A row without listed destinations stays
    with probability 1 (the caller keeps its constant row there)."""
    coef, drivers = np.asarray(coef, float), np.asarray(drivers, float)
    x = drivers[..., step_month, :]  # [..., T, n]
    eta = coef[..., None, :, :, 0] + np.einsum("...ijd,...td->...tij", coef[..., 1:], x)  # [..., T, K, K]
    K = eta.shape[-1]
    eye = np.eye(K, dtype=bool)
    eta = np.where(eye, 0.0, np.where(listed, eta, -np.inf))
    top = eta.max(axis=-1, keepdims=True)  # >= 0: staying is always there
    w = np.exp(eta - top)
    monthly = w / w.sum(axis=-1, keepdims=True)
    exits = np.where(eye, 0.0, monthly) / steps_per_month
    return np.where(eye, 1.0 - exits.sum(axis=-1, keepdims=True), exits)


def apply_drivers(sc, step_trans: np.ndarray) -> np.ndarray:
    """``step_trans`` [T, K, K] (rows t >= 1: moves into step t) with the rows of the driven regimes set from
    their drivers; the other rows, and row 0, as given."""
    if not driven(sc):
        return step_trans
    T, f = step_trans.shape[0], sc.steps_per_year
    month = step_months(T, f)
    coef, listed = driver_coefficients(sc)
    mats = driver_step_matrices(coef, driver_paths(sc, np.arange(month.max() + 1)), listed, month, f / 12)
    rows = np.isin(sc.regime_names, driven(sc))[:, None]
    out = np.where(rows, mats, step_trans)
    out[0] = step_trans[0]
    return out


def base_rows(sc, P: np.ndarray) -> np.ndarray:
    """``P`` [K, K] with the driven regimes' rows at the month-0 drivers (what the first moves use)."""
    return apply_drivers(sc, np.stack([P, P]))[1] if driven(sc) else P


# --------------------------------------------------------------------------------------------
# Rules: (field path, message) pairs for a plain scenario (no distributions; those are checked on their support)


def macro_problems(sc) -> list[tuple[str, str]]:
    """The `macro` section: names, knots starting at month 0, finite values of a bounded size."""
    out = []
    for name, path in (sc.macro or {}).items():
        where = f"macro.{name}"
        if not _NAME.fullmatch(name):
            out.append((where, f"a driver name uses letters, digits, '-' and '_' only, got {name!r}"))
        if name in (POLICY_RATE, INTERCEPT):
            what = "the policy-rate path (`rates.path`)" if name == POLICY_RATE else "a logit's constant term"
            out.append((where, f"`{name}` is reserved: it names {what}; call this driver something else"))
        if not path:
            out.append((where, "give at least one knot month -> value"))
            continue
        if 0 not in path:
            out.append((where, f"knots must start at month 0 (the value the first months use), got {_knots(path)}"))
        for month, v in path.items():
            if not (math.isfinite(month) and month >= 0):
                out.append((f"{where}.{month:g}", f"knot months must be >= 0, got {month}"))
            if not (math.isfinite(v) and abs(v) <= MAX_MACRO_ABS):
                out.append(
                    (
                        f"{where}.{month:g}",
                        f"a driver value must be a finite number within +-{MAX_MACRO_ABS:g}, got {v}",
                    )
                )
    return out


def drivers_problems(sc) -> list[tuple[str, str]]:
    """Each regime's `drivers`: destinations that are other regimes, an intercept, known driver names, finite
    coefficients; never together with the regime's constant row; never overridden by a phase."""
    out = []
    names = sc.regime_names
    known = list(sc.macro or {}) + ([POLICY_RATE] if sc.rates is not None else [])
    matrix_form = sc.transitions is not None
    for k in driven(sc):
        where = f"regimes.{k}.drivers"
        r = sc.regimes[k]
        if len(names) == 1:
            out.append((where, "a single regime never leaves: remove `drivers`"))
            continue
        if matrix_form and k in sc.transitions:
            out.append(
                (
                    f"transitions.{k}",
                    f"regime {k!r} has `drivers`: give either its drivers or its `transitions` row, not both",
                )
            )
        if r.duration_months is not None or r.next is not None:
            out.append((f"regimes.{k}", "give either `drivers` or `duration_months`/`next`, not both"))
        if not r.drivers:
            out.append((where, "give at least one destination regime -> {intercept: ..., <driver>: ...}"))
        for j, row in r.drivers.items():
            if j not in names:
                out.append((f"{where}.{j}", f"unknown regime {j!r}; regimes are {names}"))
            elif j == k:
                out.append((f"{where}.{j}", "the reference is staying: list only the other regimes (destinations)"))
            if INTERCEPT not in row:
                out.append((f"{where}.{j}.{INTERCEPT}", "required: the logit's constant term"))
            for d, b in row.items():
                if d != INTERCEPT and d not in known:
                    hint = (
                        "; `policy_rate` needs a `rates` section"
                        if d == POLICY_RATE
                        else f"; drivers are {known}"
                        if known
                        else "; name it in a `macro` section first"
                    )
                    out.append((f"{where}.{j}.{d}", f"unknown driver {d!r}{hint}"))
                elif not math.isfinite(b):
                    out.append((f"{where}.{j}.{d}", f"a coefficient must be a finite number, got {b}"))
    for i, ph in enumerate(sc.phases):
        for k, o in ph.regimes.items():
            if k in driven(sc) and (o.duration_months is not None or o.next is not None):
                out.append(
                    (
                        f"phases.{i}.regimes.{k}",
                        f"regime {k!r} leaves by its `drivers`: a phase cannot override its duration_months/next",
                    )
                )
        for k in ph.transitions or {}:
            if k in driven(sc):
                out.append(
                    (
                        f"phases.{i}.transitions.{k}",
                        f"regime {k!r} leaves by its `drivers`: a phase cannot override its row",
                    )
                )
    return out


def _knots(path: dict) -> str:
    return "{" + ", ".join(f"{m:g}" for m in sorted(path)) + "}"
