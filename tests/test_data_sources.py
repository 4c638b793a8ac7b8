"""Readers of Ken French and FRED files (simulator.fit.data_sources), `capsim data`, and the shipped data rebuilt
byte for byte from the publishers' files (``$CAPSIM_SHARED_DATA``, else ``<repo>/../shared/data``)."""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

import pytest
from clihelp import assert_user_error, describe, invoke

from simulator.fit.data_sources import macro_csv_text, merge_fred, read_fred, read_french, returns_csv_text
from simulator.fit.history import DataError, read_returns

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAPSIM_SHARED_DATA") or ROOT.parent / "shared" / "data")
needs_shared = pytest.mark.skipif(
    not (SHARED / "french").is_dir(), reason=f"publishers' files not found at {SHARED} (set CAPSIM_SHARED_DATA)"
)
SIZE = SHARED / "french" / "Portfolios_Formed_on_ME.csv"
FACTORS_ZIP = SHARED / "french" / "F-F_Research_Data_Factors_CSV.zip"
FACTORS = SHARED / "french" / "F-F_Research_Data_Factors.csv"

# A small size-portfolio file in the library's layout (CRLF, a title line above each table, -99.99 = missing).
LABELS = ",<= 0,Lo 30,Med 40,Hi 30,Lo 10,2-Dec,Hi 10"


def size_text(months=("192607", "192608", "192609", "192610"), vintage="202602", title="Average Value Weight"):
    rows = [
        f"{m},  -99.99,    {i + 0.25:.2f},    1.53,   -{i + 1}.40,    0.29,   0.47,   3.64"
        for i, m in enumerate(months)
    ]
    lines = [
        f"This file was created using the {vintage} CRSP database.  It contains",
        "value- and equal-weighted returns for size portfolios.",
        "",
        "Missing data are indicated by -99.99 or -999.",
        "",
        "",
        f"  {title} Returns -- Monthly",
        LABELS,
        *rows,
        "",
        "",
        "  Average Equal Weighted Returns -- Monthly",
        LABELS,
        *[r.replace("1.53", "2.00") for r in rows],
        "",
        "",
        "  Value Weight Returns -- Annual from January to December",
        LABELS,
        "  1927,  -99.99,   10.00,   11.00,   12.00,   13.00,   14.00,   15.00",
        "",
        "Copyright 2026 Eugene F. Fama and Kenneth R. French",
    ]
    return "\r\n".join(lines) + "\r\n"


def write(tmp_path, text, name="Portfolios_Formed_on_ME.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    return path


def refused(tmp_path, args, *mentions):
    """`capsim data ARGS --out OUT`: exit 2 naming each mention, and OUT not written."""
    out = tmp_path / "out.csv"
    assert_user_error(invoke("data", *args, "--out", out), *mentions)
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))


# --- Ken French ---------------------------------------------------------------------------------------------


def test_size_file_value_and_equal_weights(tmp_path):
    path = write(tmp_path, size_text())
    f = read_french(path)
    assert list(f.columns) == ["small", "large"] and len(f) == 4
    assert [str(d.date()) for d in f.index] == ["1926-07-31", "1926-08-31", "1926-09-30", "1926-10-31"]
    assert f["small"].tolist() == [0.0025, 0.0125, 0.0225, 0.0325] and f["large"].iloc[1] == -0.024
    assert f.attrs["vintage"] == "CRSP 202602" and "Average Value Weight Returns -- Monthly" in f.attrs["table"]
    eq = read_french(path, small="Med 40", large="Lo 30", weights="equal")
    assert eq["small"].tolist() == [0.02] * 4 and "Equal Weighted" in eq.attrs["table"]


def test_both_decile_label_styles_and_old_titles(tmp_path):
    new = read_french(write(tmp_path, size_text()), small="Dec 2", large="Hi 10")
    old_text = size_text(vintage="202108", title="Value Weight").replace("2-Dec", "Dec 2").replace("\r\n", "\n")
    old = read_french(write(tmp_path, old_text, "old.csv"), small="2-Dec", large="Hi 10")
    assert new.equals(old) and new["small"].tolist() == [0.0047] * 4
    assert old.attrs["vintage"] == "CRSP 202108" and old.attrs["table"].startswith("Value Weight Returns -- Monthly")


