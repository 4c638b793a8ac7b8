"""Every `capsim ...` command shown as runnable in README.md and docs/*.md runs and exits 0.

The commands are the lines of fenced ``bash`` blocks that start with ``capsim`` (or end a ``... && capsim``
line), continuation lines joined. Each page runs in its own temporary folder holding a copy of ``scenarios/``,
``simulator/data/`` and ``docs/examples/`` (the pages' example scenarios), its commands in page order
(``capsim init my-scenarios`` before ``capsim validate my-scenarios/``), at small path counts (`capsim sensitivity`
at 4 base samples). A page marks a command it shows but that this test must not run with an HTML comment on the
line before the block, ``<!-- not run in the docs test: TEXT (why) -->``: the block's lines containing TEXT are
skipped. ``NOT_RUN`` lists every skipped line, so a new marker is a visible change.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from clihelp import describe, invoke

REPO = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
SHELLS = ("bash", "sh", "shell", "console")
MARKER = re.compile(r"<!-- not run in the docs test: (.+?) \((.+?)\) -->")
SIMULATING = {"run", "batch", "sweep", "compare", "blend", "check", "solve"}
SMALL_SAMPLES = "4"  # `capsim sensitivity --samples`: base samples of the Sobol plan
SMALL_PATHS = {"backtest": "200", "check": "20000"}  # check: enough paths for the shipped `expect` entries
DEFAULT_SMALL = "2000"

# (page, TEXT of its marker) -> how many commands it skips.
NOT_RUN = {
    ("README.md", "--posterior"): 2,
    ("README.md", "--download"): 1,
    ("docs/data.md", "capsim data"): 4,
    ("docs/batch-sweep.md", "my-views/"): 1,
    ("docs/batch-sweep.md", "/shared/book"): 4,
    ("docs/calibrate.md", "--posterior"): 1,
    ("docs/calibrate.md", "--drivers credit_spread,tbill"): 1,
    ("docs/calibrate.md", "--drivers credit_spread"): 1,
    ("docs/drivers.md", "--posterior"): 1,
    ("docs/methods.md", "--coordinator"): 1,
}


def commands(page: str) -> tuple[list[tuple[int, str]], dict[tuple[str, str], int]]:
    """The runnable commands of ``page`` as (line number, command), and the skips per marker."""
    lines = (REPO / page).read_text(encoding="utf-8").splitlines()
    out, skipped, markers, fence, i = [], {}, [], None, 0
    while i < len(lines):
        text = lines[i].strip()
        if text.startswith("```"):
            if fence is None:
                fence = text[3:].strip()
            else:
                fence, markers = None, []
        elif fence is None and (m := MARKER.fullmatch(text)):
            markers.append(m.group(1))
        elif fence in SHELLS:
            start = i
            while lines[i].rstrip().endswith("\\"):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            text = text.removeprefix("$ ")
            command = next((c.strip() for c in text.split("&&") if c.strip().startswith("capsim ")), None)
            if command is not None:
                hit = [m for m in markers if m in command]
                for m in hit:
                    skipped[(page, m)] = skipped.get((page, m), 0) + 1
                if not hit:
                    out.append((start + 1, command))
        i += 1
    return out, skipped


def as_test_args(command: str, folder: Path) -> tuple[list[str], Path | None]:
    """The arguments of ``command`` (comment dropped, at small path counts) and the file a ``>`` redirects
    its output to."""
    words = shlex.split(command, comments=True)[1:]
    target = None
    if ">" in words:
        at = words.index(">")
        target, words = folder / words[at + 1], words[:at]
    name = words[0]
    small = SMALL_PATHS.get(name, DEFAULT_SMALL)
    if "--samples" in words:
        words[words.index("--samples") + 1] = SMALL_SAMPLES
    if "--paths" in words:
        words[words.index("--paths") + 1] = small
    elif name in SIMULATING or name == "backtest":
        words += ["--paths", small]
    return words, target


def test_markers_are_the_listed_ones():
    found = {}
    for page in PAGES:
        found |= commands(page)[1]
    assert found == NOT_RUN


@pytest.mark.parametrize("page", [p for p in PAGES if commands(p)[0]])
def test_page_commands_run(page, tmp_path, monkeypatch):
    shutil.copytree(REPO / "scenarios", tmp_path / "scenarios")
    shutil.copytree(REPO / "simulator" / "data", tmp_path / "simulator" / "data")
    shutil.copytree(REPO / "docs" / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    for line, command in commands(page)[0]:
        args, target = as_test_args(command, tmp_path)
        result = invoke(*args)
        assert result.exit_code == 0, f"{page}:{line}: {command}\n{describe(result)}"
        if target is not None:
            target.write_text(result.output, encoding="utf-8")
