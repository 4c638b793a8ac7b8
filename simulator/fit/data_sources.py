"""Publishers' files read into capsim's data files: Ken French's size portfolios and factors, FRED's monthly series.

``read_french`` reads a file of the Kenneth R. French Data Library (the CSV, or the library's zip holding it) in
any vintage: the table is found by its title, column labels of every vintage are accepted (``Dec 2`` and
``2-Dec``), and the "CRSP YYYYMM" vintage line and the input's SHA-256 are kept. It returns monthly simple returns
in decimals at month ends; ``returns_csv_text`` writes them as capsim's returns CSV with that provenance in ``#``
comment lines, which ``read_returns`` skips and keeps. ``read_fred``/``merge_fred`` read FRED's monthly CSVs
(header ``observation_date,<ID>`` or ``DATE,<ID>``) and merge them with derived columns (``DERIVED``).

Every problem raises ``DataError`` naming the file, the line and the column; nothing is written by this module.
Values are handled as decimal text (``decimal.Decimal``), so a rebuilt file is byte for byte the same.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd

from .history import DataError

FRENCH_ATTRIBUTION = "Kenneth R. French Data Library (Tuck School of Business, Dartmouth)"
FRED_ATTRIBUTION = "FRED, Federal Reserve Bank of St. Louis; AAA/BAA: Moody's"
MISSING_MARKERS = {Decimal("-99.99"), Decimal("-999")}
# derived macro columns: name -> (minuend, subtrahend), each a FRED series id
DERIVED = {"credit_spread": ("BAA", "AAA"), "term_spread": ("GS10", "TB3MS")}
WEIGHTS = {"value": "value weight", "equal": "equal weight"}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lines(text: str) -> list[str]:
    return re.split(r"\r\n|\n|\r", text)


def _refuse_html(text: str, source: str) -> None:
    head = text.lstrip()[:512].lower()
    if head.startswith("<") or "<html" in head or "<!doctype" in head:
        raise DataError(
            source, [("line 1", "an HTML page, not a data file (an error page saved by a failed download?)")]
        )


def read_source(path: str | Path) -> tuple[str, str, str]:
    """``(text, source, sha256)`` of a CSV file, or of the one CSV inside a zip (``source`` = ``zip:member``);
    the SHA-256 is of the file as given (the zip itself for a zip)."""
    path = Path(path)
    src = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(src, "no such file") from None
    except OSError as exc:
        raise DataError(src, f"cannot read the file: {exc}") from None
    sha = sha256_of(data)
    if data[:4] == b"PK\x03\x04" or path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                members = [n for n in zf.namelist() if n.lower().endswith(".csv")]
                if len(members) != 1:
                    raise DataError(src, f"a zip must hold exactly one .csv file, it holds {zf.namelist()}")
                raw, src = zf.read(members[0]), f"{src}:{members[0]}"
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
            raise DataError(src, f"not a readable zip archive ({exc}): a truncated download?") from None
    else:
        raw = data
    if not raw.strip():
        raise DataError(src, "the file is empty")
    return raw.decode("latin-1"), src, sha


# --- Ken French ---------------------------------------------------------------------------------------------


def canonical_label(label: str) -> str:
    """A column label as the current vintage spells it: ``2-Dec`` (spreadsheet-mangled) -> ``Dec 2``."""
    label = " ".join(label.split())
    m = re.fullmatch(r"(\d+)-Dec", label)
    return f"Dec {m.group(1)}" if m else label


@dataclass
class Section:
    """One table of a Ken French file: its title line (may be empty), header and rows (1-based file lines)."""

    title: str
    header_line: int
    columns: list[str]
    rows: list[tuple[int, list[str]]]

    @property
    def monthly(self) -> bool:
        return bool(self.rows) and bool(re.fullmatch(r"\d{6}", self.rows[0][1][0]))

    @property
    def annual(self) -> bool:
        return bool(self.rows) and bool(re.fullmatch(r"\d{4}", self.rows[0][1][0]))


def french_sections(text: str) -> list[Section]:
    """The tables of a Ken French file: a header line starting with a comma, then rows up to a blank line."""
    lines = _lines(text)
    sections = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(",") and line.strip(", "):
            title = lines[i - 1].strip() if i > 0 else ""
            columns = [canonical_label(c) for c in line.split(",")[1:]]
            rows = []
            j = i + 1
            while j < len(lines) and lines[j].strip():
                rows.append((j + 1, [c.strip() for c in lines[j].split(",")]))
                j += 1
            sections.append(Section(title, i + 1, columns, rows))
            i = j
        else:
            i += 1
    return sections


def crsp_vintage(text: str) -> str | None:
    """'CRSP 202602' from the line "... created ... using the 202602 CRSP database", else None."""
    m = re.search(r"(\d{6})\s+CRSP database", text[:2000])
    return f"CRSP {m.group(1)}" if m else None


def _terms(formula: str, columns: list[str], source: str, option: str) -> list[tuple[int, str]]:
    """``[(sign, column)]`` of a sum or difference of column labels ('Mkt-RF + RF + SMB'); labels match longest
    first, so a label holding '-' reads as one label."""
    known = sorted(set(columns), key=len, reverse=True)
    text, pos, terms, sign_needed = canonical_label(formula), 0, [], False
    while True:
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if pos == len(text):
            break
        sign = 1
        if text[pos] in "+-":
            sign = -1 if text[pos] == "-" else 1
            pos += 1
            while pos < len(text) and text[pos] == " ":
                pos += 1
        elif sign_needed:
            raise DataError(source, [(option, f"{formula!r}: expected + or - at {text[pos:]!r}")])
        label = next((c for c in known if text.startswith(c, pos)), None)
        if label is None:
            kind = "a Fama/French factors file" if "SMB" in columns else "this file"
            raise DataError(
                source,
                [
                    (
                        option,
                        f"{formula!r}: {text[pos:]!r} is not a column of {kind}; its columns are {columns}",
                    )
                ],
                (
                    "give a column or a sum/difference of columns, e.g. small='Mkt-RF + RF + SMB'",
                    "give a column or a sum/difference of columns, e.g. --small 'Mkt-RF + RF + SMB'",
                )
                if "SMB" in columns
                else None,
            )
        terms.append((sign, label))
        pos += len(label)
        sign_needed = True
    if not terms:
        raise DataError(source, [(option, "empty: give a column label or a formula of column labels")])
    return terms


def _pick_section(sections: list[Section], weights: str, source: str) -> Section:
    monthly = [s for s in sections if s.monthly]
    if not sections:
        raise DataError(
            source,
            "no Ken French table found (a line of column labels starting with ',' followed by YYYYMM rows): "
            "the wrong kind of file?",
        )
    if not monthly:
        raise DataError(source, "no table of monthly (YYYYMM) rows: the wrong kind of file, or a truncated one?")
    if any(c in monthly[0].columns for c in ("Mkt-RF", "SMB")) and not any(
        "weight" in s.title.lower() for s in monthly
    ):
        return monthly[0]  # a factors file: its one monthly table has no title of its own
    wanted = WEIGHTS[weights]
    found = [s for s in monthly if wanted in s.title.lower().replace("weighted", "weight")]
    if not found:
        titles = [s.title for s in monthly]
        raise DataError(source, f"no monthly table titled '... {wanted.title()} Returns -- Monthly'; found {titles}")
    return found[0]


def read_french(path: str | Path, small: str = "Lo 30", large: str = "Hi 30", weights: str = "value") -> pd.DataFrame:
    """Monthly simple returns (decimals) of two series of a Ken French file, indexed by month-end date.

    ``small``/``large``: a column label (e.g. 'Lo 30', 'Dec 2' or '2-Dec') or a sum/difference of labels
    (a factors file: 'Mkt-RF + RF + SMB'). ``weights``: the value- or equal-weighted table of a portfolio file.
    ``attrs``: ``source``, ``sha256``, ``vintage`` ('CRSP 202602' or None), ``table`` (its title and line),
    ``formulas`` (name -> formula) and ``decimals`` (places of the decimal returns).
    """
    if weights not in WEIGHTS:
        raise DataError(str(path), f"weights must be one of {list(WEIGHTS)}, got {weights!r}")
    text, source, sha = read_source(path)
    _refuse_html(text, source)
    sections = french_sections(text)
    table = _pick_section(sections, weights, source)
    formulas = {"small": small, "large": large}
    terms = {k: _terms(v, table.columns, source, f"--{k}") for k, v in formulas.items()}
    used = {label for t in terms.values() for _, label in t}
    index = {label: table.columns.index(label) + 1 for label in used}

    problems: list[tuple[str, str]] = []
    months, out, places = [], {k: [] for k in terms}, 0
    for line, cells in table.rows:
        if len(cells) != len(table.columns) + 1:
            problems.append(
                (
                    f"line {line}",
                    f"{len(cells)} cells where the header (line {table.header_line}) has "
                    f"{len(table.columns) + 1}: a truncated or damaged file",
                )
            )
            break
        if not re.fullmatch(r"\d{6}", cells[0]) or not 1 <= int(cells[0][4:]) <= 12:
            problems.append((f"line {line}, column 1", f"{cells[0]!r} is not a month (YYYYMM)"))
            break
        values = {}
        for label in sorted(used):
            cell = cells[index[label]]
            try:
                values[label] = Decimal(cell)
                if not values[label].is_finite():
                    raise InvalidOperation
            except InvalidOperation:
                problems.append((f"line {line}, column {label!r}", f"not a number: {cell!r}"))
                continue
            if values[label] in MISSING_MARKERS:
                problems.append(
                    (f"line {line}, column {label!r}", f"{cell} marks a missing value in the requested column")
                )
            places = max(places, -values[label].as_tuple().exponent)
        if len(values) < len(used) or problems:
            continue
        months.append((line, pd.Period(f"{cells[0][:4]}-{cells[0][4:]}", freq="M")))
        for k, t in terms.items():
            out[k].append(sum((s * values[label] for s, label in t), Decimal(0)) / 100)
    if problems:
        raise DataError(source, problems)
    if not any(s.annual and s.header_line > table.header_line for s in sections):
        last = table.rows[-1][0] if table.rows else table.header_line
        raise DataError(
            source,
            [
                (
                    f"line {last}",
                    "the file ends without the annual table that follows the monthly ones in every Ken French "
                    "file: a truncated download? Download it again",
                )
            ],
        )
    _check_months(months, source)
    decimals = places + 2
    frame = pd.DataFrame(
        {k: [float(v) for v in vals] for k, vals in out.items()},
        index=pd.DatetimeIndex([m.to_timestamp(how="end").normalize() for _, m in months], name="date"),
    )
    frame.attrs.update(
        source=source,
        sha256=sha,
        vintage=crsp_vintage(text),
        table=f"{table.title or 'untitled'} (line {table.header_line})",
        formulas=formulas,
        decimals=decimals,
    )
    return frame


def _check_months(months: list[tuple[int, pd.Period]], source: str) -> None:
    """Each month once, consecutive: the line of the first repeat or hole."""
    for (_, prev), (line, m) in zip(months, months[1:]):
        if m == prev:
            raise DataError(source, [(f"line {line}, date", f"month {m} repeats the previous line's")])
        if m != prev + 1:
            raise DataError(
                source,
                [(f"line {line}, date", f"month {m} follows {prev}: months must be consecutive ({prev + 1} missing)")],
            )


def returns_csv_text(frame: pd.DataFrame, path_name: str | None = None) -> str:
    """capsim's returns CSV (``date`` at month ends, decimals) with the provenance of ``read_french`` in ``#``
    lines above the header."""
    a = frame.attrs
    lines = [
        f"# source: {Path(a['source']).name}, {FRENCH_ATTRIBUTION}",
        f"# vintage: {a['vintage'] or 'not stated in the file'}",
        f"# sha256: {a['sha256']}",
        f"# table: {a['table']}",
        "# columns: " + "; ".join(f"{k} = {v}" for k, v in a["formulas"].items()) + " (percent / 100)",
    ]
    body = frame.to_csv(date_format="%Y-%m-%d", float_format=f"%.{a['decimals']}f", lineterminator="\n")
    return "\n".join(lines) + "\n" + body


# --- FRED ---------------------------------------------------------------------------------------------------


def read_fred(path: str | Path) -> pd.DataFrame:
    """A FRED monthly CSV (header ``observation_date,<ID>...`` or ``DATE,<ID>...``; dates the first of the month)
    as a frame of decimal text indexed by month (``pd.Period``); ``attrs``: ``source``, ``sha256``."""
    text, source, sha = read_source(path)
    _refuse_html(text, source)
    lines = _lines(text)
    while lines and not lines[-1].strip():
        lines.pop()
    header = [c.strip() for c in lines[0].split(",")]
    if len(header) < 2 or header[0].lower() not in ("observation_date", "date") or not all(header[1:]):
        raise DataError(
            source,
            [
                (
                    "line 1",
                    f"header {lines[0][:80]!r} is not a FRED series file's: expected observation_date,<SERIES> "
                    "or DATE,<SERIES>",
                )
            ],
        )
    if len(lines) < 2:
        raise DataError(source, "no data rows below the header: a truncated file?")
    ids = header[1:]
    months, values = [], {s: [] for s in ids}
    for n, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(header):
            raise DataError(
                source, [(f"line {n}", f"{len(cells)} cells where the header has {len(header)}: a truncated file?")]
            )
        m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", cells[0])
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise DataError(source, [(f"line {n}, column {header[0]!r}", f"{cells[0]!r} is not a date YYYY-MM-DD")])
        if m.group(3) != "01":
            raise DataError(
                source,
                [
                    (
                        f"line {n}, column {header[0]!r}",
                        f"{cells[0]} is not the first of a month: monthly series only (FRED's frequency Monthly)",
                    )
                ],
            )
        months.append((n, pd.Period(cells[0][:7], freq="M")))
        for s, cell in zip(ids, cells[1:]):
            try:
                ok = Decimal(cell).is_finite()
            except InvalidOperation:
                ok = False
            if not ok:
                what = "a missing value" if cell in ("", ".", "NA") else f"not a number: {cell!r}"
                raise DataError(source, [(f"line {n}, column {s!r}", f"{what}; every month needs a value")])
            values[s].append(cell)
    _check_months(months, source)
    frame = pd.DataFrame(values, index=pd.PeriodIndex([m for _, m in months], name="date"))
    frame.attrs.update(source=source, sha256=sha)
    return frame


def merge_fred(paths, columns: list[str] | None = None) -> pd.DataFrame:
    """FRED files merged by month (each series as far back as it goes; empty text where absent), with the
    ``DERIVED`` columns whose inputs are present (differences, exact in decimal). ``columns`` picks and orders
    the output columns (default: every series, then the derived ones). ``attrs``: ``sources`` (list of
    ``(file, sha256, first month, last month, series)``) and ``complete`` (the first and last month where every
    output column has a value, or None)."""
    frames, sources = [], []
    seen: dict[str, str] = {}
    for p in paths:
        f = read_fred(p)
        for s in f.columns:
            if s in seen:
                raise DataError(f.attrs["source"], f"series {s} is also in {seen[s]}: give each series once")
            seen[s] = f.attrs["source"]
        frames.append(f)
        sources.append((f.attrs["source"], f.attrs["sha256"], f.index[0], f.index[-1], list(f.columns)))
    if not frames:
        raise DataError("<fred>", "no files given")
    merged = pd.concat(frames, axis=1, join="outer").sort_index()
    full = pd.period_range(merged.index[0], merged.index[-1], freq="M")
    merged = merged.reindex(full).fillna("")
    for name, (a, b) in DERIVED.items():
        if a in merged and b in merged:
            merged[name] = [str(Decimal(x) - Decimal(y)) if x and y else "" for x, y in zip(merged[a], merged[b])]
    if columns is not None:
        unknown = [c for c in columns if c not in merged.columns]
        if unknown:
            raise DataError(
                ", ".join(str(p) for p in paths),
                [(f"column {c!r}", f"not a series or derived column: {list(merged.columns)}") for c in unknown],
            )
        merged = merged[columns]
    present = (merged != "").all(axis=1).to_numpy()
    merged.attrs.update(
        sources=sources,
        complete=(merged.index[present][0], merged.index[present][-1]) if present.any() else None,
    )
    merged.index.name = "date"
    return merged


def macro_csv_text(frame: pd.DataFrame) -> str:
    """The merged FRED frame as a CSV (month-end dates, percent as published) with its provenance in ``#``
    lines: attribution, each input's file, SHA-256 and span, the derived columns, the complete span."""
    lines = [f"# source: {FRED_ATTRIBUTION}", "# units: percent a year, monthly averages, dated at month ends"]
    for src, sha, first, last, ids in frame.attrs["sources"]:
        lines.append(f"# {'+'.join(ids)}: {Path(src).name} sha256 {sha} ({first} .. {last})")
    derived = [f"{k} = {a} - {b}" for k, (a, b) in DERIVED.items() if k in frame.columns]
    if derived:
        lines.append("# derived: " + "; ".join(derived))
    complete = frame.attrs["complete"]
    lines.append(
        f"# complete: {_month_end(complete[0])} .. {_month_end(complete[1])} (every column present)"
        if complete
        else "# complete: no month has every column"
    )
    out = frame.copy()
    out.index = [_month_end(m) for m in frame.index]
    out.index.name = "date"
    return "\n".join(lines) + "\n" + out.to_csv(lineterminator="\n")


