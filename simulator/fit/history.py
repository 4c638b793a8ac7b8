"""Historical returns: reading and validating a returns CSV, and the shipped US size data.

A returns file has a ``date`` column (ISO dates, YYYY-MM-DD or YYYY-MM) and one column per asset of simple
periodic returns, in decimals (``percent=True`` for percent). ``read_returns`` checks everything a fit relies
on and raises ``DataError`` naming the file and the line (file line, the header being line 1), date and
column of every problem it finds. It returns a DataFrame indexed by date (one column per asset, decimals) whose
``attrs`` hold ``source`` (the file), ``frequency`` (monthly | weekly | daily) and ``provenance``: the
``# key: value`` comment lines above the header (as ``capsim data`` writes them: source, vintage, sha256),
a dict, empty when there are none.
"""

from __future__ import annotations

import csv
import io
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CapsimError
from ..scenario import STEPS_PER_YEAR

# Typical spacing of consecutive dates (days) and the largest gap that is not a hole in the series.
NOMINAL_GAP_DAYS = {"monthly": (25, 35, 35), "weekly": (5, 9, 9), "daily": (0.5, 4.5, 6)}
MISSING_TOKENS = {"", "na", "n/a", "nan", "null", "none", "."}
MAX_LISTED = 8  # problems listed per error message

US_SIZE_FILE = "us_size_monthly.csv"


class DataError(CapsimError):
    """A returns file that cannot be used; ``problems`` lists ``(where, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]] | str, fix: tuple[str, str] | None = None):
        self.source = str(source)
        self.problems = [("", problems)] if isinstance(problems, str) else list(problems)
        shown = self.problems[:MAX_LISTED]
        if len(self.problems) == 1:
            where, msg = shown[0]
            text = f"{self.source}: {where + ': ' if where else ''}{msg}"
        else:
            text = "\n".join(
                [f"{self.source}: {len(self.problems)} problem(s) in the data:"]
                + [f"  - {w + ': ' if w else ''}{m}" for w, m in shown]
                + ([f"  - ... and {len(self.problems) - MAX_LISTED} more"] if len(self.problems) > MAX_LISTED else [])
            )
        super().__init__(text, fix)


def read_returns(
    path: str | Path,
    columns: list[str] | None = None,
    *,
    percent: bool = False,
    frequency: str | None = None,
    start_date=None,
    end_date=None,
) -> pd.DataFrame:
    """Read a returns CSV, validate it and return simple returns in decimals indexed by date.

    ``columns`` picks (and orders) the asset columns (default: every column but ``date``).
    ``frequency`` is inferred from the spacing of the dates unless given (and then checked against it).
    ``start_date``/``end_date`` (inclusive) cut the sample after the file as a whole has been checked.
    """
    path = Path(path)
    src = str(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
        n_comments = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
        raw = pd.read_csv(
            io.StringIO("".join(lines[n_comments:])),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=True,
        )
    except FileNotFoundError:
        raise DataError(src, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(src, f"cannot read the file: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(src, "the file is empty (expected a header line: date,<asset>,...)") from None
    except pd.errors.ParserError as exc:
        raise DataError(src, f"not a well-formed CSV file: {exc}") from None
    header = _header(lines[n_comments] if n_comments < len(lines) else "")  # pandas renames repeats
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(src, [("header", f"column name(s) given twice: {dupes}")])
    frame = validate_returns(
        raw,
        src,
        columns,
        percent=percent,
        frequency=frequency,
        start_date=start_date,
        end_date=end_date,
        first_line=n_comments + 1,
    )
    frame.attrs["provenance"] = provenance(lines[:n_comments])
    return frame


def provenance(comment_lines: list[str]) -> dict[str, str]:
    """``{key: value}`` of ``# key: value`` lines (other comment lines are ignored)."""
    found = {}
    for line in comment_lines:
        key, sep, value = line.lstrip("#").strip().partition(":")
        if sep and key.strip():
            found[key.strip()] = value.strip()
    return found


def _header(line: str) -> list[str]:
    """The column names of a CSV header line, stripped, as written (pandas renames a repeated one)."""
    return [c.strip() for c in next(csv.reader([line]), [])]


