"""Scenario files: the YAML schema, its validation, and the per-step transition matrices it implies.

Everything a user can get wrong in a scenario file is caught here and reported at once, as
``ScenarioError`` naming the file and the dotted field path of every problem.
Units: drift/vol are annualised (log returns); durations and horizons are months; a per-step
transition matrix is at the file's frequency.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import math
import re
import reprlib
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from . import drivers as _drivers
from .errors import CapsimError

STEPS_PER_YEAR = {"monthly": 12, "weekly": 52, "daily": 252}
DEFAULT_REPORT_MONTHS = (3, 6, 12, 24, 36, 60)
ROW_TOL = 1e-9
NAME_RE = re.compile(r"[A-Za-z0-9_-]+")  # matched whole (``fullmatch``: "a\n" is not a name)

# Limits (docs/scenarios.md, "Limits"): what a file may hold, so that reading, validating and running it
# stays within seconds and a bounded memory whatever it says.
MAX_FILE_BYTES = 1_000_000  # a scenario file's size
MAX_YAML_NODES = 100_000  # values in the file once its aliases are expanded
MAX_YAML_DEPTH = 64  # nesting of lists and mappings, aliases expanded
MAX_NAME_CHARS = 64
MAX_HORIZON_MONTHS = 1200  # 100 years: 25,200 daily steps
MAX_REGIMES = 16
MAX_ASSETS = 16
MAX_DRAWS = 1_000_000  # uncertainty.draws
BLOCK_PATHS = 1 << 14  # paths per engine block: the unit of randomness (simulator.params)
MIN_DRAW_PATHS = 8  # uncertainty.draw_paths: a power of two in MIN_DRAW_PATHS..BLOCK_PATHS
DEFAULT_DRAW_PATHS = 256  # paths per parameter draw by default (benchmarks/RESULTS.md, `groups`)
MAX_RATE_PERCENT = 10_000.0  # |rate knot|, percent
MAX_LOG_RETURN = 85.0  # |log return| over the horizon: float32's exp overflows past 88.7
OVERFLOW_SIGMAS = 6  # standard deviations of the log return counted towards that bound

Num = Annotated[float, Field(strict=True)]
Int = Annotated[int, Field(strict=True)]


class ScenarioError(CapsimError):
    """A scenario that cannot be simulated; ``problems`` lists ``(field_path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = str(source)
        self.problems = list(problems)
        lines = [f"{self.source}: {len(self.problems)} problem(s) in the scenario:"]
        lines += [f"  - {path or '<file>'}: {msg}" for path, msg in self.problems]
        super().__init__("\n".join(lines))


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlong = 40
_SHORT.maxlist = _SHORT.maxdict = 6
_SHORT.maxlevel = 3


def short_repr(value) -> str:
    """``repr(value)`` cut to about 80 characters (long text, big numbers and deep structures abridged)."""
    return _SHORT.repr(value)


# The plausibility checks behind warnings (``scenario_warnings``), by the name `silence_warnings` takes.
WARNING_CHECKS = ("drift", "vol", "sensitivity", "rates", "undefined_mean")


class ScenarioWarning(NamedTuple):
    """An allowed value that is likely a slip: which ``check`` (``WARNING_CHECKS``), the field, what and why."""

    check: str
    path: str
    message: str

    def text(self, source: str) -> str:
        return f"{source}: {self.path}: {self.message} (if meant, add `silence_warnings: [{self.check}]`)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# What each field means, with its unit: the JSON Schema's descriptions (``capsim schema``) and the reference.
DOC = {
    "drift": "Annualised mean of the log return (continuously compounded), per asset: 0.10 = 10% a year.",
    "vol": "Annualised standard deviation of the log return, per asset (>= 0): 0.20 = 20% a year.",
    "corr": "Correlation of the assets' shocks: a number in [-1, 1] for two assets, else a full matrix (list of "
    "lists, asset order) that is symmetric, unit-diagonal and positive semi-definite.",
    "tails": "Student-t degrees of freedom (> 2) of the shocks, rescaled to unit variance; omit for Gaussian.",
    "duration_months": "Expected stay in the regime once entered, in months (at least one step); the per-step "
    "exit probability is 1 / (duration_months x steps per month).",
    "next": "Where the chain goes when it leaves the regime: regime -> probability (each in [0, 1], summing to "
    "1, never the regime itself).",
    "transitions": "Per-step transition matrix at the file's frequency: regime -> (regime -> probability), each "
    "row summing to 1 within 1e-9. Give either this or duration_months + next on every regime.",
    "drivers": "Logits of leaving the regime, driven by the `macro` paths (docs/drivers.md): destination regime -> "
    "{intercept: number, <driver>: coefficient per unit of the driver}; the move into month t uses the drivers at "
    "month t-1, staying is the reference. Replaces the regime's constant row (duration_months/next or its "
    "`transitions` row).",
    "macro": "Named driver paths for `drivers`: name -> (month -> value in the driver's unit, e.g. credit_spread "
    "in percentage points); linear between knots, flat beyond them; the first knot is month 0. `policy_rate` "
    "names `rates.path` and needs no entry here.",
}


def _field(key: str, default=..., description: str | None = None):
    return Field(default, description=description or DOC[key])


# --------------------------------------------------------------------------------------------
# Distributions in place of numbers (docs/scenarios.md, "Distributions")

FAMILIES = ("uniform", "triangular", "normal", "lognormal", "beta")


class Dist(_Strict):
    """A distribution in place of a number: exactly one family. Draws are made per parameter draw
    (``simulator.uncertainty``); validation checks the family's whole support against the field's rules."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1})

    uniform: list[Num] | None = Field(None, min_length=2, max_length=2, description="[low, high], in the field's unit.")
    triangular: list[Num] | None = Field(
        None, min_length=3, max_length=3, description="[low, mode, high], in the field's unit."
    )
    normal: list[Num] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[mean, sd], in the field's unit; only on unbounded fields (drifts, sensitivities, rate knots).",
    )
    lognormal: list[Num] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[median, sd of the log]: median x exp(sd_log x Z), on (0, inf); only on vols.",
    )
    beta: list[Num] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[a, b] shape parameters: a probability (one entry of a row), or a correlation mapped to "
        "[-1, 1] as 2 B - 1.",
    )

    @model_validator(mode="after")
    def _one_family(self):
        given = [f for f in FAMILIES if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one distribution family of {', '.join(FAMILIES)}, got {given or 'none'}")
        return self

    @model_serializer
    def _as_written(self) -> dict:
        return {self.family: list(self.args)}

    @property
    def family(self) -> str:
        return next(f for f in FAMILIES if getattr(self, f) is not None)

    @property
    def args(self) -> tuple[float, ...]:
        return tuple(getattr(self, self.family))

    def __str__(self) -> str:
        return f"{self.family} [{', '.join(f'{v:g}' for v in self.args)}]"


class Dirichlet(_Strict):
    """A whole probability row (``next``, a ``transitions`` row or a ``start`` mapping) drawn from a Dirichlet law."""

    dirichlet: dict[str, Num] = Field(
        description="Regime -> concentration (> 0): the row's mean is concentration / total; the larger the "
        "total, the tighter the row."
    )

    def __str__(self) -> str:
        return "dirichlet {" + ", ".join(f"{k}: {v:g}" for k, v in self.dirichlet.items()) + "}"


def _value_tag(v) -> str:
    return "<dist>" if isinstance(v, (dict, Dist)) else "<number>"


def _row_tag(v) -> str:
    if isinstance(v, Dirichlet) or (
        isinstance(v, dict) and list(v) == ["dirichlet"] and isinstance(v["dirichlet"], dict)
    ):
        return "<dirichlet>"
    return "<row>"


def _corr_tag(v) -> str:
    return "<matrix>" if isinstance(v, list) else _value_tag(v)


# A number or a distribution (pydantic picks the branch from the input's type, so errors name one branch).
Value = Annotated[Annotated[Num, Tag("<number>")] | Annotated[Dist, Tag("<dist>")], Discriminator(_value_tag)]
# A probability row: entries that are numbers (one of them may be a distribution), or a whole Dirichlet row.
Row = Annotated[
    Annotated[dict[str, Value], Tag("<row>")] | Annotated[Dirichlet, Tag("<dirichlet>")], Discriminator(_row_tag)
]


def _corr_as_written(v):
    """A correlation as written: a number, a matrix (lists of numbers) or a distribution's {family: args}."""
    return v.model_dump() if isinstance(v, Dist) else v


# The serializer picks the branch itself: pydantic before 2.9 serialised this union by trying its members in
# order and called Dist's model serializer on a matrix (a list), whose AttributeError ended the dump.
Corr = Annotated[
    Annotated[Num, Tag("<number>")] | Annotated[Dist, Tag("<dist>")] | Annotated[list[list[Num]], Tag("<matrix>")],
    Discriminator(_corr_tag),
    PlainSerializer(_corr_as_written),
]


class RegimeSpec(_Strict):
    """One regime: annualised log-return drift and vol per asset, correlation, optional tails and exits."""

    drift: dict[str, Value] = _field("drift")
    vol: dict[str, Value] = _field("vol")
    corr: Corr = _field("corr")
    tails: Value | None = _field("tails", None)
    duration_months: Value | None = _field("duration_months", None)
    next: Row | None = _field("next", None)
    drivers: dict[str, dict[str, Value]] | None = _field("drivers", None)


class RegimeOverride(_Strict):
    """A phase's partial override of a regime: any field of a regime; per-asset maps may be partial."""

    drift: dict[str, Value] | None = _field("drift", None)
    vol: dict[str, Value] | None = _field("vol", None)
    corr: Corr | None = _field("corr", None)
    tails: Value | None = _field("tails", None)
    duration_months: Value | None = _field("duration_months", None)
    next: Row | None = _field("next", None)


class Phase(_Strict):
    """A time window whose overrides apply to the steps in months [previous until_month, until_month)."""

    until_month: Num = Field(
        description="End of the window in months from the start (exclusive); windows in "
        "increasing order, within horizon_months."
    )
    regimes: dict[str, RegimeOverride] = Field({}, description="Regime name -> the fields that change in this window.")
    transitions: dict[str, Row] | None = _field(
        "transitions", None, "Per-step transition matrix in this window (only when the file uses the transitions form)."
    )


class Rates(_Strict):
    """A policy-rate overlay: each step adds sensitivity x (rate change over the step) to the log return."""

    path: dict[Num, Value] = Field(
        description="Month -> policy rate in percent (4.00 = 4%); linear between knots, flat after the last."
    )
    sensitivity: dict[str, Value] = Field(
        description="Per asset: change of the log return per +1 percentage "
        "point of the rate (-0.06: a 1 pp cut adds 6%)."
    )

    @field_validator("path", mode="before")
    @classmethod
    def _numeric_keys(cls, path):
        """Knot months written as strings ('12', '12.0': JSON has no other keys, so a scenario saved in
        meta.json or written as JSON) are the numbers they spell; any other key is left for validation."""
        return _numeric_knots(path)


def _numeric_knots(path):
    if not isinstance(path, dict):
        return path
    return {_number(k) if isinstance(k, str) else k: v for k, v in path.items()}


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


class Expect(_Strict):
    """A check for `capsim check`: a summary figure at a horizon, between two numbers or above/below a number
    or another figure."""

    metric: str = Field(
        description="A summary.csv column: p_outperform, excess_median, <asset>_var95, occupancy_<regime>, ..."
    )
    horizon_months: Int = Field(description="A report horizon, in months.")
    between: list[Num] | None = Field(None, min_length=2, max_length=2, description="[low, high], inclusive.")
    above: Num | str | None = Field(None, description="A number, or another metric at the same horizon.")
    below: Num | str | None = Field(None, description="A number, or another metric at the same horizon.")


class Uncertainty(_Strict):
    """Parameter uncertainty settings: how many parameter draws the paths are split among, or the posterior
    draws written by `capsim calibrate --posterior` (docs/calibrate.md)."""

    draws: Int | None = Field(
        None,
        description="Number of parameter draws D: group g of draw_paths paths gets draw g mod D (default: one "
        "draw per group; with a posterior file, every draw in it).",
    )
    draw_paths: Int | None = Field(
        None,
        description="Paths per parameter draw G (a group of paths): a power of two from 8 to 16,384 (default 256).",
    )
    posterior: str | None = Field(
        None, description="Posterior draws (netCDF, from `capsim calibrate --posterior`), relative to this file."
    )
    sha256: str | None = Field(None, description="SHA-256 of the posterior file; a changed file is refused.")


class Scenario(_Strict):
    """A capsim scenario file: regimes, how long each lasts and where it leads, an optional policy-rate path,
    fat tails and checks. Build it with ``load_scenario``/``parse_scenario``."""

    name: str = Field(description="Letters, digits, '-' and '_'; names the output folder.")
    description: str = Field("", description="What the scenario says, in a sentence or two.")
    sources: list[str] = Field([], description="Where the numbers come from, one line each.")
    as_of: _dt.date | None = Field(
        None, description="The date of the facts behind the numbers (YYYY-MM-DD): the day the scenario starts from."
    )
    frequency: Literal["monthly", "weekly", "daily"] = Field(
        description="Step length: monthly (12 steps a year), weekly (52) or daily (252)."
    )
    horizon_months: Int = Field(description="Longest horizon simulated, in months.")
    report_months: list[Int] | None = Field(
        None,
        description="Report horizons in months (default: those of 3, 6, 12, 24, 36, 60 within the horizon, plus it).",
    )
    assets: dict[str, str] = Field(description="Ordered mapping, at least two: asset key -> label.")
    compare: list[str] | None = Field(
        None, description="[first, second]: excess return = first minus second (default: the first two assets)."
    )
    regimes: dict[str, RegimeSpec] = Field(description="One or more regimes, in order: name -> parameters.")
    transitions: dict[str, Row] | None = _field("transitions", None)
    start: str | Row = Field(
        "stationary",
        description="Regime at step 0: 'stationary' (the "
        "chain's stationary law), a regime "
        "name, or regime -> probability.",
    )
    phases: list[Phase] = Field([], description="Time windows overriding regime fields, in order.")
    rates: Rates | None = Field(None, description="Optional policy-rate overlay.")
    macro: dict[str, dict[Num, Value]] | None = _field("macro", None)
    expect: list[Expect] = Field([], description="Checks run by `capsim check`.")
    uncertainty: Uncertainty | None = Field(
        None,
        description="How parameter draws are spread over the paths (with distributions in the file), or the "
        "posterior draws the scenario runs with.",
    )
    silence_warnings: list[Literal[WARNING_CHECKS]] = Field(
        [],
        description="Warnings that this file means (a deliberate value outside the plausible range): "
        + ", ".join(WARNING_CHECKS)
        + ".",
    )

    @field_validator("as_of", mode="before")
    @classmethod
    def _date_as_written(cls, v):
        """A date, or its ISO text (as meta.json keeps it); never a number (pydantic would read 20260201 as seconds
        since 1970)."""
        if v is not None and not isinstance(v, (_dt.date, str)):
            raise ValueError(f"give a date as YYYY-MM-DD, got {v!r}")
        return v

    @field_validator("macro", mode="before")
    @classmethod
    def _macro_knots(cls, macro):
        """Knot months written as strings are the numbers they spell (as ``Rates.path``)."""
        if not isinstance(macro, dict):
            return macro
        return {name: _numeric_knots(path) for name, path in macro.items()}

    _source: str = PrivateAttr(default="<memory>")
    _sha256: str | None = PrivateAttr(default=None)
    _draw_values: dict[str, np.ndarray] | None = PrivateAttr(default=None)

    @property
    def source(self) -> str:
        return self._source

    @property
    def sha256(self) -> str | None:
        """SHA-256 of the file's bytes (None when built from a dict)."""
        return self._sha256

    def __hash__(self) -> int:
        """Scenarios can key a mapping (``blend({scenario: weight})``). Equal scenarios (same fields, file and
        bytes) hash alike."""
        return hash((self._source, self._sha256, self.name))

    @property
    def steps_per_year(self) -> int:
        return STEPS_PER_YEAR[self.frequency]

    @property
    def asset_keys(self) -> list[str]:
        return list(self.assets)

    @property
    def regime_names(self) -> list[str]:
        return list(self.regimes)

    @property
    def compare_pair(self) -> tuple[str, str]:
        """(first, second): excess = R_first - R_second."""
        pair = self.compare or self.asset_keys[:2]
        return pair[0], pair[1]

    def report_months_for(self, horizon_months: int) -> list[int]:
        """Report horizons (months) up to ``horizon_months``, always including it."""
        base = self.report_months if self.report_months is not None else DEFAULT_REPORT_MONTHS
        return sorted({h for h in base if h <= horizon_months} | {horizon_months})

    def metric_names(self) -> list[str]:
        """Every column of summary.csv that an ``expect`` entry may name."""
        names = [
            "p_outperform",
            "p_outperform_se",
            "p_outperform_count",
            "p_outperform_count_se",
            "excess_mean",
            "excess_sd",
            "excess_q05",
            "excess_q25",
            "excess_median",
            "excess_q75",
            "excess_q95",
            "excess_hdi90_low",
            "excess_hdi90_high",
        ]
        for a in self.asset_keys:
            names += [f"{a}_{s}" for s in ASSET_STATS]
        names += [f"occupancy_{k}" for k in self.regime_names]
        if self.is_uncertain:
            names += list(DRAW_METRICS)
        return names

    @property
    def is_uncertain(self) -> bool:
        """Whether the scenario carries parameter uncertainty (distributions, ``uncertainty``, or given draws)."""
        return bool(distributions(self)) or self.uncertainty is not None or self._draw_values is not None

    @property
    def draw_values(self) -> dict[str, np.ndarray] | None:
        """Externally given parameter draws (``with_parameter_draws``): dotted field path -> [D] values."""
        return self._draw_values

    @property
    def has_tails(self) -> bool:
        """Whether any regime or phase override has Student-t ``tails`` (then simple-return means do not exist)."""
        overrides = [o for ph in self.phases for o in ph.regimes.values()]
        return any(r.tails is not None for r in [*self.regimes.values(), *overrides])

    def undefined_metrics(self) -> list[str]:
        """The summary columns that estimate a mean which does not exist (Student-t tails), else []."""
        return [*UNDEFINED_UNDER_TAILS, *(f"{a}_mean" for a in self.asset_keys)] if self.has_tails else []

    @property
    def warnings(self) -> list[ScenarioWarning]:
        """Values that are allowed but likely slips (``scenario_warnings``), less those the file silences."""
        return [w for w in scenario_warnings(self) if w.check not in self.silence_warnings]


UNDEFINED_UNDER_TAILS = ("excess_mean", "excess_sd")
ASSET_STATS = ("mean", "median", "q05", "q95", "var95", "es95", "p_loss", "p_loss_se", "mdd_median", "mdd_q95")
# Across parameter draws: the 5%, 50% and 95% points of the per-draw p_outperform and excess median.
DRAW_METRICS = tuple(f"{m}_draws_{q}" for m in ("p_outperform", "excess_median") for q in ("q05", "q50", "q95"))


# --------------------------------------------------------------------------------------------
# Loading


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file (safe loader only, within the limits of docs/scenarios.md).
    Raises ``ScenarioError``."""
    path = Path(path)
    raw = read_bounded(path)
    data = load_yaml(raw, str(path))
    sc = parse_scenario(data, source=str(path))
    sc._sha256 = hashlib.sha256(raw).hexdigest()
    if (problem := _posterior_file_problem(sc, path)) is not None:
        raise ScenarioError(str(path), [problem])
    return sc


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a scenario file of at most ``limit`` bytes (``ScenarioError`` for a bigger or unreadable
    one; never more than ``limit`` + 1 bytes are read, so a device or a huge file cannot stall it)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise ScenarioError(str(path), [("", f"cannot read the file: {exc.strerror or exc}")]) from None
    if len(raw) > limit:
        raise ScenarioError(
            str(path), [("", f"the file is larger than {limit:,} bytes, the limit for a scenario file: is it one?")]
        )
    return raw


def load_yaml(raw: bytes, source: str):
    """The YAML document in ``raw`` (UTF-8 text) as Python values, read by ``_ScenarioLoader``; every problem,
    from binary content to an alias bomb, is a ``ScenarioError`` naming ``source`` and the line."""
    if b"\0" in raw:
        raise ScenarioError(source, [("", "the file holds NUL bytes: it is a binary file, not a YAML scenario")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            source, [("", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): save it as UTF-8")]
        ) from None
    try:
        return yaml.load(text, Loader=_ScenarioLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(str(x) for x in (exc.context, exc.problem) if x)
        head = "refused" if isinstance(exc, _YamlLimit) else "not valid YAML"
        raise ScenarioError(source, [("", f"{head}{where}: {what}")]) from None
    except yaml.reader.ReaderError as exc:
        raise ScenarioError(
            source,
            [("", f"character #x{exc.character:04x} at offset {exc.position} is not allowed in YAML text")],
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [("", f"not valid YAML: {exc}")]) from None


def posterior_path(sc: Scenario) -> Path | None:
    """The scenario's posterior file (``uncertainty.posterior``, relative to the scenario file), or None."""
    u = sc.uncertainty
    if u is None or u.posterior is None:
        return None
    p = Path(u.posterior)
    return p if p.is_absolute() else Path(sc.source).parent / p


def _posterior_file_problem(sc: Scenario, path: Path) -> tuple[str, str] | None:
    """A posterior file that is missing or whose SHA-256 is not the one the scenario records."""
    target = posterior_path(sc)
    if target is None:
        return None
    try:
        if target.exists() and not target.is_file():
            return "uncertainty.posterior", f"the posterior file {target} is not a regular file (a folder or a device)"
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
    except OSError as exc:
        return "uncertainty.posterior", f"cannot read the posterior file {target}: {exc.strerror or exc}"
    if digest != sc.uncertainty.sha256.lower():
        return (
            "uncertainty.sha256",
            f"the posterior file {target} has SHA-256 {digest}, not the recorded {sc.uncertainty.sha256}: it "
            "changed since `capsim calibrate --posterior` wrote it; re-run that command",
        )
    return None


try:  # libyaml's scanner and parser where PyYAML was built with it (several times faster), else PyYAML's
    from yaml.cyaml import CParser as _Parser

    _PARSING: tuple = (_Parser,)
except ImportError:
    _PARSING = (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)
Composer = yaml.composer.Composer


class _ScenarioLoader(*_PARSING, Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """PyYAML's safe loader with capsim's rules: a key repeated in one mapping is an error (not last-wins); keys
    are names or numbers (not lists or mappings); merge keys (``<<: *base``) work as in YAML 1.1, their keys
    giving way to the mapping's own; nesting is at most ``MAX_YAML_DEPTH`` deep and the document, its aliases
    expanded, holds at most ``MAX_YAML_NODES`` values (no "billion laughs"), both checked before any value is
    built. Nodes are composed in Python (the checks need it) from the events of libyaml's parser."""

    _depth = 0

    def __init__(self, stream):
        _PARSING[0].__init__(self, stream)  # libyaml's parser, or PyYAML's reader then its scanner and parser
        for base in _PARSING[1:]:
            base.__init__(self)
        Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)

    # the composition in Python, not libyaml's (which the parser class would otherwise bring)
    check_node, get_node, get_single_node = Composer.check_node, Composer.get_node, Composer.get_single_node
    compose_scalar_node, compose_sequence_node = Composer.compose_scalar_node, Composer.compose_sequence_node
    compose_mapping_node = Composer.compose_mapping_node

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _limit(f"lists and mappings nest more than {MAX_YAML_DEPTH} deep", self.peek_event().start_mark)
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = Composer.compose_document(self)
        _check_expansion(node)
        return node

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a name or a number, not a list or a mapping", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short_repr(key)}: give each field once", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _YamlLimit(yaml.MarkedYAMLError):
    """Valid YAML past one of capsim's limits (nesting, values once aliases are expanded)."""


def _limit(problem: str, mark) -> _YamlLimit:
    return _YamlLimit(None, None, problem + " (the limits are in docs/scenarios.md)", mark)


def _check_expansion(root) -> None:
    """Refuse a node graph that, its aliases expanded, holds more than ``MAX_YAML_NODES`` values, nests deeper
    than ``MAX_YAML_DEPTH`` or holds itself (a recursive alias). Each node is sized once (no expansion)."""
    size: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once expanded
    started: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, finish = stack.pop()
        key = id(node)
        kids = _kids(node)
        if finish:
            n = 1 + sum(size[id(k)][0] for k in kids)
            depth = 1 + max((size[id(k)][1] for k in kids), default=0)
            if n > MAX_YAML_NODES:
                raise _limit(f"aliases expand the file to more than {MAX_YAML_NODES:,} values", node.start_mark)
            if depth > MAX_YAML_DEPTH:
                raise _limit(f"aliases nest lists and mappings more than {MAX_YAML_DEPTH} deep", node.start_mark)
            size[key] = (n, depth)
            started.discard(key)
        elif key not in size:
            if key in started:
                raise _limit("an alias refers to a list or mapping that holds it (a recursive alias)", node.start_mark)
            started.add(key)
            stack.append((node, True))
            stack += [(k, False) for k in kids if id(k) not in size]


def _kids(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_scenario(data: object, source: str = "<memory>") -> Scenario:
    """Validate a scenario given as a mapping (as YAML would load it). Raises ``ScenarioError``.

    Schema problems (unknown keys, wrong types) do not hide the rest: the offending fields are set aside
    and, when what remains is complete, the consistency checks run on it too; all problems are reported.
    """
    if not isinstance(data, dict):
        raise ScenarioError(source, [("", _not_a_mapping(data))])
    schema: list[tuple[str, str]] = []
    sc = None
    for _ in range(16):  # each round sets aside the fields the previous one rejected, or fills stand-ins
        try:
            sc = Scenario.model_validate(data)
            break
        except ValidationError as exc:
            found = [(_loc(e["loc"]), _pydantic_msg(e)) for e in exc.errors()]
            new = [f for f in found if not any(_within(f[0], q) for q, _ in schema)]
            if new:
                schema += new
                data = _without(data, [_loc(e["loc"]) for e in exc.errors()])
            elif not _fill_stand_ins(data, [_loc(e["loc"]) for e in exc.errors() if e["type"] == "missing"]):
                break  # a set-aside field without a stand-in (assets, regimes) is missing: nothing more to check
    if sc is None:
        raise ScenarioError(source, schema)
    problems = _check(sc)
    aside = {p for p, _ in schema}
    if "frequency" in aside:  # durations in steps depend on the real frequency
        problems = [p for p in problems if not p[0].endswith(".duration_months")]
    if "horizon_months" in aside:  # which months are report horizons depends on the real horizon
        problems = [p for p in problems if not re.fullmatch(r"expect\.\d+\.horizon_months", p[0])]
    problems = schema + [p for p in problems if not any(_within(p[0], q) for q, _ in schema)]
    if problems:
        raise ScenarioError(source, problems)
    sc._source = source
    return sc


def _not_a_mapping(data) -> str:
    """Why ``data``, a whole file's content, is no scenario: what it holds instead of a mapping of fields."""
    if data is None:
        return "the file is empty (or holds only comments): a scenario is a mapping of fields (name, frequency, ...)"
    what = {str: "a single text value", list: "a list", bool: "true or false"}.get(type(data), "a single number")
    return f"a scenario is a mapping of fields (name: ..., frequency: ...), but the file holds {what}"


# Stand-ins for required fields set aside for a wrong type, so that the checks that do not depend on them still
# run (problems at or below a set-aside field are not reported twice; those that depend on it are dropped).
STAND_INS = {
    "name": "stand-in",
    "frequency": "monthly",
    "horizon_months": 10**6,  # past every month in the file: no "past the horizon" problem from the stand-in
    "drift": {},
    "vol": {},
    "corr": 0.0,
    "metric": "p_outperform",
    "path": {},
    "sensitivity": {},
}


def _fill_stand_ins(data: dict, missing: list[str]) -> bool:
    """Put the stand-in of each missing field of ``missing`` (dotted paths) into ``data``; False if none has one."""
    filled = False
    for path in missing:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in STAND_INS and last not in node:
            node[last] = copy.deepcopy(STAND_INS[last])
            filled = True
    return filled


def _without(data: dict, paths: list[str]) -> dict:
    """A deep copy of ``data`` without the fields at the dotted ``paths`` (a list field goes whole)."""
    data = copy.deepcopy(data)
    for path in paths:
        node, parent_key, container = data, None, None
        for key in path.split(".") if path else []:
            if isinstance(node, dict) and key in node:
                container, parent_key, node = node, key, node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]  # keep container/parent_key: the whole list is dropped
            else:
                break
        if container is not None:
            container.pop(parent_key, None)
    return data


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or prefix == ""


def _loc(loc: tuple) -> str:
    # pydantic adds union-member tags ("float", "list[...]", "function-after[...]") to paths; drop them.
    parts = [
        str(p)
        for p in loc
        if not (isinstance(p, str) and ("[" in p or p.startswith("<") or p in ("float", "str", "int")))
    ]
    return ".".join(parts)


def _pydantic_msg(err: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "extra_forbidden" and loc[:1] == ["phases"] and loc[-1] == "drivers":
        return "a phase cannot override `drivers` (they hold for the whole run): let the `macro` paths move instead"
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; `capsim schema` lists the allowed fields)"
    if err["type"] == "missing":
        return "required field is missing"
    msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
    return f"{msg} (got {short_repr(err.get('input'))})"


# --------------------------------------------------------------------------------------------
# Semantic checks: each appends (field path, message) and never stops at the first problem.


def _check(sc: Scenario) -> list[tuple[str, str]]:
    """Every problem of ``sc``: its distributions (their supports against the fields' rules), then the rules
    of plain files on the scenario with every distribution at its centre (what a distribution's support has
    already answered for is not reported twice)."""
    out = _check_distributions(sc)
    _check_expect(sc, lambda path, msg: out.append((path, msg)))  # the metrics depend on the uncertainty
    flagged = [path for path, _ in out]
    rest = _check_plain(resolve(sc, {}), any_problem=bool(out))
    return out + [p for p in rest if not any(_within(p[0], q) or _within(q, p[0]) for q in flagged)]


def _check_plain(sc: Scenario, any_problem: bool = False) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    bad = lambda path, msg: out.append((path, msg))  # noqa: E731
    assets, regimes = sc.asset_keys, sc.regime_names
    m = sc.steps_per_year / 12

    if not NAME_RE.fullmatch(sc.name):
        bad("name", f"use letters, digits, '-' and '_' only (it names the output folder); got {short_repr(sc.name)}")
    elif len(sc.name) > MAX_NAME_CHARS:
        bad("name", f"at most {MAX_NAME_CHARS} characters (it names the output folder), got {len(sc.name)}")
    if not 1 <= sc.horizon_months <= MAX_HORIZON_MONTHS:
        bad("horizon_months", horizon_problem(sc.horizon_months))
    if len(assets) < 2:
        bad("assets", f"at least two assets are needed to compare, got {len(assets)}")
    if len(assets) > MAX_ASSETS:
        bad("assets", f"at most {MAX_ASSETS} assets (the limit of a run's size), got {len(assets)}")
    if len(regimes) > MAX_REGIMES:
        bad("regimes", f"at most {MAX_REGIMES} regimes (the limit of a run's size), got {len(regimes)}")
    u = sc.uncertainty
    if u is not None and (u.posterior is None) != (u.sha256 is None):
        bad("uncertainty", "posterior and sha256 go together: give both (as `capsim calibrate --posterior` writes)")
    if u is not None and u.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", u.sha256):
        bad("uncertainty.sha256", f"a SHA-256 is 64 hexadecimal digits, got {short_repr(u.sha256)}")
    if sc.report_months is not None:
        rm = sc.report_months
        if any(h < 1 for h in rm):
            bad("report_months", f"months must be positive, got {rm}")
        if list(rm) != sorted(set(rm)):
            bad("report_months", f"must be increasing without repeats, got {rm}")
        if any(h > sc.horizon_months for h in rm):
            bad(
                "report_months",
                f"months past horizon_months={sc.horizon_months}: {[h for h in rm if h > sc.horizon_months]}",
            )
    if sc.compare is not None:
        if len(sc.compare) != 2:
            bad("compare", f"must name exactly two assets [first, second], got {sc.compare}")
        for i, a in enumerate(sc.compare):
            if a not in assets:
                bad(f"compare.{i}", f"unknown asset {a!r}; assets are {assets}")
        if len(sc.compare) == 2 and sc.compare[0] == sc.compare[1]:
            bad("compare", f"the two assets must differ, got {sc.compare}")
    if not regimes:
        bad("regimes", "at least one regime is needed")

    matrix_form = sc.transitions is not None
    driven = _drivers.driven(sc)
    for k, r in sc.regimes.items():
        _check_regime_returns(r, f"regimes.{k}", assets, bad)
        if k not in driven:
            _check_exit(r, f"regimes.{k}", k, regimes, m, matrix_form, bad)
    if matrix_form:
        _check_matrix(sc.transitions, "transitions", regimes, bad, partial=False, driven=driven)
    out += _drivers.macro_problems(sc) + _drivers.drivers_problems(sc)

    prev = 0.0
    for i, ph in enumerate(sc.phases):
        if not (ph.until_month > prev):
            bad(
                f"phases.{i}.until_month",
                f"phases must be in increasing order: {ph.until_month} does not follow {prev}",
            )
        if ph.until_month > sc.horizon_months:
            bad(f"phases.{i}.until_month", f"{ph.until_month} is past horizon_months={sc.horizon_months}")
        prev = max(prev, ph.until_month)
        for k, o in ph.regimes.items():
            path = f"phases.{i}.regimes.{k}"
            if k not in sc.regimes:
                bad(path, f"unknown regime {k!r}; regimes are {regimes}")
                continue
            merged = merge_override(sc.regimes[k], o)
            _check_regime_returns(merged, path, assets, bad, given=o)
            if matrix_form and (o.duration_months is not None or o.next is not None):
                bad(path, "this file uses the `transitions` matrix form: override exits with the phase's `transitions`")
            elif not matrix_form and k not in driven:
                _check_exit(merged, path, k, regimes, m, False, bad, given=o)
        if ph.transitions is not None:
            if not matrix_form:
                bad(
                    f"phases.{i}.transitions",
                    "phase `transitions` need the file-level `transitions` form; "
                    "this file uses duration_months/next: override those instead",
                )
            else:
                _check_matrix(ph.transitions, f"phases.{i}.transitions", regimes, bad, partial=True)

    _check_start(sc, regimes, bad)
    if sc.rates is not None:
        _check_rates(sc, assets, bad)
    if sc.uncertainty is not None and sc.uncertainty.draws is not None:
        if not 1 <= sc.uncertainty.draws <= MAX_DRAWS:
            bad(
                "uncertainty.draws",
                f"must be at least 1 and at most {MAX_DRAWS:,}, got {short_repr(sc.uncertainty.draws)}",
            )
    if sc.uncertainty is not None and (problem := draw_paths_problem(sc.uncertainty.draw_paths)):
        bad("uncertainty.draw_paths", problem)
    if not out and not any_problem:
        out += overflow_problems(sc, sc.horizon_months)

    if not out and not any_problem and sc.start == "stationary" and len(regimes) > 1:
        P = base_matrix(sc)
        if not is_irreducible(P):
            bad(
                "start",
                "`stationary` is undefined: the base chain is not irreducible (a regime is absorbing or "
                "some regimes cannot reach the others). Give `start` a regime or a mapping, or connect the regimes.",
            )
    return out


def draw_paths_problem(G) -> str | None:
    """Why ``G`` cannot be the paths per parameter draw (None when it can, or when not given)."""
    if G is None or (MIN_DRAW_PATHS <= G <= BLOCK_PATHS and G & (G - 1) == 0):
        return None
    return (
        f"the paths per parameter draw must be a power of two from {MIN_DRAW_PATHS} to {BLOCK_PATHS:,} "
        f"(so that a block of {BLOCK_PATHS:,} paths holds whole groups), got {short_repr(G)}"
    )


def horizon_problem(months: int) -> str:
    """The message for a horizon outside 1..``MAX_HORIZON_MONTHS``."""
    if months < 1:
        return f"must be at least 1 month, got {months}"
    return (
        f"at most {MAX_HORIZON_MONTHS:,} months (100 years; 25,200 daily steps), the limit of a run's length, "
        f"got {short_repr(months)}"
    )


def overflow_problems(sc: Scenario, horizon_months: int) -> list[tuple[str, str]]:
    """Regimes (and phase overrides) whose log return over ``horizon_months`` could pass ``MAX_LOG_RETURN``,
    where the engine's float32 arithmetic overflows: |drift| x years + OVERFLOW_SIGMAS x vol x sqrt(years) +
    |rate sensitivity| x (highest - lowest rate knot) per asset, for a path that stays in the regime throughout.
    ``sc`` is plain (no distributions); the draws of distributions are checked as they run."""
    years = horizon_months / 12
    rates = sc.rates
    spread = max(rates.path.values()) - min(rates.path.values()) if rates and rates.path else 0.0
    regimes = [(f"regimes.{k}", r) for k, r in sc.regimes.items()]
    for i, ph in enumerate(sc.phases):
        regimes += [(f"phases.{i}.regimes.{k}", merge_override(sc.regimes[k], o)) for k, o in ph.regimes.items()]
    out = []
    for path, r in regimes:
        for a in sc.asset_keys:
            sens = abs(rates.sensitivity[a]) * spread if rates and spread else 0.0
            size = abs(r.drift[a]) * years + OVERFLOW_SIGMAS * r.vol[a] * math.sqrt(years) + sens
            if not size <= MAX_LOG_RETURN:
                field = "drift" if abs(r.drift[a]) * years >= OVERFLOW_SIGMAS * r.vol[a] * math.sqrt(years) else "vol"
                out.append(
                    (
                        f"{path}.{field}.{a}",
                        f"drift {r.drift[a]:.4g} and vol {r.vol[a]:.4g} (annualised)"
                        + (" with the rate path" if sens else "")
                        + f" give log returns up to {size:.3g} over {horizon_months} months (|drift| x years + "
                        f"{OVERFLOW_SIGMAS} x vol x sqrt(years) + |sensitivity| x rate range), past the limit "
                        f"{MAX_LOG_RETURN:g} (a total return of e^{MAX_LOG_RETURN:g}) beyond which the simulation's "
                        "float32 numbers overflow: these are not annualised decimals (0.10 = 10% a year)",
                    )
                )
    return out


def _check_regime_returns(r, path, assets, bad, given=None):
    """drift/vol/corr/tails of a (merged) regime; ``given`` restricts messages to fields a phase set."""
    show = lambda field: given is None or getattr(given, field) is not None  # noqa: E731
    for field in ("drift", "vol"):
        mapping = getattr(r, field)
        if show(field):
            for a in assets:
                if a not in mapping:
                    bad(f"{path}.{field}.{a}", f"missing value for asset {a!r}")
            for a, v in mapping.items():
                if a not in assets:
                    bad(f"{path}.{field}.{a}", f"unknown asset {a!r}; assets are {assets}")
                elif not math.isfinite(v):
                    bad(f"{path}.{field}.{a}", f"must be a finite number, got {v}")
                elif field == "vol" and v < 0:
                    bad(f"{path}.{field}.{a}", f"a volatility cannot be negative, got {v}")
    if show("corr"):
        msg = corr_problem(r.corr, len(assets))
        if msg:
            bad(f"{path}.corr", msg)
    if show("tails") and r.tails is not None and not (math.isfinite(r.tails) and r.tails > 2):
        bad(
            f"{path}.tails",
            f"Student-t degrees of freedom must be > 2 (finite variance), got {r.tails}; "
            "omit `tails` for Gaussian innovations",
        )


def _check_exit(r, path, name, regimes, m, matrix_form, bad, given=None):
    """duration_months/next of a regime (durations form) or their absence (matrix form)."""
    if matrix_form:
        if r.duration_months is not None or r.next is not None:
            bad(path, "give either `transitions` at the top level or `duration_months`/`next` per regime, never both")
        return
    if len(regimes) == 1:
        if r.next is not None:
            bad(f"{path}.next", "a single regime never leaves: remove `next`")
        return
    show = lambda field: given is None or getattr(given, field) is not None  # noqa: E731
    d = r.duration_months
    if d is None:
        if given is None:
            bad(f"{path}.duration_months", "required with several regimes (or use the `transitions` matrix form)")
    elif show("duration_months") and not (math.isfinite(d) and d * m >= 1 - 1e-12):
        bad(f"{path}.duration_months", f"must be at least one step ({1 / m:.4g} months at this frequency), got {d}")
    if r.next is None:
        if given is None:
            bad(f"{path}.next", "required with several regimes: where the chain goes when it leaves")
    elif show("next"):
        _check_row(r.next, f"{path}.next", regimes, bad, exclude=name)


def _check_row(row, path, regimes, bad, exclude=None):
    ok = True
    for j, p in row.items():
        if j not in regimes:
            bad(f"{path}.{j}", f"unknown regime {j!r}; regimes are {regimes}")
            ok = False
        elif j == exclude:
            bad(f"{path}.{j}", "`next` cannot point at the regime itself (its stay is set by duration_months)")
            ok = False
        elif not (math.isfinite(p) and 0 <= p <= 1):
            bad(f"{path}.{j}", f"a probability must lie in [0, 1], got {p}")
            ok = False
    if ok and abs(sum(row.values()) - 1) > ROW_TOL:
        bad(path, f"probabilities must sum to 1 (within {ROW_TOL:g}), got {sum(row.values())!r}")


def _check_matrix(mat, path, regimes, bad, partial, driven=()):
    for k, row in mat.items():
        if k not in regimes:
            bad(f"{path}.{k}", f"unknown regime {k!r}; regimes are {regimes}")
        elif k not in driven:  # a driven regime's row is refused by the drivers' rules
            _check_row(row, f"{path}.{k}", regimes, bad)
    if not partial:
        for k in regimes:
            if k not in mat and k not in driven:
                bad(f"{path}.{k}", "missing row: every regime needs its per-step transition probabilities")


def _check_start(sc, regimes, bad):
    s = sc.start
    if isinstance(s, str):
        if s != "stationary" and s not in regimes:
            bad(
                "start",
                f"must be 'stationary', a regime name or a mapping regime -> probability; "
                f"{short_repr(s)} is not a regime ({regimes})",
            )
    else:
        _check_row(s, "start", regimes, bad)


def _check_rates(sc, assets, bad):
    r = sc.rates
    if not r.path:
        bad("rates.path", "give at least one knot month -> rate (percent)")
    for month, level in r.path.items():
        if not (math.isfinite(month) and month >= 0):
            bad(f"rates.path.{month:g}", f"knot months must be >= 0, got {month}")
        if not (math.isfinite(level) and abs(level) <= MAX_RATE_PERCENT):
            bad(
                f"rates.path.{month:g}",
                f"the rate must be a number of percent within +-{MAX_RATE_PERCENT:,g}, got {level}",
            )
    if r.path and min(r.path) > sc.horizon_months:
        bad("rates.path", f"every knot is past horizon_months={sc.horizon_months}")
    for a in assets:
        if a not in r.sensitivity:
            bad(f"rates.sensitivity.{a}", f"missing value for asset {a!r}")
    for a, v in r.sensitivity.items():
        if a not in assets:
            bad(f"rates.sensitivity.{a}", f"unknown asset {a!r}; assets are {assets}")
        elif not math.isfinite(v):
            bad(f"rates.sensitivity.{a}", f"must be a finite number, got {v}")


def _check_expect(sc, bad):
    names = set(sc.metric_names())
    horizons = sc.report_months_for(sc.horizon_months)
    for i, e in enumerate(sc.expect):
        path = f"expect.{i}"
        if e.metric not in names:
            bad(
                f"{path}.metric",
                f"unknown metric {short_repr(e.metric)}; use a summary.csv column such as "
                "p_outperform, excess_mean, <asset>_mdd_median or occupancy_<regime>",
            )
        if e.horizon_months not in horizons:
            bad(f"{path}.horizon_months", f"{e.horizon_months} is not a report horizon {horizons}")
        given = [k for k in ("between", "above", "below") if getattr(e, k) is not None]
        if len(given) != 1:
            bad(path, f"give exactly one of between/above/below, got {given or 'none'}")
        if e.between is not None and not (e.between[0] <= e.between[1]):
            bad(f"{path}.between", f"needs [low, high] with low <= high, got {list(e.between)}")
        for k in ("above", "below"):
            v = getattr(e, k)
            if isinstance(v, str) and v not in names:
                bad(f"{path}.{k}", f"{short_repr(v)} is neither a number nor a metric name")
            elif isinstance(v, float) and not math.isfinite(v):
                bad(f"{path}.{k}", f"the threshold must be a finite number, got {v}")


# --------------------------------------------------------------------------------------------
# Warnings: values that validate but are likely unit slips (docs/scenarios.md, "Warnings")

DRIFT_MAX = 1.0  # |annualised log drift| above 100% a year
VOL_MAX = 1.5  # annualised vol above 150% a year
SENSITIVITY_MAX = 0.5  # |log-return change| above 50% per percentage point of the rate
RATE_DECIMAL_MAX = 0.25  # every rate knot below 0.25 (percent): decimals written for percent
RATE_MAX = 25.0  # a policy rate above 25%


def scenario_warnings(sc: Scenario) -> list[ScenarioWarning]:
    """Every plausibility warning of a valid scenario ``sc`` (distributions at their centres), silenced or not:
    drifts and vols outside the ranges above (a percent written for a decimal), rate sensitivities likewise, rate
    knots that look like decimals or are implausibly high, and `expect` entries on means that do not exist."""
    out: list[ScenarioWarning] = []
    plain = resolve(sc, {})
    blocks = [(f"regimes.{k}", r) for k, r in plain.regimes.items()]
    blocks += [(f"phases.{i}.regimes.{k}", o) for i, ph in enumerate(plain.phases) for k, o in ph.regimes.items()]
    for path, r in blocks:
        for a, v in (r.drift or {}).items():
            if abs(v) > DRIFT_MAX:
                out.append(
                    ScenarioWarning(
                        "drift",
                        f"{path}.drift.{a}",
                        f"drift {v:g} is {100 * v:,.0f}% a year (annualised log return): did you mean {v / 100:g}?",
                    )
                )
        for a, v in (r.vol or {}).items():
            if v > VOL_MAX:
                out.append(
                    ScenarioWarning(
                        "vol", f"{path}.vol.{a}", f"vol {v:g} is {100 * v:,.0f}% a year: did you mean {v / 100:g}?"
                    )
                )
    if plain.rates is not None:
        for a, v in plain.rates.sensitivity.items():
            if abs(v) > SENSITIVITY_MAX:
                out.append(
                    ScenarioWarning(
                        "sensitivity",
                        f"rates.sensitivity.{a}",
                        f"{v:g} moves the log return by {100 * v:,.0f}% per percentage point of the rate: did you "
                        f"mean {v / 100:g}?",
                    )
                )
        levels = plain.rates.path
        if levels and max(abs(v) for v in levels.values()) < RATE_DECIMAL_MAX and any(levels.values()):
            written = ", ".join(f"{v:g}" for v in levels.values())
            meant = ", ".join(f"{100 * v:g}" for v in levels.values())
            out.append(
                ScenarioWarning(
                    "rates",
                    "rates.path",
                    f"the values ({written}) look like decimals; capsim's rates are in percent (4.00 = 4%): did "
                    f"you mean {meant}?",
                )
            )
        for m, v in levels.items():
            if v > RATE_MAX:
                out.append(
                    ScenarioWarning(
                        "rates", f"rates.path.{m:g}", f"a policy rate of {v:g}% is implausible: rates are in percent"
                    )
                )
    undefined = set(sc.undefined_metrics())
    for i, e in enumerate(sc.expect):
        named = [m for m in (e.metric, e.above, e.below) if isinstance(m, str) and m in undefined]
        if named:
            out.append(
                ScenarioWarning(
                    "undefined_mean",
                    f"expect.{i}",
                    f"{' and '.join(named)} {'is a sample mean' if len(named) == 1 else 'are sample means'} of "
                    "returns that have no mean under Student-t tails (it jumps as rare extremes arrive): check a "
                    "median, a quantile or p_outperform instead",
                )
            )
    return out


# --------------------------------------------------------------------------------------------
# Distributions: where they are, their supports against the fields' rules, and scenarios with chosen values

# Field (the pydantic attribute holding the value) -> families allowed there.
ALLOWED = {
    "drift": ("uniform", "triangular", "normal"),
    "sensitivity": ("uniform", "triangular", "normal"),
    "path": ("uniform", "triangular", "normal"),
    "vol": ("uniform", "triangular", "lognormal"),
    "tails": ("uniform", "triangular"),  # floors above 0: a lognormal always reaches below them
    "duration_months": ("uniform", "triangular"),
    "corr": ("uniform", "triangular", "beta"),
    "next": ("uniform", "triangular", "beta"),  # one entry of a probability row
    "transitions": ("uniform", "triangular", "beta"),
    "start": ("uniform", "triangular", "beta"),
    "macro": ("uniform", "triangular", "normal"),  # a driver path's knot
    "drivers": ("uniform", "triangular", "normal"),  # a logit's intercept or coefficient
}
ROW_FIELDS = ("next", "transitions", "start")
VALUE_FIELDS = ("regimes", "transitions", "start", "phases", "rates", "macro")  # the top-level fields that hold numbers


def _key(k) -> str:
    return f"{k:g}" if isinstance(k, float) else str(k)


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def distributions(sc: Scenario) -> dict[str, tuple[str, Dist | Dirichlet]]:
    """Every distribution in ``sc``: dotted field path -> (field name, distribution), in file order. The field
    name is the attribute that holds it (``vol``, ``next``, ``path``, ...): it decides the rules that apply."""
    out = {}

    def walk(node, path, field):
        if isinstance(node, (Dist, Dirichlet)):
            out[path] = (field, node)
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name), _join(path, name), name)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, _join(path, _key(k)), field)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, _join(path, str(i)), field)

    walk(sc, "", "")
    return out