def test_factors_formulas_and_wrong_kind(tmp_path):
    text = (
        "This file was created using the 202602 CRSP database.\r\n\r\n,Mkt-RF,SMB,HML,RF\r\n"
        "192607,   2.89,  -2.55,  -2.39,   0.22\r\n192608,   2.64,  -1.14,   3.81,   0.25\r\n\r\n"
        " Annual Factors: January-December \r\n,Mkt-RF,SMB,HML,RF\r\n  1927,  29.47,  -2.04,  -3.54,   3.12\r\n"
    )
    path = write(tmp_path, text, "F-F_Research_Data_Factors.csv")
    f = read_french(path, small="Mkt-RF + RF + SMB", large="Mkt-RF+RF")
    assert f["small"].tolist() == [0.0056, 0.0175] and f["large"].tolist() == [0.0311, 0.0289]
    assert read_french(path, small="SMB", large="-HML")["large"].tolist() == [0.0239, -0.0381]
    refused(tmp_path, ["french", path], str(path), "'Lo 30'", "Fama/French factors file", "--small")
    refused(tmp_path, ["french", path, "--small", "Mkt-RF * 2", "--large", "RF"], "--small", "'* 2'")


@pytest.mark.parametrize(
    "damage, mentions",
    [
        (lambda t: t.replace("192608", "192607", 1), ["line 10, date", "1926-07 repeats"]),
        (lambda t: t.replace("192609", "192610", 1), ["line 11, date", "1926-10 follows 1926-08"]),
        (lambda t: t.replace("    1.25", "    1.2x", 1), ["line 10, column 'Lo 30'", "not a number: '1.2x'"]),
        (lambda t: t.replace("    1.25", "  -99.99", 1), ["line 10, column 'Lo 30'", "-99.99 marks a missing"]),
        (lambda t: t.replace("   -3.40", "    -999", 1), ["line 11, column 'Hi 30'", "-999 marks a missing"]),
        (lambda t: t[: t.index("192609") + 20], ["line 11", "cells where the header (line 8) has 8", "truncated"]),
        (lambda t: t[: t.index("  Average Equal")], ["line 12", "annual table", "truncated"]),
        (lambda t: "<!DOCTYPE html><html><body>404 Not Found</body></html>", ["line 1", "an HTML page"]),
        (lambda t: "observation_date,AAA\n1919-01-01,5.35\n", ["no Ken French table found"]),
    ],
    ids=[
        "duplicate",
        "hole",
        "non-numeric",
        "marker-9999",
        "marker-999",
        "cut-mid-line",
        "cut-at-line",
        "html",
        "fred",
    ],
)
def test_bad_french_files_refused(tmp_path, damage, mentions):
    path = write(tmp_path, damage(size_text()))
    refused(tmp_path, ["french", path], str(path), *mentions)


def test_missing_marker_outside_requested_columns_is_fine(tmp_path):
    assert len(read_french(write(tmp_path, size_text()))) == 4  # '<= 0' holds -99.99 in every row
    with pytest.raises(DataError, match="'<= 0'.*-99.99 marks a missing"):
        read_french(write(tmp_path, size_text()), small="<= 0")


def test_zip_and_bad_zip(tmp_path):
    csv = write(tmp_path, size_text())
    zpath = tmp_path / "Portfolios_Formed_on_ME_CSV.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(csv, csv.name)
    assert read_french(zpath).equals(read_french(csv))
    assert read_french(zpath).attrs["source"] == f"{zpath}:{csv.name}"
    cut = tmp_path / "cut.zip"
    cut.write_bytes(zpath.read_bytes()[:100])
    refused(tmp_path, ["french", cut], str(cut), "not a readable zip archive")


def test_cli_french_writes_readable_returns(tmp_path):
    path = write(tmp_path, size_text())
    out = tmp_path / "r.csv"
    res = invoke("data", "french", path, "--out", out)
    assert res.exit_code == 0, describe(res)
    frame = read_returns(out)
    assert frame.equals(read_french(path)) and frame.attrs["provenance"]["vintage"] == "CRSP 202602"
    assert len(frame.attrs["provenance"]["sha256"]) == 64
    assert_user_error(invoke("data", "french", path, "--out", out), "file exists", "--force")
    assert invoke("data", "french", path, "--out", out, "--force").exit_code == 0


