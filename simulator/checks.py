"""`expect` entries tested against a summary, and JUnit XML for CI systems."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .scenario import Expect


class CheckResult(NamedTuple):
    scenario: str
    name: str  # e.g. "p_outperform@12m between [0.55, 0.8]"
    passed: bool
    detail: str  # what was observed


def evaluate(scenario: str, expects: list[Expect], summary: pd.DataFrame) -> list[CheckResult]:
    """Test every ``expect`` entry against ``summary`` (one row per report horizon)."""
    out = []
    for e in expects:
        row = summary.loc[summary["horizon_months"] == e.horizon_months].iloc[0]
        value = float(row[e.metric])
        se = f" (p_outperform_se {row['p_outperform_se']:.2g})" if e.metric == "p_outperform" else ""
        if e.between is not None:
            lo, hi = e.between
            ok, rule = lo <= value <= hi, f"between [{lo:g}, {hi:g}]"
        else:
            op = "above" if e.above is not None else "below"
            target = e.above if e.above is not None else e.below
            bound = float(row[target]) if isinstance(target, str) else float(target)
            ok = value > bound if op == "above" else value < bound
            rule = f"{op} {target} ({bound:.4g})" if isinstance(target, str) else f"{op} {bound:g}"
        out.append(CheckResult(scenario, f"{e.metric}@{e.horizon_months}m {rule}", ok, f"got {value:.4g}{se}"))
    return out


def write_junit(results: list[CheckResult], path: str | Path, errors: dict[str, str] | None = None) -> None:
    """JUnit XML: one testsuite per scenario, one testcase per check; ``errors`` maps a scenario file to
    the reason it could not be checked at all."""
    root = ET.Element("testsuites", name="capsim check")
    suites: dict[str, ET.Element] = {}
    for r in results:
        if r.scenario not in suites:
            suites[r.scenario] = ET.SubElement(root, "testsuite", name=r.scenario)
        case = ET.SubElement(suites[r.scenario], "testcase", classname=f"capsim.{r.scenario}", name=r.name)
        if not r.passed:
            ET.SubElement(case, "failure", message=r.detail).text = f"{r.name}: {r.detail}"
    for source, message in (errors or {}).items():
        suite = ET.SubElement(root, "testsuite", name=source)
        case = ET.SubElement(suite, "testcase", classname="capsim.load", name=source)
        ET.SubElement(case, "error", message=message.splitlines()[0]).text = message
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
        suite.set("errors", str(sum(c.find("error") is not None for c in cases)))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
