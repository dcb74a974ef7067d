"""What the benchmarks share: where results go, which recipe they run, and the pocket recipe's task
data and base (built once, cached in the run store). Run the benchmarks from the project root as
modules: `python -m bench.perf`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.config import load_recipe
from core.runstore import RunStore
from stages import graph, runner

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# R1_BENCH_RECIPE=configs/pocket-test.yaml runs every benchmark at test size (a quick check of the scripts).
POCKET = ROOT / os.environ.get("R1_BENCH_RECIPE", "configs/pocket.yaml")
for key, value in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)


def pocket_inputs(overrides: list[str] | None = None) -> tuple[Any, Any, str, Any, Any]:
    """(recipe, store, run_id, task_data_ref, base_ref) for the pocket recipe in a fresh bench run."""
    recipe = load_recipe(POCKET, overrides)
    store = RunStore()
    run_id = store.new_run_id(f"bench-{recipe.name}")
    refs = runner.build([graph.BASE], recipe, store, run_id)
    return recipe, store, run_id, refs[graph.TASK_DATA], refs[graph.BASE]
