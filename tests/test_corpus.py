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


def dump(data) -> str:
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False, allow_unicode=True)


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
            variants.append(("type", replaced(data, path, WRONG[i % len(WRONG)])))  # a wrong type per leaf, in turn
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                picks = [EXTREME[(i + j) % len(EXTREME)] for j in range(0, len(EXTREME), 4)]  # 3 of them, in turn
                variants += [("num", replaced(data, path, x)) for x in picks]
        for kind, d in variants:
            files.append((f"{stem}-{kind}-{len(files)}.yaml", dump(d)))
        unicode = dict(data, name="ünïcødé", description="😀 " * 50)
        files.append((f"{stem}-unicode.yaml", dump(unicode)))
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


def outcome(path: Path) -> tuple[int, float]:
    """What `capsim run FILE --paths 1000` does, in-process through the library it wraps, short of drawing the
    picture: (exit code, seconds). An accepted file is simulated, and every number of its summary and fan tables
    (summary.csv, fan.csv) must be finite."""
    t0 = time.perf_counter()
    try:
        res = sim.simulate(sim.load_scenario(path), n_paths=PATHS, seed=0, fan_in_background=False)
        tables = [res.summary(), res.fan()]
    except sim.CapsimError:
        return 2, time.perf_counter() - t0
    for table in tables:
        assert np.isfinite(table.select_dtypes("number").to_numpy(np.float64)).all(), path
    return 0, time.perf_counter() - t0


def test_corpus(written, tmp_path):
    t0 = time.perf_counter()
    files = sorted(written.glob("*.yaml"))
    codes, slowest = {}, (0.0, None)
    for f in files:
        codes[f.name], seconds = outcome(f)
        slowest = max(slowest, (seconds, f.name))
    in_process = time.perf_counter() - t0
    accepted = sorted(n for n, c in codes.items() if c == 0)
    refused = len(files) - len(accepted)
    # a fifth of the files through the real CLI's validate, in one process: exit 2, no traceback, a verdict each
    sample = files[::5]
    cli = subprocess.run(
        [sys.executable, "-m", "simulator", "validate", *map(str, sample)], capture_output=True, text=True, timeout=300
    )
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    ok = {Path(line.split(maxsplit=1)[1]).name for line in cli.stdout.splitlines() if line.startswith("ok")}
    assert int(cli.stderr.strip().splitlines()[-1].split()[1]) + len(ok) == len(sample)
    assert ok >= {f.name for f in sample if codes[f.name] == 0}  # valid files some of which refuse to run
    # a sample through `capsim run`, accepted and refused: the same exit code, nothing written for a refused file,
    # finite numbers in the written tables of an accepted one
    for name in [*[f for f in files if codes[f.name] == 0][::60], *[f for f in files if codes[f.name] == 2][::200]]:
        out = tmp_path / name.stem
        result = invoke("run", name, "--paths", PATHS, "--out", out, "--quiet")
        assert result.exit_code == codes[name.name], describe(result)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
        if result.exit_code == 2:
            assert not out.exists()
        for table in ("summary.csv", "fan.csv") if result.exit_code == 0 else ():
            values = np.genfromtxt(out / table, delimiter=",", skip_header=1)
            assert np.isfinite(values[:, ~np.isnan(values).all(axis=0)]).all(), (name, table)
    wall = time.perf_counter() - t0
    print(
        f"\ncorpus: {len(files)} files, {refused} refused (exit 2), {len(accepted)} accepted, {wall:.1f} s "
        f"({in_process:.1f} s in-process); "
        f"slowest {slowest[1]} {slowest[0]:.2f} s"
    )
    assert slowest[0] < 10
