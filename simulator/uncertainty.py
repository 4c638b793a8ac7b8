"""Parameter draws: the values of a scenario's uncertain fields, one set per draw, and which paths get which.

Paths are split among draws in groups of G consecutive paths (``uncertainty.draw_paths``, default 256; a
power of two, so an engine block of 16,384 paths holds whole groups): group g gets draw g mod D, with
D = ``uncertainty.draws`` or, by default, one draw per group. Field F's values come from its own NumPy stream,
``default_rng([seed, PARAMETER_STREAM, crc32(F)])``, drawn in draw order, so draw d's value of F depends on the
seed, F and d only: not on D, the path count, the chunking or the devices, nor on the other uncertain fields.
(The paths' random numbers come from JAX's threefry keys, a separate generator.)

Externally given draws enter through ``with_parameter_draws`` (a table of D values per field path, used in place
of drawing) or through a posterior file named by ``uncertainty.posterior`` (``capsim calibrate --posterior``):
its draws, in one fixed shuffled order, become such a table (``posterior_values``).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel

from .errors import CapsimError
from .scenario import (
    ALLOWED,
    MAX_LOG_RETURN,
    OVERFLOW_SIGMAS,
    ROW_FIELDS,
    ROW_TOL,
    Dirichlet,
    Dist,
    Scenario,
    ScenarioError,
    _child,
    _is_row,
    _node,
    centred_copy,
    distributions,
    posterior_path,
    resolve,
    row_fills,
    rule_problem,
    set_values,
)

PARAMETER_STREAM = 0x5041524D  # "PARM": keeps parameter streams apart from any other use of the seed
POSTERIOR_ORDER = 0x504F5354  # "POST": the one fixed shuffle of a posterior file's draws


def sample(dist: Dist | Dirichlet, field: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` draws of ``dist`` on ``field``: [n] values, or [n, entries] for a Dirichlet row. A point mass
    (uniform [x, x], triangular [x, x, x], normal/lognormal with sd 0) gives x exactly."""
    if isinstance(dist, Dirichlet):
        return rng.dirichlet(list(dist.dirichlet.values()), n)
    a = dist.args
    if dist.family == "uniform":
        return a[0] + (a[1] - a[0]) * rng.random(n)
    if dist.family == "triangular":  # inverse CDF
        lo, mode, hi = a
        u = rng.random(n)
        if hi == lo:
            return np.full(n, lo)
        left = u * (hi - lo) < (mode - lo)
        return np.where(
            left, lo + np.sqrt(u * (hi - lo) * (mode - lo)), hi - np.sqrt((1 - u) * (hi - lo) * (hi - mode))
        )
    if dist.family == "normal":
        return a[0] + a[1] * rng.standard_normal(n)
    if dist.family == "lognormal":
        return a[0] * np.exp(a[1] * rng.standard_normal(n))
    b = rng.beta(a[0], a[1], n)
    return 2 * b - 1 if field == "corr" else b


def law(dist: Dist, field: str):
    """``dist`` on ``field`` as a frozen ``scipy.stats`` distribution (a beta on ``corr`` mapped to [-1, 1]), or
    None for a point mass (uniform [x, x], triangular [x, x, x], normal/lognormal with sd 0)."""
    from scipy import stats  # imported when quantiles are asked for (sensitivity, solve)

    a = dist.args
    if dist.family in ("uniform", "triangular") and a[-1] == a[0]:
        return None
    if dist.family in ("normal", "lognormal") and a[1] == 0:
        return None
    if dist.family == "uniform":
        return stats.uniform(a[0], a[1] - a[0])
    if dist.family == "triangular":
        return stats.triang((a[1] - a[0]) / (a[2] - a[0]), loc=a[0], scale=a[2] - a[0])
    if dist.family == "normal":
        return stats.norm(a[0], a[1])
    if dist.family == "lognormal":
        return stats.lognorm(a[1], scale=a[0])
    return stats.beta(a[0], a[1], loc=-1, scale=2) if field == "corr" else stats.beta(a[0], a[1])


def quantile(dist: Dist, field: str, u: np.ndarray) -> np.ndarray:
    """The ``u``-quantiles (``u`` in (0, 1)) of ``dist`` on ``field``, in the field's unit (the inverse of its
    distribution function; a point mass gives its value at every ``u``)."""
    u = np.asarray(u, float)
    frozen = law(dist, field)
    return np.full(u.shape, dist.args[0]) if frozen is None else frozen.ppf(u)


def field_stream(seed: int, path: str) -> np.random.Generator:
    """The NumPy generator of the uncertain field at ``path`` for a run with ``seed``."""
    return np.random.default_rng([int(seed), PARAMETER_STREAM, zlib.crc32(path.encode())])