def support(dist: Dist, field: str) -> tuple[float, float]:
    """(lowest, highest) value ``dist`` can give the field (a beta on ``corr`` is mapped to [-1, 1])."""
    a = dist.args
    lo, hi = {
        "uniform": (a[0], a[-1]),
        "triangular": (a[0], a[-1]),
        "normal": (-math.inf, math.inf) if a[1] > 0 else (a[0], a[0]),
        "lognormal": (0.0, math.inf) if a[1] > 0 else (a[0], a[0]),
        "beta": (0.0, 1.0),
    }[dist.family]
    return (2 * lo - 1, 2 * hi - 1) if dist.family == "beta" and field == "corr" else (lo, hi)


def centre(dist: Dist, field: str) -> float:
    """A value inside the support (the mean; the median for lognormal): what validation checks the rest of the
    file with, and what ``meta.json``'s derived matrices use. NaN when the parameters are invalid."""
    a = np.asarray(dist.args, dtype=float)
    with np.errstate(all="ignore"):
        value = {"uniform": a.mean(), "triangular": a.mean(), "normal": a[0], "lognormal": a[0]}.get(
            dist.family, a[0] / (a[0] + a[1]) if dist.family == "beta" else np.nan
        )
    return float(2 * value - 1 if dist.family == "beta" and field == "corr" else value)


