"""The code reward: program extraction, test-case formats, pass fractions."""

from __future__ import annotations

import json

import pytest

from rewards.code import code_reward, extract_code, parse_tests

IO_TESTS = json.dumps([{"input": "21\n", "output": "42"}, {"input": "5\n", "output": "10\n"}])
ASSERT_TESTS = json.dumps(["assert double(2) == 4", "assert double(-1) == -2"])
GOOD = "def double(n):\n    return 2 * n\n\nif __name__ == '__main__':\n    print(double(int(input())))"


@pytest.mark.parametrize(("completion", "prefilled", "expected"), [
    ("<think>t</think>\n```python\nprint(1)\n```", False, "print(1)"),
    ("<think>t</think>\n```python\nprint(1)\n```\nthen\n```py\nprint(2)\n```", False, "print(2)"),  # last block
    ("<think>```python\nprint(1)\n```</think> done", False, "done"),  # code only inside think does not count
    ("<think>t</think> <answer>print(3)</answer>", False, "print(3)"),  # the answer region itself
    ("t </think>\n```\nprint(4)\n```", True, "print(4)"),  # pre-filled think, bare fence
    ("<think>never closed ```python\nprint(1)\n```", False, None),
])
def test_extract_code(completion, prefilled, expected):
    assert extract_code(completion, prefilled) == expected


def test_parse_tests_formats_and_errors():
    assert parse_tests(IO_TESTS)[0] == {"input": "21\n", "output": "42"}
    assert parse_tests(None, json.dumps({"tests": ["assert True"]})) == ["assert True"]
    assert parse_tests(None, "{}") == []
    with pytest.raises(ValueError, match="expected a JSON list"):
        parse_tests(json.dumps({"input": "1"}))
    with pytest.raises(ValueError, match="expected {'input': ..., 'output': ...}"):
        parse_tests(json.dumps([{"input": "1"}]))


@pytest.mark.parametrize(("program", "tests", "expected"), [
    (GOOD, IO_TESTS, 1.0),
    (GOOD, ASSERT_TESTS, 1.0),
    ("print(42)", IO_TESTS, 0.5),
    ("def double(n):\n    return n + 2", ASSERT_TESTS, 0.5),
    ("def double(n) return", ASSERT_TESTS, 0.0),  # syntax error
    ("import sys\nsys.exit(0)", ASSERT_TESTS, 0.0),  # exits before the asserts run
])
def test_pass_fraction(program, tests, expected):
    completion = f"<think>easy</think>\n```python\n{program}\n```"
    assert code_reward([completion], tests=[tests], timeout_s=3.0) == [expected]


def test_no_program_scores_zero_and_no_tests_none():
    assert code_reward(["<think>hm</think>"], tests=[IO_TESTS]) == [0.0]
    assert code_reward(["<think>t</think>```python\nprint(1)\n```"], tests=[None], metadata=["{}"]) == [None]
