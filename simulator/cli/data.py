"""`capsim data`: thin commands over simulator.fit.data_sources (publishers' files into capsim's data files)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .options import stack, user_errors


def _progress(label: str):
    """A rich download bar on a terminal (bytes, rate); a no-op otherwise. Returns (context, callback)."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(TextColumn(label), DownloadColumn(), TransferSpeedColumn(), console=Console(stderr=True))
    task = bar.add_task(label, total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


def _fetch(url: str, name: str, timeout: float) -> Path:
    from ..fit.data_sources import download, sha256_of

    bar, update = _progress(f"downloading {name}")
    with bar:
        path = download(url, name, timeout=timeout, progress=update)
    click.echo(f"downloaded {path} sha256 {sha256_of(path.read_bytes())}", err=True)
    return path


_download_options = stack(
    click.option("--download", is_flag=True, help="Fetch the files from the publisher (into the user's cache)."),
    click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds."),
    click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV file to write."),
    click.option("--force", is_flag=True, help="Replace an existing --out file."),
)


@click.group("data")
def data():
    """Turn publishers' files (Ken French, FRED) into capsim's data files."""


@data.command("french")
@click.argument("file")
@click.option("--small", default="Lo 30", show_default=True, help="Column, or a sum/difference of columns.")
@click.option("--large", default="Hi 30", show_default=True, help="Column, or a sum/difference of columns.")
@click.option("--weights", type=click.Choice(["value", "equal"]), default="value", show_default=True)
@click.option(
    "--base-url",
    default=None,
    help="With --download: where FILE_CSV.zip is (default: the Ken French Data Library's ftp/ folder).",
)
@_download_options
@user_errors
def french(file, small, large, weights, base_url, download, timeout, out, force):
    """A Ken French file (CSV or zip) into capsim's returns CSV.

    FILE is the CSV or the library's zip; with --download, the library's name of the file (e.g.
    Portfolios_Formed_on_ME). The output has month-end dates and simple returns in decimals, with the vintage
    and the input's SHA-256 in # lines."""
    from ..fit.data_sources import FRENCH_URL, read_french, returns_csv_text
    from ..output import refuse_existing_file, write_text_atomic

    refuse_existing_file(out, force)
    if download:
        name = Path(file).name.removesuffix(".zip").removesuffix("_CSV")
        url = base_url.rstrip("/") + f"/{name}_CSV.zip" if base_url else FRENCH_URL.format(name=name)
        file = _fetch(url, f"{name}_CSV.zip", timeout)
    frame = read_french(file, small=small, large=large, weights=weights)
    write_text_atomic(out, returns_csv_text(frame), force=force)
    a = frame.attrs
    click.echo(
        f"wrote {out}: {len(frame)} months {frame.index[0]:%Y-%m} .. {frame.index[-1]:%Y-%m} "
        f"({a['vintage'] or 'vintage not stated'}; table {a['table']}; sha256 {a['sha256']})"
    )


@data.command("fred")
@click.argument("files", nargs=-1, required=True)
@click.option("--columns", default=None, help="Comma-separated output columns, in order (default: all).")
@click.option("--fred-key", default=None, help="With --download: FRED API key (default: $FRED_API_KEY).")
@click.option(
    "--url",
    default=None,
    help="With --download: URL template with {id} instead of FRED's API, "
    "e.g. https://fred.stlouisfed.org/graph/fredgraph.csv?id={id}",
)
@_download_options
@user_errors
def fred(files, columns, fred_key, url, download, timeout, out, force):
    """FRED monthly CSVs merged into one macro CSV.

    FILES are FRED CSVs; with --download, series ids (e.g. BAA AAA). Adds credit_spread = BAA - AAA and
    term_spread = GS10 - TB3MS; the # lines give each input's SHA-256 and the span where every column is
    present."""
    from ..errors import CapsimError
    from ..fit.data_sources import FRED_API_URL, fred_json_to_csv, macro_csv_text, merge_fred
    from ..output import refuse_existing_file, write_text_atomic

    refuse_existing_file(out, force)
    if download:
        key = fred_key or os.environ.get("FRED_API_KEY")
        if not url and not key:
            raise CapsimError(
                "--download needs a FRED API key (free, https://fred.stlouisfed.org/docs/api/api_key.html)",
                ("", "give --fred-key KEY or set FRED_API_KEY, or give --url with {id}"),
            )
        paths = []
        for sid in files:
            if url:
                paths.append(_fetch(url.format(id=sid), f"{sid}.csv", timeout))
            else:
                answer = _fetch(FRED_API_URL.format(id=sid, key=key), f"{sid}.json", timeout)
                paths.append(fred_json_to_csv(answer, sid))
        files = paths
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    frame = merge_fred(files, columns=cols)
    write_text_atomic(out, macro_csv_text(frame), force=force)
    complete = frame.attrs["complete"]
    click.echo(
        f"wrote {out}: {', '.join(frame.columns)}; {frame.index[0]} .. {frame.index[-1]}"
        + (f", every column {complete[0]} .. {complete[1]}" if complete else "")
    )
