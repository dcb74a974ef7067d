"""All benchmarks in one run (`make bench`): writes bench/results/perf.json and perf.md.

Run:  .venv/bin/python -m bench.perf
Order: reward costs (bench/reward_costs.py, also writes reward_costs.json), the GRPO overhead, rejection-sampling
throughput, then the pocket pipeline end to end (it builds the pocket base first if the run store's
cache does not hold it yet). Each prints its own figures as it goes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from typing import Any

from bench import grpo_overhead, pipeline, rejection_sampling, reward_costs
from bench.common import POCKET, RESULTS, ROOT


def table(perf: dict[str, Any]) -> str:
    """The figures as one markdown table (committed as perf.md, quoted in the README)."""
    g, r, p = perf["details"]["grpo_overhead"], perf["details"]["rejection_sampling"], perf["details"]["pipeline"]
    rows = [
        ("GRPO overhead: our reasoning-RL stage / plain TRL GRPOTrainer (wall, median of "
         f"{g['repeats']}, {g['steps']} steps)", f"{perf['grpo_overhead_ratio']:.3f}", "<= 1.05"),
        ("GRPO overhead, same runs, CPU time instead of wall (less disturbed by other jobs)",
         f"{g['grpo_overhead_cpu_ratio']:.3f}", "<= 1.05"),
        (f"rejection sampling: batched / one prompt at a time (verified completions/s; "
         f"{r['batched']['verified_per_s']:.2f} vs {r['one_at_a_time']['verified_per_s']:.2f})",
         f"{perf['rejection_sampling_speedup']}x", ">= 5x"),
        (f"`make pipeline` on {POCKET.name}: wall (pocket base {'cached' if p['base_from_cache'] else 'built'})",
         f"{perf['pipeline_wall_s']:.0f} s", ""),
        ("`make pipeline`: peak RSS", f"{perf['pipeline_peak_rss_mb']:.0f} MB", ""),
    ]
    rows += [(f"stage `{s}`: wall", f"{v:.1f} s", "") for s, v in perf["stage_wall_s"].items()]
    rows += [(f"reward `{k}`: per 1,000 completions", f"{v:.1f} ms", "") for k, v in perf["reward_ms_per_1000"].items()]
    lines = ["| figure | measured | target |", "|---|---:|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append(f"\n{perf['machine']}, {perf['date']}; `make bench` took {perf['bench_wall_s'] / 60:.1f} min.")
    return "\n".join(lines)


def _gpu() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def main() -> None:
    t0 = time.perf_counter()
    details: dict[str, Any] = {}
    print("== rewards", flush=True)
    reward_costs.main()
    details["rewards"] = json.loads((RESULTS / "reward_costs.json").read_text())
    print("== GRPO overhead", flush=True)
    details["grpo_overhead"] = grpo_overhead.main()
    print("== rejection sampling", flush=True)
    details["rejection_sampling"] = rejection_sampling.main()
    print("== pipeline", flush=True)
    details["pipeline"] = pipeline.main()
    perf = {
        "grpo_overhead_ratio": details["grpo_overhead"]["grpo_overhead_ratio"],
        "rejection_sampling_speedup": details["rejection_sampling"]["rejection_sampling_speedup"],
        "pipeline_wall_s": details["pipeline"]["pipeline_wall_s"],
        "pipeline_peak_rss_mb": details["pipeline"]["pipeline_peak_rss_mb"],
        "stage_wall_s": details["pipeline"]["stage_wall_s"],
        "reward_ms_per_1000": details["rewards"]["reward_ms_per_1000"],
        "bench_wall_s": round(time.perf_counter() - t0, 1),
        "recipe": str(POCKET.relative_to(ROOT)) if POCKET.is_relative_to(ROOT) else str(POCKET),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), {_gpu()}",
        "date": dt.date.today().isoformat(),
        "details": details,
    }
    (RESULTS / "perf.json").write_text(json.dumps(perf, indent=2) + "\n")
    md = table(perf)
    (RESULTS / "perf.md").write_text("# Benchmarks (`make bench`)\n\n" + md + "\n")
    print("\n" + md)
    print(f"\nwrote {RESULTS.relative_to(ROOT)}/perf.json and perf.md")


if __name__ == "__main__":
    main()
