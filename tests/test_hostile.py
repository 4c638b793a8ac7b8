"""Hostile and absurd input: every attack ends in exit 0 or 2 within seconds, never a hang, a traceback, a NaN
passed off as a number or a half-written folder (docs/scenarios.md "Limits", docs/outputs.md)."""

from __future__ import annotations

import time

import pytest
import yaml
from clihelp import assert_user_error, invoke

import simulator as sim
from simulator.scenario import MAX_YAML_DEPTH, MAX_YAML_NODES


def problems(path) -> list[tuple[str, str]]:
    with pytest.raises(sim.ScenarioError) as info:
        sim.load_scenario(path)
    assert str(path) in str(info.value)
    return info.value.problems


def only_problem(path) -> str:
    (problem,) = problems(path)
    return problem[1]


# --------------------------------------------------------------------------------------------
# YAML attacks: alias bombs, nesting, complex keys, merge keys, size, binary and empty files


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("field", ["description", "sources", "name", "assets"])
def test_alias_bomb_is_refused_at_once(write_scenario, scenario, field):
    bomb = billion_laughs()
    text = bomb.replace("l0:", "x0:", 1)  # the bomb in a mapping of its own, then used by a field
    data = yaml.safe_dump({k: v for k, v in scenario.items() if k != field}, sort_keys=False)
    path = write_scenario(f"bomb:\n{_indent(text)}{field}: *l9\n{data}")
    t0 = time.perf_counter()
    message = only_problem(path)
    assert time.perf_counter() - t0 < 2
    assert f"more than {MAX_YAML_NODES:,} values" in message and "line" in message


def test_alias_bomb_in_a_drift(write_scenario, scenario):
    text = yaml.safe_dump(scenario, sort_keys=False).replace("small: 0.1\n", "small: *l9\n", 1)
    message = only_problem(write_scenario(f"bomb:\n{_indent(billion_laughs())}{text}"))
    assert "more than" in message


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def test_a_few_aliases_are_fine(write_scenario, scenario):
    text = yaml.safe_dump(scenario, sort_keys=False)
    text = text.replace("description:", "description: &d", 1) + "sources: [*d, *d]\n"
    text = text.replace("sources:\n- test fixture, made-up numbers\n", "", 1)
    assert sim.load_scenario(write_scenario(text)).sources == [scenario["description"]] * 2


def test_recursive_alias(write_scenario):
    assert "recursive alias" in only_problem(write_scenario("name: &a [1, *a]\n"))


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "{a: " * 2000 + "1" + "}" * 2000])
def test_deep_nesting(write_scenario, text):
    assert f"more than {MAX_YAML_DEPTH} deep" in only_problem(write_scenario(f"name: x\nsources: {text}\n"))


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\nname: x\n", "{a: 1}: 2\n", "name: x\n? {b: 1}\n: 2\n"])
def test_complex_keys(write_scenario, text):
    message = only_problem(write_scenario(text))
    assert "a key must be a name or a number" in message and "line" in message


def test_merge_keys_are_accepted(write_scenario, scenario):
    base = scenario["regimes"]["expansion"]
    text = yaml.safe_dump(scenario, sort_keys=False)
    text = text.replace("  expansion:\n", "  expansion: &base\n", 1)
    text = text.replace("  slowdown:\n", "  slowdown:\n    <<: *base\n", 1)
    sc = sim.load_scenario(write_scenario(text))
    assert sc.regimes["slowdown"].drift == scenario["regimes"]["slowdown"]["drift"]  # its own keys win
    assert sc.regimes["expansion"].drift == base["drift"]


def test_merge_keys_keep_the_duplicate_rule(write_scenario, scenario):
    text = yaml.safe_dump(scenario, sort_keys=False).replace("  expansion:\n", "  expansion: &base\n", 1)
    text = text.replace("  slowdown:\n", "  slowdown:\n    <<: *base\n    corr: 0.5\n", 1)
    assert "duplicate key 'corr'" in only_problem(write_scenario(text))


def test_file_size_bound(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("description: '" + "x" * 2_000_000 + "'\n")
    assert "larger than 1,000,000 bytes" in only_problem(path)


def test_device_files_are_read_bounded():
    assert "larger than" in only_problem("/dev/zero") or "NUL" in only_problem("/dev/zero")


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "the file is empty"),
        (b"# only a comment\n", "the file is empty"),
        (b"just text\n", "holds a single text value"),
        (b"- a\n- b\n", "holds a list"),
        (b"42\n", "holds a single number"),
        (bytes(range(256)), "binary file"),
        (b"name: \xff\xfe\n", "not UTF-8 text"),
        (b"name: a\x01b\n", "#x0001"),
        (b"name: [\n", "not valid YAML at line 2, column 1"),
    ],
)
def test_file_level_messages(tmp_path, content, expected):
    path = tmp_path / "f.yaml"
    path.write_bytes(content)
    message = only_problem(path)
    assert expected in message
    assert "NoneType" not in message and "<byte string>" not in message and "<unicode string>" not in message


def test_long_values_are_abridged_in_messages(write_scenario, scenario):
    scenario["name"] = "a b" * 100_000
    (message,) = [m for p, m in problems(write_scenario(scenario)) if p == "name"]
    assert len(message) < 300


def test_cli_validate_bomb_exit_2(write_scenario):
    result = invoke("validate", write_scenario(billion_laughs() + "name: *l9\n"))
    assert_user_error(result, "more than")
