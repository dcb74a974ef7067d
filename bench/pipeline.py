"""Benchmark: end-to-end wall time and peak memory of `make pipeline` on the pocket recipe, per stage.

Run:  .venv/bin/python bench/pipeline.py
Runs what `make pipeline` runs (`python -m shell.cli pipeline --recipe configs/pocket.yaml`, a new run
id, W&B offline) in a child process; the per-stage wall times come from the run's manifests
(`wall_s`), peak memory is the largest resident set of the child and its descendants
(getrusage(RUSAGE_CHILDREN)). The pocket base is shared through the run store's cache: when it is
already built, its stage costs seconds (the result says whether it was cached).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from typing import Any

from bench.common import POCKET, RESULTS, ROOT
from core.runstore import RunStore
from stages import graph

STAGE_ORDER = [s.name for s in graph.flow_stages(graph.FLOWS["r1-pipeline"])]


def main() -> dict[str, Any]:
    cache = RunStore().root / "cache" / "pocket-base"
    bases_before = set(cache.iterdir()) if cache.is_dir() else set()
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           # Prefect's temporary server can take longer than its 20 s default to start on a busy host.
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": os.environ.get(
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")}
    cmd = [sys.executable, "-m", "shell.cli", "pipeline", "--recipe", str(POCKET)]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, errors="replace")
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"the pipeline failed with exit code {proc.returncode}")
    found = re.search(r"^run (\S+)", proc.stdout, re.M)
    if not found:
        raise SystemExit("could not find the run id in the pipeline's output:\n" + proc.stdout[-2000:])
    run_id = found.group(1)
    manifests = {m["stage"]: m for m in RunStore().stages(run_id)}
    order = [s for s in STAGE_ORDER if s in manifests] + sorted(s for s in manifests if s not in STAGE_ORDER)
    stage_wall = {s: round(manifests[s]["wall_s"], 1) for s in order}
    base_cached = not (set(cache.iterdir()) - bases_before) if cache.is_dir() else False
    result = {"pipeline_wall_s": round(wall, 1), "pipeline_peak_rss_mb": round(peak_mb, 1), "stage_wall_s": stage_wall,
              "run_id": run_id, "stages_total_s": round(sum(stage_wall.values()), 1),
              "base_from_cache": base_cached}
    for stage, seconds in stage_wall.items():
        print(f"{stage:24s} {seconds:8.1f} s")
    print(f"pipeline wall {wall:.1f} s (stages {result['stages_total_s']} s, the rest is Prefect, imports and the "
          f"report), peak RSS {peak_mb:.0f} MB; pocket base {'from the cache' if base_cached else 'built in this run'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