def rule_problem(field: str, lo: float, hi: float, what: str, steps_per_month: float) -> str | None:
    """Why values in [lo, hi] break the rule of ``field`` (None when they all keep it); ``what`` names the
    values in the message ('uniform [-0.1, 0.3]', 'the given draws')."""
    if field == "vol" and lo < 0:
        return f"a volatility cannot be negative; {what} reaches below 0"
    if field in ("corr",) and (lo < -1 or hi > 1):
        return f"a correlation must lie in [-1, 1]; {what} reaches {'below -1' if lo < -1 else 'above 1'}"
    if field in ROW_FIELDS and (lo < 0 or hi > 1):
        return f"a probability must lie in [0, 1]; {what} reaches {'below 0' if lo < 0 else 'above 1'}"
    if field == "tails" and lo <= 2:
        return f"Student-t degrees of freedom must be > 2 (finite variance); {what} reaches 2 or below"
    bound = _drivers.MAX_MACRO_ABS
    if field in ("macro", "drivers") and math.isfinite(lo) and math.isfinite(hi) and max(-lo, hi) > bound:
        what_field = "a driver value" if field == "macro" else "a coefficient"
        return f"{what_field} must lie within +-{bound:g}; {what} reaches {'below' if -lo > hi else 'above'} that"
    if field == "duration_months" and lo * steps_per_month < 1 - 1e-12:
        step = 1 / steps_per_month
        return f"a duration must be at least one step ({step:.4g} months); {what} reaches below {step:.4g}"
    return None