def validate_returns(
    raw: pd.DataFrame,
    source: str,
    columns: list[str] | None = None,
    *,
    percent: bool = False,
    frequency: str | None = None,
    start_date=None,
    end_date=None,
    first_line: int = 1,
) -> pd.DataFrame:
    """The checks of ``read_returns`` on a table of strings as read from ``source`` (the header at file line
    ``first_line``, row i at line i + first_line + 1)."""
    raw = raw.rename(columns=lambda c: str(c).strip())
    # trailing empty lines are not data
    filled = raw.apply(lambda col: col.str.strip() != "").any(axis=1).to_numpy()
    last = int(np.nonzero(filled)[0][-1]) + 1 if filled.any() else 0
    raw = raw.iloc[:last]
    date_cols = [c for c in raw.columns if c.lower() == "date"]
    if len(date_cols) != 1:
        raise DataError(
            source, [("header", f"needs exactly one `date` column, found {len(date_cols)} among {list(raw.columns)}")]
        )
    date_col = date_cols[0]
    others = [c for c in raw.columns if c != date_col]
    dupes = sorted({c for c in raw.columns if list(raw.columns).count(c) > 1})
    if dupes:
        raise DataError(source, [("header", f"column name(s) given twice: {dupes}")])
    if columns is None:
        columns = others
    else:
        columns = [str(c).strip() for c in columns]
        unknown = [c for c in columns if c not in others]
        if unknown:
            raise DataError(
                source, [(f"column {c!r}", f"not in the file; its asset columns are {others}") for c in unknown]
            )
        if len(set(columns)) < len(columns):
            raise DataError(source, [("columns", f"a column is picked twice: {columns}")])
    if not columns:
        raise DataError(source, [("header", "no asset columns: give one column of returns per asset beside `date`")])
    if len(raw) == 0:
        raise DataError(source, "no data rows below the header")

    problems: list[tuple[str, str]] = []
    where = lambda i, col=None: f"line {i + first_line + 1}" + (f", column {col!r}" if col else "")  # noqa: E731

    # dates
    text = raw[date_col].str.strip()
    dates = pd.to_datetime(text, format="ISO8601", errors="coerce")
    for i in np.nonzero(dates.isna().to_numpy())[0][:MAX_LISTED]:
        shown = text.iloc[i]
        problems.append(
            (
                where(i, date_col),
                "missing date" if shown.lower() in MISSING_TOKENS else f"{shown!r} is not a date (use YYYY-MM-DD)",
            )
        )
    # values
    values = {}
    for c in columns:
        col = raw[c].str.strip()
        num = pd.to_numeric(col, errors="coerce")
        missing = col.str.lower().isin(MISSING_TOKENS).to_numpy()
        bad = (num.isna().to_numpy() & ~missing) | ~np.isfinite(num.fillna(0).to_numpy())
        for kind, mask in (("missing value", missing), ("not a number", bad)):
            idx = np.nonzero(mask)[0]
            if len(idx):
                first = idx[0]
                extra = f" ({len(idx)} such rows in this column, the first shown)" if len(idx) > 1 else ""
                detail = kind if kind == "missing value" else f"{kind}: {col.iloc[first]!r}"
                problems.append((where(first, c), f"{detail}{extra}; every row needs a numeric return"))
        values[c] = num.to_numpy(dtype=float)
    if problems:
        raise DataError(source, problems)

    d = dates.to_numpy()
    gaps = np.diff(d).astype("timedelta64[s]").astype(float) / 86400.0
    bad_order = np.nonzero(gaps <= 0)[0]
    if len(bad_order):
        i = bad_order[0] + 1
        kind = "repeats" if gaps[i - 1] == 0 else "comes before"
        raise DataError(
            source,
            [
                (
                    where(i, date_col),
                    f"date {_day(d[i])} {kind} the previous row's {_day(d[i - 1])}: "
                    "rows must be sorted by date, oldest first, each date once",
                )
            ],
        )

    frame = pd.DataFrame(values, index=pd.DatetimeIndex(d, name="date"))[columns]
    if percent:
        frame = frame / 100.0
    low = frame.to_numpy() <= -1
    if low.any():
        i, j = (int(x[0]) for x in np.nonzero(low))
        raise DataError(
            source,
            [
                (
                    where(i, columns[j]),
                    f"a simple return of {frame.iat[i, j]:g} is a loss of 100% or more (the log return is undefined)",
                )
            ],
            None
            if percent
            else ("if the file holds percent, pass percent=True", "if the file holds percent, pass --percent"),
        )
    if not percent:
        med = frame.abs().median()
        big = [c for c in columns if med[c] > 0.5]
        if big:
            raise DataError(
                source,
                [
                    (
                        f"column {c!r}",
                        f"median absolute return {med[c]:.3g} (over 50% a period) looks like percent, not decimals",
                    )
                    for c in big
                ],
                ("pass percent=True", "pass --percent"),
            )

    # frequency and holes
    if len(frame) >= 2:
        median_gap = float(np.median(gaps))
        guessed = next((f for f, (lo, hi, _) in NOMINAL_GAP_DAYS.items() if lo <= median_gap <= hi), None)
        if frequency is None:
            if guessed is None:
                raise DataError(
                    source,
                    f"cannot tell the frequency from the dates (median spacing {median_gap:.1f} days)",
                    ("pass frequency='monthly', 'weekly' or 'daily'", "give --frequency monthly|weekly|daily"),
                )
            frequency = guessed
        elif frequency not in STEPS_PER_YEAR:
            raise CapsimError(f"frequency must be one of {list(STEPS_PER_YEAR)}, got {frequency!r}")
        elif guessed != frequency:
            raise DataError(
                source,
                f"frequency {frequency} does not match the dates (median spacing "
                f"{median_gap:.1f} days{', i.e. ' + guessed if guessed else ''})",
            )
        hole = np.nonzero(gaps > NOMINAL_GAP_DAYS[frequency][2])[0]
        if len(hole):
            i = hole[0] + 1
            raise DataError(
                source,
                [
                    (
                        where(i, date_col),
                        f"{gaps[i - 1]:.0f} days after the previous date "
                        f"{_day(d[i - 1])}: {frequency} returns must be consecutive, with no missing "
                        "periods",
                    )
                ],
            )
    elif frequency is None:
        frequency = "monthly"

    # sample window
    if start_date is not None or end_date is not None:
        lo = pd.Timestamp(start_date) if start_date is not None else frame.index[0]
        hi = pd.Timestamp(end_date) if end_date is not None else frame.index[-1]
        if lo > hi:
            raise DataError(source, f"start date {lo.date()} is after end date {hi.date()}")
        frame = frame.loc[(frame.index >= lo) & (frame.index <= hi)]
        if frame.empty:
            raise DataError(
                source, f"no rows between {lo.date()} and {hi.date()} (the file runs {_day(d[0])} .. {_day(d[-1])})"
            )
    for c in columns:
        col = frame[c].to_numpy()
        if len(col) > 1 and np.ptp(col) <= 1e-15 * max(1.0, abs(col[0])):
            raise DataError(
                source,
                [
                    (
                        f"column {c!r}",
                        f"constant ({col[0]:g} in every row of the sample): "
                        "a return series with no variation cannot be fitted",
                    )
                ],
            )
    frame.attrs.update(source=source, frequency=frequency, provenance={})
    return frame