def test_read_returns_counts_comment_lines(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("# vintage: CRSP 202602\n# note\ndate,small,large\n2020-01-31,0.01,0.02\n2020-02-29,x,0.01\n")
    with pytest.raises(DataError, match="line 5, column 'small'"):
        read_returns(path)


# --- FRED ---------------------------------------------------------------------------------------------------


def fred_file(tmp_path, sid, rows, header="observation_date"):
    path = tmp_path / f"{sid}.csv"
    path.write_text(f"{header},{sid}\n" + "".join(f"{d},{v}\n" for d, v in rows))
    return path


def test_fred_merge_both_headers_and_derived(tmp_path):
    baa = fred_file(tmp_path, "BAA", [("2020-01-01", "3.77"), ("2020-02-01", "3.61"), ("2020-03-01", "4.29")])
    aaa = fred_file(tmp_path, "AAA", [("2020-02-01", "2.90"), ("2020-03-01", "3.03")], header="DATE")
    m = merge_fred([baa, aaa])
    assert list(m.columns) == ["BAA", "AAA", "credit_spread"]
    assert m["credit_spread"].tolist() == ["", "0.71", "1.26"] and m["AAA"].tolist() == ["", "2.90", "3.03"]
    assert [str(x) for x in m.attrs["complete"]] == ["2020-02", "2020-03"]
    out = tmp_path / "m.csv"
    res = invoke("data", "fred", baa, aaa, "--columns", "credit_spread,BAA", "--out", out)
    assert res.exit_code == 0, describe(res)
    text = out.read_text()
    assert "# complete: 2020-02-29 .. 2020-03-31 (every column present)" in text
    assert text.endswith("date,credit_spread,BAA\n2020-01-31,,3.77\n2020-02-29,0.71,3.61\n2020-03-31,1.26,4.29\n")


@pytest.mark.parametrize(
    "rows, mentions",
    [
        ([("2020-01-01", "1.0"), ("2020-03-01", "1.1")], ["line 3, date", "2020-02 missing"]),
        ([("2020-01-01", "1.0"), ("2020-01-01", "1.1")], ["line 3, date", "repeats"]),
        ([("2020-01-01", "1.0"), ("2020-02-01", "abc")], ["line 3, column 'GS10'", "not a number: 'abc'"]),
        ([("2020-01-01", "1.0"), ("2020-02-01", ".")], ["line 3, column 'GS10'", "a missing value"]),
        ([("2020-01-01", "1.0"), ("2020-01-08", "1.1")], ["line 3", "not the first of a month"]),
    ],
    ids=["hole", "duplicate", "non-numeric", "missing", "weekly"],
)
def test_bad_fred_files_refused(tmp_path, rows, mentions):
    path = fred_file(tmp_path, "GS10", rows)
    refused(tmp_path, ["fred", path], str(path), *mentions)


def test_fred_wrong_kind_html_truncated(tmp_path):
    french = write(tmp_path, size_text())
    refused(tmp_path, ["fred", french], str(french), "line 1", "not a FRED series file")
    html = tmp_path / "GS10.csv"
    html.write_text("<html><head><title>Error</title></head></html>\n")
    refused(tmp_path, ["fred", html], "an HTML page")
    cut = tmp_path / "TB3MS.csv"
    cut.write_text("observation_date,TB3MS\n2020-01-01,1.5\n2020-02")
    refused(tmp_path, ["fred", cut], "line 3", "cells where the header has 2")
    with pytest.raises(DataError, match="also in"):
        merge_fred([fred_file(tmp_path, "X", [("2020-01-01", "1")])] * 2)
    assert read_fred(fred_file(tmp_path, "Y", [("2020-01-01", "1")])).attrs["sha256"]


# --- the publishers' files and the shipped data -----------------------------------------------------------


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(text):
    return [line for line in text.splitlines() if not line.startswith("#")]


@needs_shared
def test_shipped_data_rebuilds_byte_for_byte():
    size = _script("build_size_data").build(SIZE)
    assert size.encode() == (ROOT / "simulator" / "data" / "us_size_monthly.csv").read_bytes()
    macro = _script("build_macro_data").build(SHARED / "fred")
    assert macro.encode() == (ROOT / "simulator" / "data" / "us_macro_monthly.csv").read_bytes()
    frame = read_returns(ROOT / "simulator" / "data" / "us_size_monthly.csv")
    assert (str(frame.index[0].date()), str(frame.index[-1].date()), len(frame)) == ("1926-07-31", "2026-02-28", 1196)


@needs_shared
def test_publishers_files_in_every_format(tmp_path):
    shipped = _rows((ROOT / "simulator" / "data" / "us_size_monthly.csv").read_text())
    zpath = tmp_path / "Portfolios_Formed_on_ME_CSV.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(SIZE, SIZE.name)
    assert _rows(returns_csv_text(read_french(zpath))) == shipped
    # the same file as an older vintage spells it: LF, "Value Weight Returns -- Monthly", "Dec 2"
    old = SIZE.read_bytes().decode("latin-1").replace("\r\n", "\n").replace("2-Dec", "Dec 2")
    old = old.replace("Average Value Weight Returns", "Value Weight Returns").replace("202602 CRSP", "202108 CRSP")
    old_path = write(tmp_path, old, "old.csv")
    assert _rows(returns_csv_text(read_french(old_path))) == shipped
    assert read_french(old_path, small="2-Dec").equals(read_french(SIZE, small="Dec 2"))
    # the factors file: zip and CSV give the same market+SMB series
    formulas = {"small": "Mkt-RF + RF + SMB", "large": "Mkt-RF + RF"}
    z, c = read_french(FACTORS_ZIP, **formulas), read_french(FACTORS, **formulas)
    assert z.equals(c) and len(z) == 1196 and z.attrs["vintage"] == "CRSP 202602"
    assert z["large"].iloc[0] == 0.0311  # 2.89 + 0.22 in the 2026 vintage


# --- --download: the real client against a local HTTP server ----------------------------------------------


@pytest.fixture
def server():
    """Serve the publishers' files (french/, fred/) over HTTP on 127.0.0.1; yields the base URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(SHARED)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@needs_shared
def test_download_french_and_fred(server, tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "ff.csv"
    args = ["--small", "Mkt-RF + RF + SMB", "--large", "Mkt-RF + RF", "--out", out]
    res = invoke("data", "french", "F-F_Research_Data_Factors", "--download", "--base-url", f"{server}/french", *args)
    assert res.exit_code == 0, describe(res)
    cached = tmp_path / "cache" / "capsim" / "downloads" / "F-F_Research_Data_Factors_CSV.zip"
    assert cached.read_bytes() == FACTORS_ZIP.read_bytes()
    assert f"sha256 {hashlib.sha256(FACTORS_ZIP.read_bytes()).hexdigest()}" in res.output
    assert out.read_text() == returns_csv_text(read_french(cached, small="Mkt-RF + RF + SMB", large="Mkt-RF + RF"))
    macro = tmp_path / "m.csv"
    res = invoke("data", "fred", "BAA", "AAA", "--download", "--url", f"{server}/fred/{{id}}.csv", "--out", macro)
    assert res.exit_code == 0, describe(res)
    local = macro_csv_text(merge_fred([SHARED / "fred" / "BAA.csv", SHARED / "fred" / "AAA.csv"]))
    assert _rows(macro.read_text()) == _rows(local)
    # a name the server does not have: its HTTP error, nothing written, no file left in the cache
    res = invoke(
        "data", "french", "No_Such_File", "--download", "--base-url", f"{server}/french", "--out", tmp_path / "x"
    )
    assert_user_error(res, "HTTP 404")
    assert not (tmp_path / "x").exists() and not (cached.parent / "No_Such_File_CSV.zip").exists()


def test_download_offline_and_timeout(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused, as offline
    res = invoke(
        "data", "fred", "GS10", "--download", "--url", f"http://127.0.0.1:{port}/{{id}}", "--out", tmp_path / "m"
    )
    assert_user_error(res, "cannot download", "offline")
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/{{id}}"
        res = invoke("data", "fred", "GS10", "--download", "--url", url, "--timeout", 0.5, "--out", tmp_path / "m")
    assert_user_error(res, "cannot download", "timed out after 0.5 s")
    assert not (tmp_path / "m").exists()
    monkeypatch.delenv("FRED_API_KEY", raising=False)
    assert_user_error(invoke("data", "fred", "GS10", "--download", "--out", tmp_path / "m"), "FRED_API_KEY")


def test_fred_api_answer_to_csv(tmp_path):
    from simulator.fit.data_sources import fred_json_to_csv

    answer = tmp_path / "GS10.json"
    answer.write_text(
        '{"observations": [{"date": "2020-01-01", "value": "1.76"}, {"date": "2020-02-01", "value": "1.50"}]}'
    )
    frame = read_fred(fred_json_to_csv(answer, "GS10"))
    assert frame["GS10"].tolist() == ["1.76", "1.50"]
    answer.write_text(
        '{"error_code": 400, "error_message": "Bad Request. The value for variable api_key is not registered."}'
    )
    with pytest.raises(DataError, match="not an answer of FRED's API"):
        fred_json_to_csv(answer, "GS10")


@needs_shared
def test_the_commands_write_the_shipped_files(tmp_path):
    out = tmp_path / "us_size_monthly.csv"
    assert invoke("data", "french", SIZE, "--out", out).exit_code == 0
    assert out.read_bytes() == (ROOT / "simulator" / "data" / "us_size_monthly.csv").read_bytes()
    fred = [SHARED / "fred" / f"{s}.csv" for s in ("BAA", "AAA", "TB3MS", "FEDFUNDS", "GS10")]
    macro = tmp_path / "us_macro_monthly.csv"
    res = invoke("data", "fred", *fred, "--columns", "credit_spread,TB3MS,FEDFUNDS,GS10,term_spread", "--out", macro)
    assert res.exit_code == 0, describe(res)
    assert macro.read_bytes() == (ROOT / "simulator" / "data" / "us_macro_monthly.csv").read_bytes()