def _params_problem(dist: Dist) -> str | None:
    a = dist.args
    if not all(math.isfinite(v) for v in a):
        return f"the parameters of {dist} must be finite numbers"
    f = dist.family
    ok, form = {
        "uniform": (lambda: a[0] <= a[1], "[low, high] with low <= high"),
        "triangular": (lambda: a[0] <= a[1] <= a[2], "[low, mode, high] with low <= mode <= high"),
        "normal": (lambda: a[1] >= 0, "[mean, sd] with sd >= 0"),
        "lognormal": (lambda: a[0] > 0 and a[1] >= 0, "[median, sd_log] with median > 0 and sd_log >= 0"),
        "beta": (lambda: a[0] > 0 and a[1] > 0, "[a, b] with a > 0 and b > 0"),
    }[f]
    return None if ok() else f"{f} needs {form}, got {list(a)}"


def _check_distributions(sc: Scenario) -> list[tuple[str, str]]:
    """Each distribution: a family allowed on its field, valid parameters, a support inside the field's rules;
    a probability row with at most one uncertain entry, whose other entries can share what it leaves."""
    out = []
    m = sc.steps_per_year / 12
    rows: dict[str, list[str]] = {}
    for path, (field, dist) in distributions(sc).items():
        if isinstance(dist, Dirichlet):
            if not dist.dirichlet or not all(math.isfinite(c) and c > 0 for c in dist.dirichlet.values()):
                out.append((path, f"dirichlet concentrations must be finite numbers > 0, got {dist.dirichlet}"))
            continue
        if dist.family not in ALLOWED[field]:
            where = "one entry of a probability row" if field in ROW_FIELDS else f"`{field}`"
            out.append(
                (
                    path,
                    f"{dist.family} is not allowed on {where}; use {' or '.join(ALLOWED[field])}",
                )
            )
            continue
        problem = _params_problem(dist) or rule_problem(field, *support(dist, field), str(dist), m)
        if problem:
            out.append((path, problem))
        if field in ROW_FIELDS:
            rows.setdefault(path.rsplit(".", 1)[0], []).append(path)
    for row_path, entries in rows.items():
        if len(entries) > 1:
            out.append(
                (
                    row_path,
                    "at most one entry of a probability row may be a distribution; use dirichlet for a whole row",
                )
            )
        elif sum(v for v in _node(sc, row_path).values() if not isinstance(v, Dist)) <= 0:
            out.append(
                (
                    row_path,
                    "the other entries share what the uncertain one leaves (in proportion): "
                    "give at least one of them a positive number",
                )
            )
    return out