def check_enough_rows(frame: pd.DataFrame, needed: int, what: str) -> None:
    """DataError naming the file and the sample when ``frame`` has fewer than ``needed`` rows."""
    if len(frame) < needed:
        period = f" ({_day(frame.index[0])} .. {_day(frame.index[-1])})" if len(frame) else ""
        raise DataError(
            frame.attrs.get("source", "<data>"),
            f"{len(frame)} rows{period} are too few to {what}; need at least {needed}",
        )


def log_returns(frame: pd.DataFrame) -> np.ndarray:
    """[T, A] log returns log(1 + r) of a validated returns frame."""
    return np.log1p(frame.to_numpy(dtype=float))


def steps_per_year(frame: pd.DataFrame) -> int:
    return STEPS_PER_YEAR[frame.attrs.get("frequency", "monthly")]


def us_size_path() -> Path:
    """Path of the shipped monthly US small/large-cap returns (see README, "Shipped data")."""
    return Path(str(resources.files("simulator") / "data" / US_SIZE_FILE))


def load_us_size_returns(start_date=None, end_date=None) -> pd.DataFrame:
    """Monthly US small- and large-cap simple returns (decimals), 1926-07 .. 2026-02.

    Kenneth R. French Data Library, "Portfolios Formed on Size" (CRSP 202602), value-weighted: ``small`` = Lo 30,
    ``large`` = Hi 30 (``scripts/build_size_data.py``). Columns ``small``, ``large``; index ``date`` (month
    ends); ``attrs["provenance"]`` has the vintage and the source file's SHA-256.
    """
    return read_returns(us_size_path(), start_date=start_date, end_date=end_date)


def _day(x) -> str:
    return str(pd.Timestamp(x).date())


def period_text(frame: pd.DataFrame) -> str:
    """'1926-07-31 .. 2026-02-28 (1196 monthly observations)'."""
    n = len(frame)
    return f"{_day(frame.index[0])} .. {_day(frame.index[-1])} ({n} {frame.attrs.get('frequency', '')} observations)"


__all__ = [
    "DataError",
    "check_enough_rows",
    "load_us_size_returns",
    "log_returns",
    "period_text",
    "read_returns",
    "steps_per_year",
    "us_size_path",
    "validate_returns",
]
