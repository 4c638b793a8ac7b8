"""Build ``simulator/data/us_size_monthly.csv`` from Ken French's "Portfolios Formed on Size".

Run from the repository root (the input is the publisher's file, unmodified):

    python scripts/build_size_data.py [--source ../shared/data/french/Portfolios_Formed_on_ME.csv]

Source: Kenneth R. French Data Library, "Portfolios Formed on Size" (CSV, or the library's zip
``Portfolios_Formed_on_ME_CSV.zip``), its value-weighted monthly table: ``small`` = *Lo 30* (the bottom 30% of
NYSE market capitalisation, breakpoints set at each June end, all NYSE, AMEX and NASDAQ stocks below it),
``large`` = *Hi 30* (the top 30%). Percent divided by 100, simple monthly returns in decimals at month ends;
the vintage ("CRSP YYYYMM"), the input's SHA-256 and the table are recorded in the file's ``#`` header lines.
This is exactly ``capsim data french SOURCE --out simulator/data/us_size_monthly.csv``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's simulator, installed or not
OUT = ROOT / "simulator" / "data" / "us_size_monthly.csv"


def shared_data() -> Path:
    """The publishers' files: $CAPSIM_SHARED_DATA, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("CAPSIM_SHARED_DATA") or ROOT.parent / "shared" / "data")


def build(source: Path) -> str:
    from simulator.fit.data_sources import read_french, returns_csv_text

    return returns_csv_text(read_french(source, small="Lo 30", large="Hi 30", weights="value"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=shared_data() / "french" / "Portfolios_Formed_on_ME.csv")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from simulator.errors import CapsimError
    from simulator.output import write_text_atomic

    try:
        text = build(args.source)
    except CapsimError as exc:
        raise SystemExit(f"error: {exc}") from None
    write_text_atomic(args.out, text, force=True)
    print(f"wrote {args.out}: {text.count(chr(10)) - 6} months, {args.out.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main()
