"""Shared fixtures: one test-size pocket run (tasks + base), built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
TEST_RECIPE = ROOT / "configs" / "pocket-test.yaml"


@pytest.fixture(scope="session")
def test_recipe():
    from core.config import load_recipe

    return load_recipe(TEST_RECIPE)


@pytest.fixture(scope="session")
def pocket_run(tmp_path_factory, test_recipe):
    """(store, run_id, task_data_ref, base_ref) for the test-size pocket recipe."""
    from core.runstore import RunStore
    from stages import graph

    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = store.new_run_id(test_recipe.name)
    refs = graph.build([graph.BASE], test_recipe, store, run_id)
    return store, run_id, refs[graph.TASK_DATA], refs[graph.BASE]


@pytest.fixture(scope="session")
def trained_run(pocket_run, test_recipe):
    """(store, run_id, refs) for the r1-pipeline chain at test size in its own run id (the base comes
    from pocket_run's cache): base -> cold start -> RL -> dataset -> SFT -> all-scenario RL, with the
    base and the final adapter evaluated. For tests that read what the stages logged."""
    from stages import graph

    store = pocket_run[0]
    run_id = store.new_run_id(test_recipe.name)
    refs = graph.build(["all_scenario_rl", "eval_base", "eval_all_scenario_rl"], test_recipe, store, run_id)
    return store, run_id, refs
