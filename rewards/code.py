"""The `code` reward: run the completion's program against test cases in the sandbox; score the pass fraction.

The program is the last fenced ```python (or bare ```) block of the answer region (the text after
`</think>`, see rewards.extract), else the extracted answer itself. Code written only inside the
thinking does not count.

Test cases come from the `tests` column, or from the `tests` key of the `metadata` JSON (where
file sources keep extra columns): a JSON list (or a list) whose items are either
  {"input": "...", "output": "..."}  the program reads stdin and must print the output (compared
                                     line by line, trailing whitespace ignored); or
  "assert f(2) == 4"                 a statement run after the program (as module `solution`, so its
                                     `if __name__ == "__main__":` block does not run); it passes when
                                     the program and the statement both finish without error.
Each test case runs in its own sandboxed process (rewards.sandbox): a bubblewrap sandbox of its own
unless the recipe accepts the weaker process sandbox by name (`params: {sandbox: process}`); with
neither available the recipe fails to validate, before any training, saying what to install. Once a run is killed by a
limit (time, CPU), the completion's remaining tests count as failed without running, so a
hostile completion costs at most one timeout.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewards.completions import column, prefilled_flags, text_of
from rewards.extract import answer_region, extract_answer
from rewards.registry import reward
from rewards.sandbox import Limits, SandboxUnavailable, check_mode, describe, run_python

_FENCE_RE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str, think_prefilled: bool = False) -> str | None:
    """The program in a completion (see module docstring), or None when it has none."""
    region = answer_region(completion, think_prefilled)
    if region is None:
        return None
    blocks = _FENCE_RE.findall(region)
    if blocks:
        return blocks[-1].strip() or None
    return extract_answer(completion, think_prefilled)


def parse_tests(tests: Any, metadata: Any = None) -> list[dict[str, str] | str]:
    """Test cases from a `tests` cell or the metadata's `tests` key; [] when there are none."""
    if tests is None and metadata:
        meta = json.loads(metadata) if isinstance(metadata, str) else metadata
        tests = meta.get("tests") if isinstance(meta, dict) else None
    if isinstance(tests, str):
        tests = json.loads(tests)
    if tests is None:
        return []
    if not isinstance(tests, list):
        raise ValueError(f"tests: expected a JSON list of {{'input', 'output'}} objects or assert strings, "
                         f"got {type(tests).__name__}")
    for case in tests:
        if not (isinstance(case, str) or (isinstance(case, dict) and {"input", "output"} <= set(case))):
            raise ValueError(f"test case {case!r:.80}: expected {{'input': ..., 'output': ...}} or an assert string")
    return tests


def _same_output(got: str, expected: str) -> bool:
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.strip().splitlines()]

    return lines(got) == lines(str(expected))


def pass_fraction(code: str, tests: list[dict[str, str] | str], limits: Limits | None = None,
                  sandbox: str = "kernel") -> float:
    """Share of `tests` the program passes (each run sandboxed in mode `sandbox`; see module docstring)."""
    limits = limits or Limits()
    passed = 0
    for case in tests:
        if isinstance(case, str):
            result = run_python(f"{code}\n\n{case}\n", limits=limits, assert_mode=True, mode=sandbox)
            passed += result.ok
        else:
            result = run_python(code, str(case["input"]), limits=limits, mode=sandbox)
            passed += result.ok and _same_output(result.stdout, case["output"])
        if result.hit_limit:
            break
    return passed / len(tests)


def check_sandbox(params: dict[str, Any]) -> str:
    """Load-time check of the code reward's sandbox: ValueError with what to do when it cannot run here."""
    mode = params.get("sandbox", "kernel")
    try:
        check_mode(mode)
    except SandboxUnavailable as exc:
        raise ValueError(str(exc)) from None
    info = describe(mode)
    layers = "bubblewrap: own user/mount/PID/network namespaces" if mode == "kernel" else \
        "process: uid nobody, network namespace only; host files readable"
    return f"code reward: sandbox mode {mode} ({layers}), runs as uid {info['runs_as_uid']}"


@reward("code", on_error=0.0, check=check_sandbox)
def code_reward(completions: list[Any], prompts: list[Any] | None = None, tests: Any = None,
                metadata: Any = None, think_prefilled: bool | None = None, timeout_s: float = 5.0,
                cpu_s: int = 2, memory_mb: int = 512, workers: int = 4, sandbox: str = "kernel",
                **kwargs: Any) -> list[float | None]:
    """Pass fraction of each completion's program on its test cases; 0.0 without a program, None without tests.

    Args:
        timeout_s, cpu_s, memory_mb: per test-case limits of the sandbox.
        workers: completions run concurrently (each is one small process at a time).
        sandbox: "kernel" (bubblewrap; the default) or "process" (weaker, accepted by name).
    """
    n = len(completions)
    cols = {"tests": tests, "metadata": metadata}
    cases = [parse_tests(t, m) for t, m in zip(column(cols, "tests", n), column(cols, "metadata", n), strict=True)]
    flags = prefilled_flags(prompts, n, think_prefilled)
    programs = [extract_code(text_of(c), f) for c, f in zip(completions, flags, strict=True)]
    limits = Limits(wall_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb)

    def score(i: int) -> float | None:
        if not cases[i]:
            return None
        return pass_fraction(programs[i], cases[i], limits, sandbox) if programs[i] else 0.0

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(score, range(n)))
