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
    """(store, run_id, tasks_ref, base_ref) for the test-size pocket recipe."""
    from core.runstore import RunStore
    from stages import base, tasks

    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = store.new_run_id(test_recipe.name)
    tasks_ref = tasks.run(test_recipe, store, run_id)
    base_ref = base.run(test_recipe, store, run_id, tasks_ref)
    return store, run_id, tasks_ref, base_ref


@pytest.fixture(scope="session")
def trained_run(pocket_run, test_recipe):
    """(store, run_id, refs) for the r1-pipeline chain at test size in its own run id (the base comes
    from pocket_run's cache): base -> cold start -> RL -> dataset -> SFT -> all-scenario RL, with the
    base and the final adapter evaluated. For tests that read what the stages logged."""
    from stages import (
        all_scenario_rl,
        base,
        cold_start,
        evaluate,
        reasoning_rl,
        rejection_sampling,
        reward_model,
        sft,
        tasks,
    )

    store = pocket_run[0]
    r = test_recipe
    run_id = store.new_run_id(r.name)
    refs = {"tasks": tasks.run(r, store, run_id)}
    refs["base"] = base.run(r, store, run_id, refs["tasks"])
    refs["cold_start"] = cold_start.run(r, store, run_id, refs["tasks"], refs["base"])
    refs["reasoning_rl"] = reasoning_rl.run(r, store, run_id, refs["tasks"], refs["base"], refs["cold_start"])
    refs["rejection_sampling"] = rejection_sampling.run(r, store, run_id, refs["tasks"], refs["base"],
                                                        refs["reasoning_rl"])
    refs["sft"] = sft.run(r, store, run_id, refs["base"], refs["rejection_sampling"], refs["reasoning_rl"])
    refs["reward_model"] = reward_model.run(r, store, run_id, refs["base"])
    refs["all_scenario_rl"] = all_scenario_rl.run(r, store, run_id, refs["tasks"], refs["base"], refs["sft"],
                                                  refs["reward_model"])
    for name, adapter in (("base", None), ("all_scenario_rl", refs["all_scenario_rl"])):
        refs[f"eval_{name}"] = evaluate.run(r, store, run_id, refs["tasks"], refs["base"], adapter, name)
    return store, run_id, refs