def _month_end(month: pd.Period) -> str:
    return month.to_timestamp(how="end").strftime("%Y-%m-%d")


# --- downloads ----------------------------------------------------------------------------------------------

FRENCH_URL = "https://mba.tuck.dartmouth.edu/pages/faculty/ken.french/ftp/{name}_CSV.zip"
FRED_API_URL = "https://api.stlouisfed.org/fred/series/observations?series_id={id}&api_key={key}&file_type=json"
TIMEOUT_S = 30.0


class DownloadError(DataError):
    """A download that failed: offline, refused, timed out, or an HTTP error."""


def cache_dir() -> Path:
    """Where downloads are kept: the user's cache folder (platformdirs), ``.../capsim/downloads``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("capsim")) / "downloads"


def download(url: str, name: str, timeout: float = TIMEOUT_S, progress=None) -> Path:
    """Fetch ``url`` into ``cache_dir() / name`` (atomically: a failed download leaves no file) and return the
    path. ``progress(done_bytes, total_bytes_or_None)`` is called as chunks arrive. Raises ``DownloadError``
    when the host cannot be reached, the server answers an HTTP error, or ``timeout`` seconds pass without
    data."""
    import os
    import tempfile
    import urllib.error
    import urllib.request

    shown = re.sub(r"api_key=[^&]+", "api_key=***", url)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    request = urllib.request.Request(url, headers={"User-Agent": "capsim"})
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(request, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := resp.read(1 << 16):
                fh.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise DownloadError(shown, f"the download stopped after {done} of {total} bytes: try again")
        os.replace(tmp, target)
    except urllib.error.HTTPError as exc:
        raise DownloadError(shown, f"the server answered HTTP {exc.code} ({exc.reason}): check the name") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        earlier = f"; a copy downloaded earlier is {target}, which you can give as FILE" if target.exists() else ""
        raise DownloadError(
            shown,
            f"cannot download ({reason}): offline, or the host is unreachable or timed out after {timeout:g} s"
            f"{earlier}",
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def fred_json_to_csv(path: Path, series: str) -> Path:
    """Turn the FRED API's JSON answer (``observations``: date, value) into FRED's CSV beside it."""
    import json

    try:
        obs = json.loads(path.read_text(encoding="utf-8"))["observations"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(str(path), f"not an answer of FRED's API ({exc}): a wrong key or URL?") from None
    out = path.with_suffix(".csv")
    rows = [f"observation_date,{series}"] + [f"{o['date']},{o['value']}" for o in obs]
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out
