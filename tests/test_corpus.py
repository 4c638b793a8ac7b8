"""A corpus of malformed scenario files generated from the shipped ones: every field deleted, wrong types, huge
and tiny values, unicode, duplicate and complex keys, deep nesting, alias bombs. Every file must end in exit 0
or 2, never a traceback or a hang; a refused file leaves nothing on disk; an accepted one runs and gives
finite numbers in every output (docs/scenarios.md, "Limits")."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from clihelp import describe, invoke

import simulator as sim
from simulator.shipped import shipped_files

WRONG = ["text", [1, 2], {"x": 1}, None, True]
EXTREME = [1e308, -1e308, 1e30, -1e30, 1e-300, 0, -1, 10**400, 0.5, 1e6]
PATHS = 1000  # paths per accepted file: one block, enough to see a NaN or an infinity


def leaves(node, path=()):
    """Every (path, value) below ``node``, containers included (a path is a tuple of keys and indices)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        yield path + (key,), value
        yield from leaves(value, path + (key,))


def replaced(data, path, value=None, delete=False):
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def bomb(levels: int = 8) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def corpus() -> list[tuple[str, str]]:
    """(file name, text) of every generated file, in a fixed order."""
    files = []
    for shipped in shipped_files():
        text = shipped.read_text()
        data = yaml.safe_load(text)
        stem = shipped.stem
        variants = []
        for i, (path, value) in enumerate(leaves(data)):
            variants.append(("del", replaced(data, path, delete=True)))
            if isinstance(value, (dict, list)):
                continue
            for w in WRONG[i % 2 :: 2]:  # half the wrong types at each leaf, alternating
                variants.append(("type", replaced(data, path, w)))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                variants += [("num", replaced(data, path, x)) for x in EXTREME]
        for kind, d in variants:
            files.append((f"{stem}-{kind}-{len(files)}.yaml", yaml.safe_dump(d, sort_keys=False, allow_unicode=True)))
        unicode = dict(data, name="ünïcødé", description="😀 " * 50)
        files.append((f"{stem}-unicode.yaml", yaml.safe_dump(unicode, allow_unicode=True)))
        files.append((f"{stem}-unicode-key.yaml", text + "\nnämé: x\n"))
        files.append((f"{stem}-dup.yaml", text + f"\nname: {data['name']}\n"))
        files.append((f"{stem}-complex.yaml", text + "\n? [a, b]\n: 1\n"))
        files.append((f"{stem}-nest.yaml", text + "\nsources: " + "[" * 3000 + "]" * 3000 + "\n"))
        files.append((f"{stem}-nestmap.yaml", text + "\nsources: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n"))
        files.append((f"{stem}-bomb.yaml", "x:\n" + "".join(f"  {line}\n" for line in bomb().splitlines()) + text))
        files.append((f"{stem}-bomb-name.yaml", bomb() + text.replace(f"name: {data['name']}", "name: *l8", 1)))
        files.append((f"{stem}-merge.yaml", text + "\nbase: &b {x: 1}\nother:\n  <<: *b\n"))
    files += [("empty.yaml", ""), ("list.yaml", "- a\n"), ("binary.yaml", "\x00\x01"), ("tab.yaml", "name:\t[\n")]
    return files


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name, text in corpus():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def outcome(path: Path, out: Path) -> tuple[int, float]:
    """What `capsim run FILE --paths 1000` does, in-process through the library it wraps: (exit code, seconds).
    An accepted file is simulated and saved, and every number of its outputs must be finite."""
    t0 = time.perf_counter()
    try:
        sc = sim.load_scenario(path)
        res = sim.simulate(sc, n_paths=PATHS, seed=0)
        res.save(out)
    except sim.CapsimError:
        assert not out.exists()
        return 2, time.perf_counter() - t0
    for table in ("summary.csv", "fan.csv"):
        values = np.genfromtxt(out / table, delimiter=",", skip_header=1)
        values = values[:, ~np.isnan(values).all(axis=0)]  # text columns read as NaN throughout
        assert np.isfinite(values).all(), (path, table)
    return 0, time.perf_counter() - t0


def test_corpus(written, tmp_path):
    t0 = time.perf_counter()
    files = sorted(written.glob("*.yaml"))
    codes, slowest = {}, (0.0, None)
    for i, f in enumerate(files):
        codes[f.name], seconds = outcome(f, tmp_path / f"out{i}")
        slowest = max(slowest, (seconds, f.name))
    accepted = sorted(n for n, c in codes.items() if c == 0)
    refused = len(files) - len(accepted)
    # the real CLI validates the whole folder in one process: exit 2, no traceback, one verdict per file
    cli = subprocess.run(
        [sys.executable, "-m", "simulator", "validate", str(written)], capture_output=True, text=True, timeout=300
    )
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    ok = sorted(Path(line.split(maxsplit=1)[1]).name for line in cli.stdout.splitlines() if line.startswith("ok"))
    said_invalid = int(cli.stderr.strip().splitlines()[-1].split()[1])
    assert said_invalid + len(ok) == len(files)
    assert set(ok) >= set(accepted)  # a file refused by validate is never run; one refused at run time is counted
    # a sample through `capsim run`: exit 0 or 2 as in-process, nothing written for a refused file
    for name in files[:: max(1, len(files) // 12)]:
        out = tmp_path / "cli" / name.stem
        result = invoke("run", name, "--paths", PATHS, "--out", out, "--quiet")
        assert result.exit_code == codes[name.name], describe(result)
        assert result.exit_code == 0 or not out.exists()
    wall = time.perf_counter() - t0
    print(f"\ncorpus: {len(files)} files, {refused} refused (exit 2), {len(accepted)} accepted, {wall:.1f} s; "
          f"slowest {slowest[1]} {slowest[0]:.2f} s")
    assert slowest[0] < 10