def draw_values(sc: Scenario, seed: int, n_draws: int) -> dict[str, np.ndarray]:
    """The first ``n_draws`` draws of every uncertain field of ``sc``: dotted field path -> [n_draws] values (a
    Dirichlet row gives one path per entry, ``regimes.expansion.next.slowdown``). Externally given draws
    (``with_parameter_draws``) are taken as they are, in place of any distribution at the same paths."""
    values = {}
    given = given_draws(sc) or {}
    for path, (field, dist) in distributions(sc).items():
        if path in given:
            continue
        x = sample(dist, field, field_stream(seed, path), n_draws)
        if isinstance(dist, Dirichlet):
            values.update({f"{path}.{k}": x[:, i] for i, k in enumerate(dist.dirichlet)})
        else:
            values[path] = x
    return {**values, **{path: v[:n_draws] for path, v in given.items()}}


def n_draws(sc: Scenario, n_groups: int) -> int:
    """D: the number of parameter draws of a run of ``n_groups`` groups of paths (1 without uncertainty)."""
    if not sc.is_uncertain:
        return 1
    if given := given_draws(sc):
        return len(next(iter(given.values())))
    if sc.uncertainty is not None and sc.uncertainty.draws is not None:
        return sc.uncertainty.draws
    return n_groups


def given_draws(sc: Scenario) -> dict[str, np.ndarray] | None:
    """Externally given parameter draws: ``with_parameter_draws``' table, else the draws of the scenario's
    posterior file (``posterior_values``), else None."""
    if sc.draw_values is not None:
        return sc.draw_values
    return posterior_values(sc) if posterior_path(sc) is not None else None


def posterior_values(sc: Scenario) -> dict[str, np.ndarray]:
    """The draws of the posterior file that ``sc`` names (``uncertainty.posterior``) as a ``with_parameter_draws``
    table: per regime and asset the annualised drift and vol of the log return, the correlation (two assets; with
    more, the correlation matrices stay the scenario's), each transition row (per step, renormalised to sum to 1)
    and, when the scenario gives ``start`` as probabilities, each draw's own start law (its filtered regime
    probabilities at the last date, moved one step on).

    The file's draws (chains one after another) are taken in one fixed shuffled order, the same for every run, so
    that a run of fewer groups than draws uses draws spread over all chains rather than the start of the first;
    ``uncertainty.draws``, when given, keeps the first that many of that order. Raises ``ScenarioError`` naming
    ``uncertainty.posterior`` when the file does not fit the scenario (other regimes, assets or frequency) and
    ``PosteriorFileError`` when it is missing, changed (SHA-256) or unreadable."""
    try:
        post = _read_posterior(str(posterior_path(sc).resolve()), sc.uncertainty.sha256)
    except CapsimError as exc:  # the file's own problem, said as the scenario field that names it
        fix = f"; {exc.fix[1]}" if exc.fix else ""
        raise ScenarioError(sc.source, [("uncertainty.posterior", exc.message + fix)]) from None
    regimes, assets = tuple(sc.regime_names), tuple(sc.asset_keys)
    problems = []
    for what, theirs, ours in (
        ("regimes", post.regimes, regimes),
        ("assets", post.assets, assets),
        ("frequency", post.frequency, sc.frequency),
    ):
        if theirs != ours:
            problems.append(
                (
                    "uncertainty.posterior",
                    f"the posterior file's {what} {theirs!r} are not the scenario's {ours!r}: a posterior file "
                    "belongs to the scenario written with it; re-run `capsim calibrate --posterior`",
                )
            )
    problems += _form_problems(sc, post)
    D = post.n_draws
    keep = sc.uncertainty.draws
    if keep is not None and keep > D:
        problems.append(("uncertainty.draws", f"the posterior file holds {D} draws, fewer than the {keep} asked for"))
    if problems:
        raise ScenarioError(sc.source, problems)
    order = np.random.default_rng([PARAMETER_STREAM, POSTERIOR_ORDER]).permutation(D)[:keep]
    arrays = {k: getattr(post, k)[order] for k in ("drift", "vol", "corr", "transition", "start")}
    coef = None if post.coef is None else post.coef[order]
    table = model_draws_table(
        regimes, assets, **arrays, with_start=isinstance(sc.start, dict), coef=coef, drivers=post.drivers
    )
    return with_parameter_draws(sc, table).draw_values


