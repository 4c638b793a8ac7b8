"""Build ``simulator/data/us_macro_monthly.csv`` from FRED's monthly series.

Run from the repository root (the inputs are the publisher's files, unmodified):

    python scripts/build_macro_data.py [--source-dir ../shared/data/fred]

Sources: FRED, Federal Reserve Bank of St. Louis: BAA and AAA (Moody's Seasoned Baa/Aaa Corporate Bond Yield),
TB3MS (3-Month Treasury Bill, secondary market), FEDFUNDS (effective federal funds rate), GS10 (10-Year
Treasury constant maturity), monthly averages in percent a year. Columns: ``credit_spread`` = BAA - AAA,
``TB3MS``, ``FEDFUNDS``, ``GS10``, ``term_spread`` = GS10 - TB3MS, dated at month ends, each as far back as it
goes (empty before); inputs' SHA-256 and spans in the ``#`` header lines. This is exactly
``capsim data fred BAA.csv AAA.csv TB3MS.csv FEDFUNDS.csv GS10.csv --columns COLUMNS --out ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's simulator, installed or not
OUT = ROOT / "simulator" / "data" / "us_macro_monthly.csv"
SERIES = ["BAA", "AAA", "TB3MS", "FEDFUNDS", "GS10"]
COLUMNS = ["credit_spread", "TB3MS", "FEDFUNDS", "GS10", "term_spread"]


def shared_data() -> Path:
    """The publishers' files: $CAPSIM_SHARED_DATA, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("CAPSIM_SHARED_DATA") or ROOT.parent / "shared" / "data")


def build(source_dir: Path) -> str:
    from simulator.fit.data_sources import macro_csv_text, merge_fred

    return macro_csv_text(merge_fred([source_dir / f"{s}.csv" for s in SERIES], columns=COLUMNS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source-dir", type=Path, default=shared_data() / "fred")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from simulator.errors import CapsimError
    from simulator.output import write_text_atomic

    try:
        text = build(args.source_dir)
    except CapsimError as exc:
        raise SystemExit(f"error: {exc}") from None
    write_text_atomic(args.out, text, force=True)
    print(f"wrote {args.out}: {args.out.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main()