def _node(root, path: str):
    """The value at a dotted ``path`` (model attributes, mapping keys, list indices)."""
    node = root
    for part in path.split(".") if path else []:
        node = _child(node, part)
    return node


def _child(node, part: str):
    if isinstance(node, BaseModel):
        return getattr(node, part)
    if isinstance(node, dict):
        return node[_dict_key(node, part)]
    return node[int(part)]


def _dict_key(d: dict, part: str):
    for k in d:
        if _key(k) == part:
            return k
    raise KeyError(part)


def _put(node, part: str, value) -> None:
    if isinstance(node, BaseModel):
        setattr(node, part, value)
    elif isinstance(node, dict):
        node[_dict_key(node, part)] = value
    else:
        node[int(part)] = value


def resolve(sc: Scenario, values: dict[str, float]) -> Scenario:
    """A plain copy of ``sc``: the field at each dotted path of ``values`` set to its number, every other
    distribution at its ``centre`` (a Dirichlet row at its mean). In a probability row where some entries were
    set (or one is a distribution) and the row does not sum to 1 within 1e-9, the other entries are rescaled
    in proportion to fill the rest (a row whose every entry was set is left as it is)."""
    if not values and not distributions(sc):
        return sc
    centred = centred_copy(sc)
    return set_values(centred, values, row_fills(sc, centred, values))


