"""Build ``simulator/data/us_size_monthly.csv`` from Ken French's factors bundled in the `arch` package.

Run (``arch`` is needed here only, not at run time):

    pip install arch && python scripts/build_size_data.py

Source: Kenneth R. French Data Library, "Fama/French 3 Factors" (monthly, percent), as bundled in
``arch.data.frenchdata`` (file ``frenchdata.csv.gz``: columns Date (YYYYMM), Mkt-RF, SMB, HML, RF;
1926-07 .. 2018-11 in arch 8.0.0). Derivation, per month, in percent, then divided by 100:

    large = (Mkt-RF) + RF           the value-weighted US market return (dominated by big stocks)
    small = large + SMB             SMB = average of the three small portfolios minus the three big ones

So ``small - large = SMB``: the "small" series is the market plus the size premium, an approximation of the
small-stock portfolios' return (exact only if the market return equalled the big portfolios' average).
Both are simple monthly returns in decimals, dated at the month end. The inputs have two decimals in percent,
so the outputs are exact to four decimals and are written with four.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "simulator" / "data" / "us_size_monthly.csv"


def raw_french() -> pd.DataFrame:
    """The bundled CSV as published (percent), read straight from the arch package's data file."""
    import arch.data.frenchdata as fd

    path = Path(fd.__file__).with_name("frenchdata.csv.gz")
    with gzip.open(path, "rt") as fh:
        raw = pd.read_csv(io.StringIO(fh.read()), dtype={"Date": str})
    expected = ["Date", "Mkt-RF", "SMB", "HML", "RF"]
    if list(raw.columns) != expected:
        raise SystemExit(f"{path}: columns {list(raw.columns)}, expected {expected}")
    return raw


def build() -> pd.DataFrame:
    raw = raw_french()
    month = pd.PeriodIndex(pd.to_datetime(raw["Date"], format="%Y%m"), freq="M")
    large_pct = raw["Mkt-RF"] + raw["RF"]
    small_pct = large_pct + raw["SMB"]
    return pd.DataFrame(
        {
            "date": month.to_timestamp(how="end").strftime("%Y-%m-%d"),
            "small": (small_pct / 100).round(4),
            "large": (large_pct / 100).round(4),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    df = build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False, float_format="%.4f", lineterminator="\n")
    print(
        f"wrote {args.out}: {len(df)} months {df['date'].iloc[0]} .. {df['date'].iloc[-1]}, "
        f"{args.out.stat().st_size / 1024:.1f} KB"
    )


if __name__ == "__main__":
    main()
