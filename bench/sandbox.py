"""Benchmark: 100 hostile completions through the code reward on 8 workers, per sandbox mode.

Run:  .venv/bin/python bench/sandbox.py
The completions cycle through the attacks of tests/test_sandbox.py (loops, fork bombs, 10 GB
allocations, sockets, writes and reads outside, stdout floods, subprocesses, ctypes, killing the
parent, deleting files, and a `_posixsubprocess.fork_exec` shell). Both modes run in this one
process, alternating, so the ratio is measured under the same machine load. Every completion
must score 0 in both modes. Writes bench/results/sandbox.json.
"""

from __future__ import annotations

import json
import statistics
import time

from common import RESULTS, ROOT

from rewards.code import code_reward

N, WORKERS, REPEATS = 100, 8, 3
TESTS = json.dumps([{"input": "21\n", "output": "42"}, {"input": "5\n", "output": "10"}])
SOLVE = "print(int(input()) * 2)"
ATTACKS = [
    "while True:\n    pass\n",
    "import os\nwhile True:\n    os.fork()\n",
    "x = bytearray(10 * 1024 ** 3)\n",
    "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n",
    "open('/tmp/pwned-bench', 'w').write('pwned')\n",
    f"open({str(ROOT / 'pyproject.toml')!r}).read()\n",
    "while True:\n    print('x' * 10000)\n",
    "import subprocess\nsubprocess.run(['true'])\n",
    "import ctypes\n",
    "import os\nos.kill(os.getppid(), 9)\n",
    "import _posixsubprocess\n_posixsubprocess.fork_exec([b'/bin/sh', b'-c', b'sleep 30'], [b'/bin/sh'], True, (), "
    "None, [], -1, -1, -1, -1, -1, -1, -1, -1, True, True, -1, None, None, None, -1, None, False)\nwhile True:\n    pass\n",
]


def run(mode: str) -> float:
    completions = [f"<think>x</think>\n```python\n{ATTACKS[i % len(ATTACKS)]}{SOLVE}\n```" for i in range(N)]
    t0 = time.perf_counter()
    scores = code_reward(completions, tests=[TESTS] * N, timeout_s=1.0, cpu_s=1, workers=WORKERS, sandbox=mode)
    wall = time.perf_counter() - t0
    assert scores == [0.0] * N, f"{mode}: a hostile completion scored: {scores}"
    return wall


def main() -> None:
    walls: dict[str, list[float]] = {"process": [], "kernel": []}
    for _ in range(REPEATS):
        for mode in walls:
            walls[mode].append(run(mode))
    med = {mode: statistics.median(w) for mode, w in walls.items()}
    result = {"completions": N, "workers": WORKERS, "repeats": REPEATS, "wall_s": walls, "median_wall_s": med,
              "kernel_over_process": med["kernel"] / med["process"]}
    print(f"{N} hostile completions, {WORKERS} workers, median of {REPEATS}: process sandbox {med['process']:.2f} s, "
          f"kernel sandbox (bwrap) {med['kernel']:.2f} s, ratio {result['kernel_over_process']:.2f}")
    (RESULTS / "sandbox.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