def centred_copy(sc: Scenario) -> Scenario:
    """A deep copy of ``sc`` with every distribution replaced by its centre (a Dirichlet row by its mean);
    rows with one uncertain entry are not yet filled (``row_fills``)."""
    out = sc.model_copy(deep=True)
    for path, (field, dist) in distributions(sc).items():
        if isinstance(dist, Dirichlet):
            total = sum(dist.dirichlet.values())
            value = {k: (c / total if total > 0 else math.nan) for k, c in dist.dirichlet.items()}
        else:
            value = centre(dist, field)
        parent, _, last = path.rpartition(".")
        _put(_node(out, parent), last, value)
    return out


def row_fills(sc: Scenario, centred: Scenario, paths) -> dict[str, set[str]]:
    """The probability rows of which some entries are set, by ``paths`` or by a distribution of ``sc`` on one
    entry: row path -> those entries' keys."""
    entries = [p for p, (field, d) in distributions(sc).items() if field in ROW_FIELDS and isinstance(d, Dist)]
    rows: dict[str, set[str]] = {}
    for path in [*paths, *entries]:
        parent, _, last = path.rpartition(".")
        if parent and _is_row(centred, parent):
            rows.setdefault(parent, set()).add(last)
    return rows


def set_values(plain: Scenario, values: dict[str, float], rows: dict[str, set[str]]) -> Scenario:
    """A deep copy of the plain scenario ``plain`` with the number at each dotted path of ``values`` set, then
    each row of ``rows`` (row path -> keys set) filled by ``_fill_row``."""
    out = plain.model_copy(update={k: copy.deepcopy(getattr(plain, k)) for k in VALUE_FIELDS})
    for path, value in values.items():
        parent, _, last = path.rpartition(".")
        _put(_node(out, parent), last, float(value))
    for parent, given in rows.items():
        _fill_row(_node(out, parent), given)
    return out