def _form_problems(sc: Scenario, post) -> list[tuple[str, str]]:
    """Why the posterior file's transition draws cannot fill ``sc``: a constant-matrix posterior needs the
    `transitions` form; one with drivers (``coef``) needs every regime's `drivers` block with the file's drivers."""
    field = "uncertainty.posterior"
    if post.coef is None:
        if sc.transitions is None:
            return [
                (
                    field,
                    "posterior draws without drivers need the `transitions` form (as `capsim calibrate` writes); a "
                    "scenario with `drivers` needs a posterior sampled with them (`capsim calibrate --posterior "
                    "--drivers ...`)",
                )
            ]
        return []
    problems = []
    if sc.transitions is not None:
        problems.append(
            (
                field,
                f"the posterior file's transitions are logits of {list(post.drivers)}: the scenario needs "
                "`drivers` blocks (as `capsim calibrate --posterior --drivers` writes), not `transitions`",
            )
        )
    terms = ["intercept", *post.drivers]
    for name, r in sc.regimes.items():
        others = [j for j in sc.regimes if j != name]
        have = {j: sorted(row) for j, row in (r.drivers or {}).items()}
        if have != {j: sorted(terms) for j in others}:
            problems.append(
                (
                    f"regimes.{name}.drivers",
                    f"the posterior file gives the logits {terms} of leaving {name!r} for each of {others}; the "
                    f"scenario has {have or 'no drivers block'}",
                )
            )
    return problems


