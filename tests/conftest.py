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
