"""What the benchmarks share: the project on sys.path, the pocket recipe's tasks and base (built once,
cached in the run store), and loading a sibling benchmark by path (bench/ is not a package, and
bench/rewards.py would shadow the project's `rewards` package on sys.path)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# R1_BENCH_RECIPE=configs/pocket-test.yaml runs every benchmark at test size (a quick check of the scripts).
POCKET = ROOT / os.environ.get("R1_BENCH_RECIPE", "configs/pocket.yaml")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
for key, value in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)


def load_sibling(name: str) -> ModuleType:
    """bench/<name>.py as a module named bench_<name>."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pocket_inputs(overrides: list[str] | None = None) -> tuple[Any, Any, str, Any, Any]:
    """(recipe, store, run_id, tasks_ref, base_ref) for the pocket recipe in a fresh bench run."""
    from core.config import load_recipe
    from core.runstore import RunStore
    from stages import base, tasks

    recipe = load_recipe(POCKET, overrides)
    store = RunStore()
    run_id = store.new_run_id(f"bench-{recipe.name}")
    tasks_ref = tasks.run(recipe, store, run_id)
    base_ref = base.run(recipe, store, run_id, tasks_ref)
    return recipe, store, run_id, tasks_ref, base_ref