def _is_row(root, path: str) -> bool:
    """Whether the value at ``path`` is a probability row: a ``next``, a ``start`` mapping, a ``transitions`` row."""
    node, field, below = root, "", 0
    for part in path.split("."):
        field, below = (part, 0) if isinstance(node, BaseModel) else (field, below + 1)
        node = _child(node, part)
    return isinstance(node, dict) and field in ROW_FIELDS and below == (field == "transitions")


def _fill_row(row: dict, given: set) -> None:
    """Rescale the entries of a probability ``row`` not in ``given`` to fill 1 - (sum of the given ones)."""
    total = sum(row.values())
    rest = [k for k in row if _key(k) not in given]
    if abs(total - 1) <= ROW_TOL or not rest:
        return
    others = sum(row[k] for k in rest)
    scale = (1 - (total - others)) / others if others > 0 else math.nan
    for k in rest:
        row[k] = row[k] * scale


def corr_problem(corr, n_assets: int) -> str | None:
    """Why ``corr`` is not a valid correlation matrix for ``n_assets`` (None when valid)."""
    if not isinstance(corr, list):
        if not (math.isfinite(corr) and -1 <= corr <= 1):
            return f"a correlation must lie in [-1, 1], got {corr}"
        if n_assets != 2:
            return f"with {n_assets} assets give a full {n_assets}x{n_assets} matrix (list of lists) in asset order"
        return None
    C = np.asarray(corr, dtype=float) if all(isinstance(r, list) for r in corr) else None
    if C is None or C.shape != (n_assets, n_assets):
        return f"must be a {n_assets}x{n_assets} matrix in asset order"
    if not np.all(np.isfinite(C)):
        return "entries must be finite numbers"
    if not np.allclose(np.diag(C), 1.0, atol=1e-12):
        return f"the diagonal must be 1, got {np.diag(C).tolist()}"
    if not np.allclose(C, C.T, atol=1e-12):
        return "the matrix must be symmetric"
    if np.any(np.abs(C) > 1):
        return "entries must lie in [-1, 1]"
    if np.linalg.eigvalsh(C).min() < -1e-10:
        return f"not positive semi-definite (smallest eigenvalue {np.linalg.eigvalsh(C).min():.3g}); fix the entries"
    return None