def model_draws_table(
    regimes,
    assets,
    drift,
    vol,
    corr,
    transition,
    start,
    *,
    with_start: bool = True,
    coef: np.ndarray | None = None,
    drivers: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """Draws of a calibrated model (``capsim calibrate``'s scenario, ``transitions`` form) as a
    ``with_parameter_draws`` table: annualised drift and vol of the log return [D, K, A], correlations
    [D, K, A, A] (used with two assets), per-step transition matrices [D, K, K] and start laws [D, K] (rows
    renormalised to sum to 1 in float64). With ``coef`` [D, K, K, 1 + n] (logits of leaving, per unit of
    ``drivers``; ``calibrate --posterior --drivers``), the `drivers` blocks' coefficients
    (``regimes.<r>.drivers.<to>.<intercept|driver>``) in place of the transition rows."""
    table = {}
    for k, r in enumerate(regimes):
        for a, asset in enumerate(assets):
            table[f"regimes.{r}.drift.{asset}"] = drift[:, k, a]
            table[f"regimes.{r}.vol.{asset}"] = vol[:, k, a]
        if len(assets) == 2:
            table[f"regimes.{r}.corr"] = corr[:, k, 0, 1]
        if coef is not None:
            for i, j in enumerate(regimes):
                if i != k:
                    terms = ("intercept", *drivers)
                    table.update({f"regimes.{r}.drivers.{j}.{t}": coef[:, k, i, n] for n, t in enumerate(terms)})
            continue
        row = np.asarray(transition[:, k], float)
        row = row / row.sum(axis=1, keepdims=True)
        table.update({f"transitions.{r}.{j}": row[:, i] for i, j in enumerate(regimes)})
    if with_start:
        law = np.asarray(start, float) / np.sum(start, axis=1, keepdims=True)
        table.update({f"start.{r}": law[:, k] for k, r in enumerate(regimes)})
    return table


@functools.lru_cache(maxsize=8)
def _read_posterior(path: str, sha256: str | None):
    """The posterior file at ``path`` (read once per path and SHA-256 in a process: batches and sweeps reuse it)."""
    from .posterior_file import load_posterior  # reads netCDF through arviz only when a file is read

    return load_posterior(path, sha256)


def draw_scenarios(sc: Scenario, values: dict[str, np.ndarray]) -> list[Scenario]:
    """One plain scenario per draw: ``sc`` with draw d's value at every path of ``values`` (``resolve``)."""
    n = len(next(iter(values.values()))) if values else 1
    centred = centred_copy(sc)
    rows = row_fills(sc, centred, values)
    return [set_values(centred, {path: v[d] for path, v in values.items()}, rows) for d in range(n)]


def with_parameter_draws(sc: Scenario, values: Mapping[str, np.typing.ArrayLike]) -> Scenario:
    """A copy of ``sc`` carrying D externally given parameter sets (e.g. posterior draws), run like the draws of
    distributions: group g of a run (``uncertainty.draw_paths`` paths) gets set g mod D (D = the arrays' length).

    ``values`` maps dotted field paths, as validation names them, to D numbers each: a drift, vol, correlation
    (two assets), tails, duration, rate knot, sensitivity, driver knot or logit coefficient
    (``regimes.bull.drift.small``, ``rates.sensitivity.small``, ``rates.path.12``, ``macro.credit_spread.12``,
    ``regimes.bull.drivers.bear.credit_spread``, ``phases.0.regimes.bull.vol.large``) or one entry of a
    probability row (``transitions.bull.bear``, ``regimes.bull.next.bear``, ``start.bull``). The field must exist
    in ``sc`` (as a number or a distribution, which the draws replace). A row given whole must sum to 1 within
    1e-9 in every draw; in a row given in part, the other entries are rescaled in proportion to fill it.
    Raises ``ScenarioError`` naming each field whose values break its rule (a negative vol, a probability
    outside [0, 1], ...), a path that names no such field, or arrays of different lengths."""
    plain = resolve(sc, {})
    problems, table = [], {}
    m = sc.steps_per_year / 12
    for path, raw in values.items():
        x = np.asarray(raw, dtype=float)
        field = _field_name(plain, path)
        if field not in ALLOWED:
            problems.append(
                (
                    path,
                    "not a field that can take parameter draws (a drift, vol, two-asset corr, tails, duration, "
                    "rate knot, sensitivity, driver knot, logit coefficient or probability-row entry of this "
                    "scenario)",
                )
            )
        elif x.ndim != 1 or len(x) == 0:
            problems.append((path, f"give a non-empty 1-d array of finite numbers, got shape {x.shape}"))
        elif not np.all(np.isfinite(x)):
            bad = np.flatnonzero(~np.isfinite(x))
            problems.append(
                (
                    path,
                    f"{len(bad)} of the {len(x)} draws are not finite numbers (NaN or infinity), draw {bad[0]} first",
                )
            )
        elif problem := overflow_problem(field, x, sc.horizon_months):
            problems.append((path, problem))
        elif problem := rule_problem(field, x.min(), x.max(), f"the range [{x.min():g}, {x.max():g}] of the draws", m):
            problems.append((path, problem))
        else:
            table[path] = x
    lengths = {len(x) for x in table.values()}
    if len(lengths) > 1:
        problems.append(("", f"every field needs the same number of draws, got lengths {sorted(lengths)}"))
    if not problems:
        for row, entries in _full_rows(plain, table).items():
            total = sum(table[p] for p in entries).tolist()
            worst = int(np.argmax(np.abs(np.subtract(total, 1))))
            if abs(total[worst] - 1) > ROW_TOL:
                problems.append(
                    (
                        row,
                        f"the given draws must sum to 1 (within {ROW_TOL:g}); draw {worst} sums to {total[worst]!r}",
                    )
                )
    if problems:
        raise ScenarioError(sc.source, problems)
    out = sc.model_copy()
    out._draw_values = table or None
    return out


def overflow_problem(field: str, x: np.ndarray, horizon_months: int) -> str | None:
    """Why drift or vol draws ``x`` would overflow the engine over ``horizon_months`` (``scenario.MAX_LOG_RETURN``
    reached by |drift| x years or OVERFLOW_SIGMAS x vol x sqrt(years) alone), else None."""
    years = horizon_months / 12
    size = {"drift": np.abs(x) * years, "vol": OVERFLOW_SIGMAS * np.abs(x) * np.sqrt(years)}.get(field)
    if size is None or size.max() <= MAX_LOG_RETURN:
        return None
    d = int(np.argmax(size))
    return (
        f"draw {d} ({x[d]:.4g}, annualised) gives log returns up to {size[d]:.3g} over {horizon_months} months, past "
        f"the limit {MAX_LOG_RETURN:g} beyond which the simulation's float32 numbers overflow"
    )


def _field_name(root, path: str) -> str | None:
    """The model attribute holding the number at ``path`` (``vol``, ``next``, ...), or None where ``path`` names
    no number (or a correlation matrix entry, which stays fixed)."""
    node, field = root, None
    try:
        for part in path.split("."):
            if isinstance(node, list) and field == "corr":  # a correlation matrix's entry stays fixed
                return None
            field = part if isinstance(node, BaseModel) else field
            node = _child(node, part)
    except (KeyError, AttributeError, ValueError, IndexError):
        return None
    return field if isinstance(node, float) else None


def _full_rows(plain: Scenario, table: dict) -> dict[str, list[str]]:
    """Probability rows every entry of which ``table`` gives: row path -> entry paths."""
    rows: dict[str, list[str]] = {}
    for path in table:
        if _field_name(plain, path) in ROW_FIELDS:
            rows.setdefault(path.rsplit(".", 1)[0], []).append(path)
    return {
        row: entries for row, entries in rows.items() if _is_row(plain, row) and len(entries) == len(_node(plain, row))
    }


def across_draws(values: np.ndarray) -> np.ndarray:
    """The 5%, 50% and 95% points (np.quantile, linear) of per-draw figures ``values`` [D, ...] over draws."""
    return np.quantile(values, [0.05, 0.5, 0.95], axis=0)
