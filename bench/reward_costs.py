"""Benchmark: milliseconds to score 1,000 completions with each rule reward (single process, this machine).

Run:  .venv/bin/python -m bench.reward_costs
The completions are pocket-world chain sums in the corpus styles (steps in English, French or
mixed, direct answers, self-corrections), right and wrong, well- and ill-formed, as TRL passes
them (8 completions per prompt, token ids included). Writes bench/results/reward_costs.json.
"""

from __future__ import annotations

import json
import random
import statistics
import time

from bench.common import RESULTS, ROOT
from pocket import world
from rewards.catalog import get

N = 1000
GROUP = 8
REPEATS = 5
STYLES = world.STYLES


def batch(seed: int = 0) -> dict:
    """N completions and the columns TRL would pass with them."""
    rng = random.Random(seed)
    problems = list(world.problems(seed, N // GROUP, 2, 6))
    prompts, completions, answers, metadata = [], [], [], []
    for problem in problems:
        for _ in range(GROUP):
            text = world.solution(rng.choice(STYLES), list(problem.terms), rng, 0.5, 6, slip_rate=0.15,
                                   check_rate=0.2)
            if rng.random() < 0.2:  # spoil the shape now and then
                text = text.replace("</think>", "", 1) if rng.random() < 0.5 else "so " + text
            prompts.append(problem.prompt)
            completions.append(text)
            answers.append(problem.answer)
            metadata.append(json.dumps({"expression": world.show(list(problem.terms))}))
    ids = [[0] * len(c.split()) for c in completions]
    return {"prompts": prompts, "completions": completions, "completion_ids": ids, "answer": answers,
            "task": ["chain_sum"] * len(prompts), "metadata": metadata}


RUNS = {  # label -> (registry name, extra kwargs)
    "accuracy (reasoning-gym scorer)": ("accuracy", {}),
    "accuracy (math, no task)": ("accuracy", {"task": None}),
    "format": ("format", {}),
    "language_consistency": ("language_consistency", {}),
    "overlong": ("overlong", {"max_completion_len": 64, "soft_punish_cache": 16}),
    "cosine_length": ("cosine_length", {"max_len": 64}),
    "token_efficiency": ("token_efficiency", {}),
}


def main() -> None:
    columns = batch()
    n = len(columns["completions"])
    results: dict[str, float] = {}
    for label, (name, extra) in RUNS.items():
        func = get(name).func
        kwargs = {**columns, **extra}
        func(**kwargs)  # warm caches (reasoning-gym scorer lookup, regex compilation)
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            func(**kwargs)
            times.append(time.perf_counter() - t0)
        results[label] = round(statistics.median(times) * 1000 * N / n, 2)
        print(f"{label:36s} {results[label]:9.2f} ms per {N} completions")
    total = round(sum(v for k, v in results.items() if k != "accuracy (math, no task)"), 2)
    print(f"{'total (one of each reward)':36s} {total:9.2f} ms per {N} completions")
    out = RESULTS / "reward_costs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"completions": n, "repeats": REPEATS, "statistic": "median",
                               "reward_ms_per_1000": results, "total_ms_per_1000": total}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