def corr_matrix(corr, n_assets: int) -> np.ndarray:
    if isinstance(corr, list):
        return np.asarray(corr, dtype=float)
    C = np.full((n_assets, n_assets), float(corr))
    np.fill_diagonal(C, 1.0)
    return C


def merge_override(base: RegimeSpec, o: RegimeOverride) -> RegimeSpec:
    """A regime with a phase's override applied (per-asset maps merged key by key)."""
    fields = base.model_dump()
    for k, v in o.model_dump(exclude_none=True).items():
        fields[k] = {**fields[k], **v} if k in ("drift", "vol") else v
    return RegimeSpec.model_construct(**fields)


# --------------------------------------------------------------------------------------------
# Per-step transition matrices (meaning of duration_months/next, docs/model.md)


def exit_matrix(regimes: dict[str, RegimeSpec], names: list[str], steps_per_month: float) -> np.ndarray:
    """Per-step matrix from durations: leave k with probability 1/(d_k * m), then go to j with next_kj."""
    K = len(names)
    P = np.eye(K)
    if K == 1:
        return P
    for i, k in enumerate(names):
        r = regimes[k]
        if r.drivers is not None:  # set from its drivers (``drivers.apply_drivers``)
            continue
        q = 1.0 / (r.duration_months * steps_per_month)
        P[i, i] = 1.0 - q
        for j, w in r.next.items():
            P[i, names.index(j)] = q * w
    return P


def rows_matrix(rows: dict[str, dict[str, float]], names: list[str], base: np.ndarray | None = None) -> np.ndarray:
    P = np.zeros((len(names), len(names))) if base is None else base.copy()
    for k, row in rows.items():
        i = names.index(k)
        P[i] = 0.0
        for j, p in row.items():
            P[i, names.index(j)] = p
    return P


def base_matrix(sc: Scenario) -> np.ndarray:
    """The per-step transition matrix without phase overrides; regimes with ``drivers`` at the month-0 drivers."""
    names = sc.regime_names
    if sc.transitions is not None:
        return _drivers.base_rows(sc, rows_matrix(sc.transitions, names))
    return _drivers.base_rows(sc, exit_matrix(sc.regimes, names, sc.steps_per_year / 12))


def phase_matrix(sc: Scenario, phase: Phase) -> np.ndarray:
    """The per-step transition matrix inside ``phase``."""
    names = sc.regime_names
    if sc.transitions is not None:
        return rows_matrix(phase.transitions or {}, names, base=base_matrix(sc))
    merged = {k: merge_override(r, phase.regimes[k]) if k in phase.regimes else r for k, r in sc.regimes.items()}
    return exit_matrix(merged, names, sc.steps_per_year / 12)


def is_irreducible(P: np.ndarray) -> bool:
    reach = (P > 0) | np.eye(len(P), dtype=bool)
    for _ in range(len(P)):
        reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
    return bool(reach.all())


def stationary_distribution(P: np.ndarray) -> np.ndarray:
    """pi with pi P = pi, sum 1 (P irreducible; one regime gives [1.0])."""
    K = len(P)
    A = np.vstack([P.T - np.eye(K), np.ones(K)])
    b = np.zeros(K + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(A, b, rcond=None)[0]
    pi = np.clip(pi, 0, None)
    return pi / pi.sum()


def json_schema() -> dict:
    """The JSON Schema (draft-07, which editors' YAML language servers support) of scenario files, built from
    the pydantic models: the structure
    (fields, types, required, no unknown keys) with every field's description and unit. The consistency rules
    (probabilities summing to 1, valid correlations, reachable regimes, ...) are checked by ``parse_scenario``
    only."""
    return {"$schema": "http://json-schema.org/draft-07/schema#", **Scenario.model_json_schema()}
